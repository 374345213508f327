"""Numbers stay exact: every integer of the contract is bounded, no stored value, counter,
total or average leaves the range every JSON consumer and Redis' Lua numbers hold exactly
(|x| <= 2^53 - 1), and an event that would push one out is dead-lettered whole.

The reference fold (`tests/reference.py`, Python's exact integers) is the judge: whatever
integer a hostile upstream sends in whatever integer field, either the event is
dead-lettered with its original bytes, or the record is exactly the reference's."""

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from contracts.scalars import MAX_SAFE_INTEGER
from tests.reference import reference_records
from tests.support.events import at, event
from tests.support.pipeline_harness import Harness
from tests.test_record_shape import VALIDATOR, published
from worker.domain.record import render
from worker.settings import Limits

MAX = MAX_SAFE_INTEGER
#: Integers a hostile upstream would try: the edges of int32, of doubles' exact range, of
#: int64, far beyond, and negatives.
EDGES = [0, 1, 2, 2**31 - 1, 2**31, MAX - 1, MAX, MAX + 1, MAX + 2, 2**63 - 1, 2**63, 10**40]
INTEGERS = st.one_of(
    st.sampled_from(EDGES + [-n for n in EDGES if n]),
    st.integers(-(2**70), 2**70),
)

_VOUCHERS = {
    "gift": {"type": "GIFT_VOUCHER", "code": "G-1"},
    "loyalty": {"type": "LOYALTY_CARD", "code": "L-1"},
}


def _set(data: dict[str, Any], path: str, value: int) -> dict[str, Any]:
    """`data` with the integer at dotted `path` (one level of nesting) set to `value`."""
    data = json.loads(json.dumps(data))
    head, _, rest = path.partition(".")
    if rest:
        data.setdefault(head, {})[rest] = value
    else:
        data[head] = value
    return data


#: Every integer field of every event type: (type, data template, path of the integer).
FIELDS: list[tuple[str, dict[str, Any], str]] = [
    *(
        (kind, {"order_id": "o1", "amount": 100}, "amount")
        for kind in ("order.created", "order.paid", "order.fulfilled", "order.canceled")
    ),
    *(
        (kind, {"redemption_id": "r1", "voucher": _VOUCHERS[card]}, field)
        for kind in (
            "redemption.succeeded",
            "redemption.failed",
            "redemption.rollback.succeeded",
            "redemption.rollback.failed",
        )
        for card in ("gift", "loyalty")
        for field in ("amount", "points", "balance")
    ),
    *(
        (kind, {"campaign_id": "k1", "points": 5, "card_code": "L-1"}, field)
        for kind in ("loyalty.points.added", "loyalty.points.subtracted")
        for field in ("points", "balance")
    ),
    *(
        (kind, {"name": "Ann"}, field)
        for kind in ("customer.create", "customer.update")
        for field in (
            "dial_code",
            "gender",
            "house_account_limit",
            "house_account_balance",
            "metadata.n",
        )
    ),
]


def _numbers(value: Any) -> list[int | float]:
    """Every number in a JSON value."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return []


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(FIELDS),
    value=INTEGERS,
    prior=st.lists(INTEGERS, max_size=3),
)
async def test_any_integer_in_any_field_is_dead_lettered_or_exact(
    redis: "Redis",
    scratch_prefix: str,
    field: tuple[str, dict[str, Any], str],
    value: int,
    prior: list[int],
) -> None:
    """`prior` events of the same kind (other natural keys) come first, so that sums can
    approach the edge before the probe arrives."""
    kind, template, path = field
    events = []
    for n, number in enumerate([*prior, value]):
        data = _set(template, path, number)
        for key in ("order_id", "redemption_id"):
            if key in data:
                data[key] = f"{data[key]}-{n}"
        events.append(event(kind, "c1", data, time=at(n)))
    harness = Harness(redis, f"{scratch_prefix}-{uuid.uuid4().hex[:8]}")
    for item in events:
        await harness.deliver([item])

    dead = [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    sent = {json.dumps(item).encode(): item for item in events}
    refused = []
    for letter in dead:
        assert letter.value in sent, "a dead letter keeps the original bytes"
        error_class = dict(letter.headers)["x-error-class"]
        assert error_class in (b"SchemaViolation", b"LimitExceeded", b"CounterOverflow")
        refused.append(sent[letter.value])
    applied = [item for item in events if item not in refused]
    expected = reference_records(applied).get("c1")
    stored = render("c1", await harness.store.state("c1"))
    assert stored == expected
    for output in published(harness):
        assert all(abs(n) <= MAX for n in _numbers(output)), output
        assert not list(VALIDATOR.iter_errors(output["data"]["customer"]))
    if stored is not None:
        assert all(abs(n) <= MAX for n in _numbers(stored))


async def _probe(harness: Harness, *events: dict[str, Any]) -> list[bytes]:
    """Deliver each event in a batch of its own; the error classes dead-lettered."""
    for item in events:
        await harness.deliver([item])
    return [
        dict(m.headers)["x-error-class"]
        for m in harness.publisher.messages
        if m.topic.endswith(".dlq")
    ]


async def test_a_counter_driven_to_its_limit_refuses_the_event_that_would_pass_it(
    redis: "Redis", scratch_prefix: str
) -> None:
    harness = Harness(redis, scratch_prefix)
    points = {"campaign_id": "k1", "card_code": "L-1"}
    classes = await _probe(
        harness,
        event(
            "loyalty.points.added", "c1", {**points, "points": MAX - 1, "balance": 7}, time=at(1)
        ),
        event("loyalty.points.added", "c1", {**points, "points": 1, "balance": 8}, time=at(2)),
        # Would reach MAX + 1: refused whole, its balance included.
        event("loyalty.points.added", "c1", {**points, "points": 1, "balance": 9}, time=at(3)),
    )
    assert classes == [b"CounterOverflow"]
    state = await harness.store.state("c1")
    assert state["loyalty.points"] == str(MAX)
    assert state["loyalty_card.points_to_go"] == "8"  # not the refused event's balance
    # The refused event is not marked as seen: the record moves on normally.
    await _probe(
        harness,
        event("loyalty.points.subtracted", "c1", {**points, "points": 5, "balance": 3}, time=at(4)),
    )
    assert (await harness.store.state("c1"))["loyalty.points"] == str(MAX - 5)


async def test_order_totals_refuse_the_order_that_would_overflow_them(
    redis: "Redis", scratch_prefix: str
) -> None:
    harness = Harness(redis, scratch_prefix)
    half = MAX // 2 + 1
    classes = await _probe(
        harness,
        event("order.paid", "c2", {"order_id": "o1", "amount": half}, time=at(1)),
        event("order.paid", "c2", {"order_id": "o2", "amount": half}, time=at(2)),
        event("order.paid", "c2", {"order_id": "o3", "amount": 10}, time=at(3)),
    )
    assert classes == [b"CounterOverflow"]
    record = render("c2", await harness.store.state("c2"))
    assert record is not None
    orders = record["summary"]["orders"]
    assert orders["total_amount"] == half + 10
    assert orders["total_count"] == 2
    assert orders["average_amount"] == (half + 10 + 1) // 2  # rounded half up, exactly
    assert "~o:o2" not in await harness.store.state("c2")  # nothing of it applied


async def test_non_json_numbers_and_unsafe_integers_in_metadata_are_refused(
    redis: "Redis", scratch_prefix: str
) -> None:
    harness = Harness(redis, scratch_prefix)
    base = event("customer.update", "c3", {"metadata": {"ok": 1.5}}, time=at(1))
    raw = json.dumps(base)
    bad = [
        raw.replace("1.5", "NaN").encode(),
        raw.replace("1.5", "Infinity").encode(),
        raw.replace("1.5", "1e400").encode(),
        raw.replace("1.5", str(MAX + 1)).encode(),
        raw.replace("1.5", f'[1, {{"deep": {10**40}}}]').encode(),
    ]
    await harness.deliver([*bad, raw.encode()], topic="customer.commands")
    dead = [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    assert [m.value for m in dead] == bad
    assert {dict(m.headers)["x-error-class"] for m in dead} == {b"SchemaViolation"}
    record = render("c3", await harness.store.state("c3"))
    assert record is not None
    assert record["metadata"] == {"ok": 1.5}


async def test_operators_can_tighten_the_bounds(redis: "Redis", scratch_prefix: str) -> None:
    harness = Harness(redis, scratch_prefix, limits=Limits(max_amount=1000, max_points=50))
    classes = await _probe(
        harness,
        event("order.paid", "c4", {"order_id": "o1", "amount": 1001}, time=at(1)),
        event("loyalty.points.added", "c4", {"campaign_id": "k", "points": 51}, time=at(2)),
        event("customer.update", "c4", {"house_account_balance": -1001}, time=at(3)),
        event("order.paid", "c4", {"order_id": "o2", "amount": 1000}, time=at(4)),
    )
    assert classes == [b"LimitExceeded"] * 3
    assert (await harness.store.state("c4"))["orders.total_amount"] == "1000"


async def test_a_record_cannot_outgrow_its_byte_cap(redis: "Redis", scratch_prefix: str) -> None:
    """Bytes, not only fields: a few large values would make a customer.updated message
    too large for Kafka, which would block the partition."""
    limits = Limits(max_record_bytes=16 * 1024, max_metadata_value_bytes=4096)
    harness = Harness(redis, scratch_prefix, limits=limits)
    events = [
        event("customer.update", "c5", {"metadata": {f"k{n}": "x" * 4000}}, time=at(n))
        for n in range(8)
    ]
    classes = await _probe(harness, *events)
    assert classes
    assert set(classes) == {b"RecordLimitExceeded"}
    record = render("c5", await harness.store.state("c5"))
    assert record is not None
    assert len(json.dumps(record)) < 16 * 1024 + 2048


@pytest.mark.parametrize(
    "amount",
    ['"1000"', "1e3", "1000.0", "true", "1000.5", "-0.0", '"9007199254740993"'],
    ids=["string", "exponent", "point-zero", "boolean", "fraction", "negative-zero", "big-string"],
)
async def test_numbers_that_only_look_like_integers_are_refused(
    redis: "Redis", scratch_prefix: str, amount: str
) -> None:
    """Strict integers: no string, float, exponent or boolean is read as an amount."""
    harness = Harness(redis, scratch_prefix)
    raw = json.dumps(event("order.paid", "c6", {"order_id": "o1", "amount": 7}, time=at(1)))
    bad = raw.replace('"amount": 7', f'"amount": {amount}').encode()
    await harness.deliver([bad], topic="order.events")
    (dead,) = [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    assert dead.value == bad
    assert dict(dead.headers)["x-error-class"] == b"SchemaViolation"
    assert await harness.store.state("c6") == {}
