"""How an event names its customer: by id (`subject`) or by `source_id` alone.

An event that names its customer only by `source_id` (the CloudEvents extension attribute
`sourceid`: a CRM id or an email) belongs to the *implicit* customer of that `source_id`,
whose id is derived from it. Every worker, every redelivery and every downstream team can
compute the same id from the `source_id` alone, so no lookup decides where an event goes.
"""

import hashlib
import re
from typing import Final

#: Ids of implicit customers: this prefix and 32 hex digits (128 bits of SHA-256).
IMPLICIT_PREFIX: Final = "src_"
IMPLICIT_ID: Final = re.compile(r"^src_[0-9a-f]{32}$")


def implicit_customer_id(source_id: str) -> str:
    """The id of the customer that events naming `source_id` alone create and change."""
    digest = hashlib.sha256(source_id.encode()).hexdigest()
    return IMPLICIT_PREFIX + digest[:32]


def is_implicit(customer_id: str) -> bool:
    """Whether an id is one `implicit_customer_id` makes. (Asked per event: most ids are
    told apart by their prefix, without the pattern.)"""
    return customer_id.startswith(IMPLICIT_PREFIX) and IMPLICIT_ID.match(customer_id) is not None
