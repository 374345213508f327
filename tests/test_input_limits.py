"""Hostile-input limits: each kind of abuse is dead-lettered with its own error class."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.events import at, event
from tests.support.pipeline_harness import Harness
from worker.domain import fields
from worker.settings import Limits

LIMITS = Limits(
    max_message_bytes=2048,
    max_text_length=40,
    max_list_items=3,
    max_metadata_keys=4,
    max_metadata_value_bytes=64,
    max_past_days=365 * 3,
    max_future_seconds=600,
    max_record_fields=100,
)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


NOW = datetime.now(UTC)
CASES: dict[str, tuple[dict[str, Any] | bytes, str]] = {
    "message too large": (
        json.dumps({**event("customer.update", "c1", {"name": "x"}), "pad": "x" * 4000}).encode(),
        "MessageTooLarge",
    ),
    "text too long": (event("customer.update", "c1", {"name": "n" * 41}), "LimitExceeded"),
    "address line too long": (
        event("customer.update", "c1", {"address": {"line_1": "l" * 41}}),
        "LimitExceeded",
    ),
    "too many tags": (
        event("customer.update", "c1", {"tags": ["a", "b", "c", "d"]}),
        "LimitExceeded",
    ),
    "too many metadata keys": (
        event("customer.update", "c1", {"metadata": {f"k{n}": n for n in range(5)}}),
        "LimitExceeded",
    ),
    "metadata value too large": (
        event("customer.update", "c1", {"metadata": {"blob": "b" * 80}}),
        "LimitExceeded",
    ),
    "time far in the past": (
        event("customer.update", "c1", {"name": "x"}, time="2001-01-01T00:00:00Z"),
        "TimestampOutOfRange",
    ),
    "time in the future": (
        event("customer.update", "c1", {"name": "x"}, time=_iso(NOW + timedelta(hours=2))),
        "TimestampOutOfRange",
    ),
    "order date in the future": (
        event(
            "order.paid",
            "c1",
            {"order_id": "o", "amount": 1, "created_at": _iso(NOW + timedelta(days=30))},
        ),
        "TimestampOutOfRange",
    ),
    "control character in the subject": (
        event("customer.update", "c1\n\x1b[31mred", {"name": "x"}),
        "InvalidIdentifier",
    ),
    "control character in an order id": (
        event("order.paid", "c1", {"order_id": "o\x00", "amount": 1}),
        "InvalidIdentifier",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_limit_dead_letters_with_its_class(
    case: str, redis: "Redis", scratch_prefix: str
) -> None:
    harness = Harness(redis, scratch_prefix, limits=LIMITS)
    bad, error_class = CASES[case]
    good = event("customer.update", "c1", {"name": "fine"}, time=at(1))
    await harness.deliver([bad, good])
    (dead,) = [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    headers = dict(dead.headers)
    assert headers["x-error-class"] == error_class.encode()
    assert headers["x-error-message"]
    assert (await harness.store.state("c1"))["p:name"] == '"fine"'  # the next one applied


async def test_one_customer_cannot_grow_its_record_without_bound(
    redis: "Redis", scratch_prefix: str
) -> None:
    harness = Harness(redis, scratch_prefix, limits=LIMITS)
    events = [
        event("customer.update", "c1", {"metadata": {f"k{n}-{i}": i for i in range(4)}}, time=at(n))
        for n in range(40)
    ]
    for item in events:
        await harness.deliver([item])
    dead = [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    assert dead, "the cap was never reached"
    assert {dict(m.headers)["x-error-class"] for m in dead} == {b"RecordLimitExceeded"}
    capped = [  # the cap counts every field but the dedup markers and the bookkeeping
        name
        for name in await redis.hkeys(f"{scratch_prefix}:{{c1}}:r")
        if not name.startswith(fields.MARKER) and name not in fields.BOOKKEEPING
    ]
    assert len(capped) <= LIMITS.max_record_fields
    # Refused events are not marked as seen: after raising the limit, a replay applies them.
    roomy = Harness(redis, scratch_prefix, limits=Limits())
    await roomy.deliver([json.loads(m.value or b"") for m in dead])
    state = await roomy.store.state("c1")
    assert len([f for f in state if f.startswith("m:")]) == 4 * len(events)
