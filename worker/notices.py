"""Identity notices: what one worker tells another when who holds a `source_id` may have
changed, on the internal topic (the one referrals are forwarded on).

A notice carries no decision, only "look again": its receiver reads who holds the
`source_id` from Redis (claims checked against the claimants' records) and sets its
customer's view accordingly. A notice processed late, twice or out of order therefore
does no harm; the last one processed sees the final claims. Notices to an implicit
customer are keyed by its `source_id`, like the events naming it, so that they reach the
worker that owns it; notices to an explicit customer by its id.

An erasure tells the implicit customer of a `source_id` that a customer whose erased
events named it was erased; it carries no decision either: the receiver erases only what
the erased customer's record confirms (its erase time and the `source_id`s it keeps).
"""

import os
from dataclasses import dataclass
from typing import Final

import orjson

from contracts.identity import implicit_customer_id, is_implicit
from contracts.scalars import MAX_TIME
from contracts.updated import WORKER_SOURCE
from worker.domain.clock import to_micros
from worker.messages import OutMessage
from worker.records import InputRecord

NOTICE_TYPE: Final = "customer-worker.identity"
#: Its own type, so that a worker of a release before erasures dead-letters one (it can
#: be replayed) instead of taking it for a notice to look again.
ERASURE_TYPE: Final = "customer-worker.erasure"
_HEADER: Final = ("ce_type", NOTICE_TYPE.encode())
_ERASURE_HEADER: Final = ("ce_type", ERASURE_TYPE.encode())
#: Erasure times within the contract's range of event times.
_LATEST_MICROS: Final = to_micros(MAX_TIME)


@dataclass(frozen=True, slots=True)
class Notice:
    """Look again at who holds `source_id` (for an explicit customer: its own, whatever
    the notice names), for customer `target`. An erasure (`erased_by` set) instead says
    that customer `erased_by` was erased up to `erased_until` (microseconds) and its
    erased events named `source_id`: implicit customer `target` is erased up to then
    too, once `erased_by`'s record confirms it."""

    id: str
    target: str
    source_id: str
    erased_by: str | None = None
    erased_until: int = 0

    # What logs, metrics and the cause of a published version read of an input event.
    source = WORKER_SOURCE

    @property
    def type(self) -> str:
        """Its CloudEvents type."""
        return NOTICE_TYPE if self.erased_by is None else ERASURE_TYPE

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
    """The erasure, for the implicit customer of `source_id`, of customer `by` erased up
    to `until`. Its id is derived from both, so that sending it again is a duplicate."""
    event = {
        "specversion": "1.0",
        "id": f"erase:{until}:{by}",
        "source": WORKER_SOURCE,
        "type": ERASURE_TYPE,
        "time": time,
        "subject": implicit_customer_id(source_id),
        "data": {"source_id": source_id, "erased_until": str(until), "erased_by": by},
    }
    return OutMessage(topic, source_id.encode(), orjson.dumps(event), [_ERASURE_HEADER])


def is_notice(record: InputRecord) -> bool:
    """Whether a record of the internal topic is a notice or an erasure (else a forwarded
    referral)."""
    return _HEADER in record.headers or _ERASURE_HEADER in record.headers


def read_notice(value: bytes | None) -> Notice | None:
    """The notice or erasure a record carries (None: not a well-formed one)."""
    try:
        event = orjson.loads(value or b"")
        data = event["data"]
        erasing = event["type"] == ERASURE_TYPE
        if not erasing and event["type"] != NOTICE_TYPE:
            return None
        found = Notice(
            str(event["id"]),
            event["subject"],
            data["source_id"],
            data["erased_by"] if erasing else None,
            _time(data["erased_until"]) if erasing else 0,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    parts = (
        found.target,
        found.source_id,
        *(() if found.erased_by is None else (found.erased_by,)),
    )
    if not all(isinstance(part, str) and 0 < len(part) <= 128 for part in parts):
        return None
    if is_implicit(found.target) and found.target != implicit_customer_id(found.source_id):
        return None
    if found.erased_by is not None and not is_implicit(found.target):
        return None
    return found


def _time(value: object) -> int:
    """An erasure's time: a decimal string of microseconds within the contract's range."""
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise ValueError("not a time in microseconds")
    micros = int(value)
    if micros > _LATEST_MICROS:
        raise ValueError("a time beyond the contract's range")
    return micros
