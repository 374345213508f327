"""Versions of the contract's message schemas.

Every JSON Schema of `contracts/schemas/` has an id naming its version,
`urn:customer-worker:schema:<name>:<version>`: `customer.updated` carries its own as the
CloudEvents `dataschema` attribute, and an input event may name the schema it follows the
same way (see `accepts`). Versions are semantic: a compatible change (a new optional field,
a bound tightened on input, a new output field) bumps the minor version, a breaking one the
major, and is rolled out as the README says (both majors accepted for a deprecation
window). `contracts/schemas/versions.json` records the SHA-256 of every (schema, version)
ever exported, and a test fails when a schema changes without its version changing.
"""

from typing import Final

SCHEMA_PREFIX: Final = "urn:customer-worker:schema:"

#: The current version of every message schema, by schema name (the model's name).
SCHEMA_VERSIONS: Final[dict[str, str]] = {
    "CustomerCreate": "1.2.0",
    "CustomerUpdate": "1.2.0",
    "CustomerDelete": "1.2.0",
    "CustomerRestore": "1.2.0",
    "CustomerErase": "1.2.0",
    "OrderCreated": "1.2.0",
    "OrderPaid": "1.2.0",
    "OrderFulfilled": "1.2.0",
    "OrderCanceled": "1.2.0",
    "RedemptionSucceeded": "1.2.0",
    "RedemptionFailed": "1.2.0",
    "RedemptionRollbackSucceeded": "1.2.0",
    "RedemptionRollbackFailed": "1.2.0",
    "PointsAdded": "1.2.0",
    "PointsSubtracted": "1.2.0",
    "TierChanged": "1.2.0",
    "ReferralCompleted": "1.2.0",
    "Customer": "1.1.0",
    "CustomerUpdated": "1.1.0",
}

#: Earlier major versions of an input schema still accepted (during a deprecation window).
ACCEPTED_MAJORS: Final[dict[str, frozenset[int]]] = {}


def schema_id(name: str) -> str:
    """The id of the current version of a schema."""
    return f"{SCHEMA_PREFIX}{name}:{SCHEMA_VERSIONS[name]}"


def accepts(name: str, dataschema: str) -> bool:
    """Whether an input event of schema `name` naming `dataschema` can be read: any URI
    outside this contract's namespace is the producer's business; inside it, the schema
    must be this one, in its current major version or one still accepted."""
    if not dataschema.startswith(SCHEMA_PREFIX):
        return True
    named, _, version = dataschema[len(SCHEMA_PREFIX) :].rpartition(":")
    major = version.partition(".")[0]
    if named != name or not major.isdigit():
        return False
    current = int(SCHEMA_VERSIONS[name].partition(".")[0])
    return int(major) == current or int(major) in ACCEPTED_MAJORS.get(name, frozenset())
