"""Turns the raw value of an input record into a validated event, or says why it can't.

Validation is one pydantic `validate_json` call per record (the parsing and the checks run
in Rust); only a failure pays for classifying the error. Error messages name fields and
constraints but never echo input values: those may be personal data.
"""

from typing import Any

from pydantic import TypeAdapter, ValidationError

from contracts.envelope import NO_CUSTOMER, Envelope
from contracts.events import INPUT_TOPICS, AnyInputEvent
from contracts.versions import SCHEMA_VERSIONS, accepts
from worker.limits import LimitCheck
from worker.rejection import Rejection
from worker.settings import Limits

_ENVELOPE_FIELDS = frozenset(Envelope.model_fields)


class Intake:
    """Decodes records of the input topics, each against its topic's event types."""

    def __init__(self, topic_contracts: dict[str, str], limits: Limits) -> None:
        """`topic_contracts` maps each consumed topic to the contract topic it carries."""
        self._adapters: dict[str, TypeAdapter[Any]] = {
            topic: TypeAdapter(INPUT_TOPICS[contract])
            for topic, contract in topic_contracts.items()
        }
        self._limits = LimitCheck(limits)

    def decode(self, topic: str, value: bytes | None) -> AnyInputEvent | Rejection:
        """The event carried by `value`, or the rejection to dead-letter it with."""
        if not value:
            return Rejection("EmptyMessage", "the record has no value")
        too_large = self._limits.size_problem(value)
        if too_large is not None:
            return too_large
        try:
            event: AnyInputEvent = self._adapters[topic].validate_json(value)
        except ValidationError as error:
            return _classify(value, error)
        if event.dataschema is not None and not accepts(type(event).__name__, event.dataschema):
            name = type(event).__name__
            return Rejection(
                "UnsupportedSchema",
                f"dataschema names a version of {name} this worker does not read "
                f"(it reads {SCHEMA_VERSIONS[name]} and its major version)",
            )
        return self._limits.problem(event) or event


def _classify(value: bytes, error: ValidationError) -> Rejection:
    issues = error.errors(include_url=False, include_input=False, include_context=False)
    first = issues[0]
    if first["type"] == "json_invalid":
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Rejection("UndecodableMessage", f"value is not UTF-8: {bad.reason}")
        return Rejection("InvalidJson", f"value is not JSON: {first['msg']}")
    if first["type"] == "union_tag_invalid":
        return Rejection("UnknownEventType", _describe(issues))
    if any(issue["type"] == "string_pattern_mismatch" for issue in issues):
        return Rejection(
            "InvalidIdentifier", "an id contains control characters: " + _describe(issues)
        )
    if not first["loc"]:  # not an object, or no `type` to pick the event model by
        return Rejection("InvalidEnvelope", _describe(issues))
    # Past the discriminator, the location starts with the event type; a location of the
    # type alone is a whole-event rule (such as no self-referral).
    envelope_issue = any(
        (len(issue["loc"]) > 1 and issue["loc"][1] in _ENVELOPE_FIELDS)
        or issue["type"] == NO_CUSTOMER
        for issue in issues
    )
    return Rejection("InvalidEnvelope" if envelope_issue else "SchemaViolation", _describe(issues))


def _describe(issues: list[Any], limit: int = 5) -> str:
    parts = []
    for issue in issues[:limit]:
        loc = issue["loc"][1:] if len(issue["loc"]) > 1 else issue["loc"]
        where = ".".join(str(part) for part in loc) or "event"
        parts.append(f"{where}: {issue['msg']}")
    more = len(issues) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
