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
    the notice names), for customer `target`. An erasure (`erased_until` set) instead
    erases implicit customer `target` up to that time (microseconds)."""

    id: str
    target: str
    source_id: str
    erased_until: int | None = None

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


def erasure(topic: str, source_id: str, until: int, by: str, time: str) -> OutMessage:
    """The erase of explicit customer `by` (at `until`), for the implicit customer of a
    `source_id` its erased events named: what the customer was known by goes with it.
    Its id is derived from both, so that sending it again is a duplicate."""
    target = implicit_customer_id(source_id)
    event = {
        "specversion": "1.0",
        "id": f"erase:{until}:{by}",
        "source": WORKER_SOURCE,
        "type": NOTICE_TYPE,
        "time": time,
        "subject": target,
        "data": {"source_id": source_id, "erased_until": str(until), "erased_by": by},
    }
    return OutMessage(topic, source_id.encode(), orjson.dumps(event), [_HEADER])


def is_notice(record: InputRecord) -> bool:
    """Whether a record of the internal topic is a notice (else a forwarded referral)."""
    return _HEADER in record.headers


def read_notice(value: bytes | None) -> Notice | None:
    """The notice a record carries (None: not a well-formed one)."""
    try:
        event = orjson.loads(value or b"")
        data = event["data"]
        found = Notice(
            str(event["id"]), event["subject"], data["source_id"], _time(data.get("erased_until"))
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    parts = (found.target, found.source_id)
    if not all(isinstance(part, str) and 0 < len(part) <= 128 for part in parts):
        return None
    if is_implicit(found.target) and found.target != implicit_customer_id(found.source_id):
        return None
    if found.erased_until is not None and not is_implicit(found.target):
        return None
    return found


def _time(value: object) -> int | None:
    """An erasure's time: a decimal string of microseconds (ValueError if not one)."""
    if value is None:
        return None
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise ValueError("not a time in microseconds")
    return int(value)
