"""Identity notices: what one worker tells another when who holds a `source_id` may have
changed, on the internal topic (the one referrals are forwarded on).

A notice carries no decision, only "look again": its receiver reads who holds the
`source_id` from Redis (claims checked against the claimants' records) and sets its
customer's view accordingly. A notice processed late, twice or out of order therefore
does no harm; the last one processed sees the final claims. Notices to an implicit
customer are keyed by its `source_id`, like the events naming it, so that they reach the
worker that owns it; notices to an explicit customer by its id.
"""

import os
from dataclasses import dataclass
from typing import Final

import orjson

from contracts.identity import implicit_customer_id, is_implicit
from contracts.updated import WORKER_SOURCE
from worker.messages import OutMessage
from worker.records import InputRecord

NOTICE_TYPE: Final = "customer-worker.identity"
_HEADER: Final = ("ce_type", NOTICE_TYPE.encode())


@dataclass(frozen=True, slots=True)
class Notice:
    """Look again at who holds `source_id` (for an explicit customer: its own, whatever
    the notice names), for customer `target`."""

    id: str
    target: str
    source_id: str

    # What logs, metrics and the cause of a published version read of an input event.
    source = WORKER_SOURCE
    type = NOTICE_TYPE

    @property
    def customer_id(self) -> str:
        """The customer it is for."""
        return self.target

    @property
    def marker(self) -> str:
        """Its dedup marker (as `steps.marker_of` spells an event's)."""
        return f"{self.id}\n{self.source}"


def notice(topic: str, target: str, source_id: str, time: str) -> OutMessage:
    """A notice for `target` (an implicit customer: the one of `source_id`)."""
    event = {
        "specversion": "1.0",
        "id": os.urandom(12).hex(),
        "source": WORKER_SOURCE,
        "type": NOTICE_TYPE,
        "time": time,
        "subject": target,
        "data": {"source_id": source_id},
    }
    key = source_id if is_implicit(target) else target
    return OutMessage(topic, key.encode(), orjson.dumps(event), [_HEADER])


def is_notice(record: InputRecord) -> bool:
    """Whether a record of the internal topic is a notice (else a forwarded referral)."""
    return _HEADER in record.headers


def read_notice(value: bytes | None) -> Notice | None:
    """The notice a record carries (None: not a well-formed one)."""
    try:
        event = orjson.loads(value or b"")
        found = Notice(str(event["id"]), event["subject"], event["data"]["source_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    parts = (found.target, found.source_id)
    if not all(isinstance(part, str) and 0 < len(part) <= 128 for part in parts):
        return None
    if is_implicit(found.target) and found.target != implicit_customer_id(found.source_id):
        return None
    return found
