"""Bad input goes to `<topic>.dlq` with its original bytes and headers plus error headers,
and the partition keeps flowing: a good event behind it on the same partition is applied."""

import json

import pytest

from tests.support.bus import Bus
from tests.support.events import at, event
from worker.store.customer_store import CustomerStore

ORIGINAL_HEADERS = [("traceparent", b"00-abc-01"), ("binary", b"\xff\x00\xfe")]


def _envelope(**overrides: object) -> bytes:
    body = event("order.paid", "cust-bad", {"order_id": "o-1", "amount": 100}, time=at(1))
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def _order_data(data: dict[str, object]) -> bytes:
    return json.dumps(event("order.paid", "cust-bad", data, time=at(1))).encode()


BAD_INPUT = {
    "undecodable bytes": ("order_events", b"\xff\xfe\x00garbage", "UndecodableMessage"),
    "not JSON": ("order_events", b"{not json", "InvalidJson"),
    "JSON but not an object": ("order_events", b"[1, 2, 3]", "InvalidEnvelope"),
    "no type": ("order_events", _envelope(type=None), "InvalidEnvelope"),
    "bad time": ("order_events", _envelope(time="yesterday"), "InvalidEnvelope"),
    "wrong specversion": ("order_events", _envelope(specversion="0.3"), "InvalidEnvelope"),
    "empty id": ("order_events", _envelope(id=""), "InvalidEnvelope"),
    "unknown type": ("order_events", _envelope(type="order.teleported"), "UnknownEventType"),
    "type of another topic": (
        "customer_commands",
        _envelope(),  # an order event on customer.commands
        "UnknownEventType",
    ),
    "negative amount": (
        "order_events",
        _order_data({"order_id": "o-1", "amount": -5}),
        "SchemaViolation",
    ),
    "float amount": (
        "order_events",
        _order_data({"order_id": "o-1", "amount": 9.99}),
        "SchemaViolation",
    ),
    "missing order_id": ("order_events", _order_data({"amount": 5}), "SchemaViolation"),
    "bad birthdate": (
        "customer_commands",
        json.dumps(event("customer.update", "cust-bad", {"birthdate": "1990-13-45"})).encode(),
        "SchemaViolation",
    ),
    "unknown profile field": (
        "customer_commands",
        json.dumps(event("customer.update", "cust-bad", {"emial": "x@y.z"})).encode(),
        "SchemaViolation",
    ),
    "self referral": (
        "loyalty_events",
        json.dumps(
            event(
                "referral.completed",
                "cust-bad",
                {
                    "campaign_id": "k",
                    "referrer_id": "cust-bad",
                    "related_object_id": "r",
                    "related_object_type": "redemption",
                },
            )
        ).encode(),
        "SchemaViolation",
    ),
    "empty value": ("redemption_events", b"", "EmptyMessage"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
async def test_bad_input_is_dead_lettered_and_the_partition_moves_on(
    case: str, bus: Bus, worker: None, store: CustomerStore
) -> None:
    field, value, error_class = BAD_INPUT[case]
    topic = getattr(bus.topics, field)
    await bus.send_raw(topic, value, key=b"cust-bad", headers=ORIGINAL_HEADERS, partition=0)
    good = event("customer.update", "cust-after", {"name": "Fine"}, time=at(2))
    await bus.send_raw(
        topic if field == "customer_commands" else bus.topics.customer_commands,
        json.dumps(good).encode(),
        key=b"cust-after",
        partition=0,
    )
    if field != "customer_commands":  # and a good event behind it on the very same partition
        behind = {
            "order_events": ("order.paid", {"order_id": "o-9", "amount": 7}),
            "redemption_events": (
                "redemption.failed",
                {"redemption_id": "r-9", "voucher": {"type": "DISCOUNT_VOUCHER"}},
            ),
            "loyalty_events": ("loyalty.points.added", {"campaign_id": "k", "points": 3}),
        }[field]
        await bus.send_raw(
            topic,
            json.dumps(event(behind[0], "cust-behind", behind[1], time=at(3))).encode(),
            key=b"cust-behind",
            partition=0,
        )
        await bus.wait_for(
            lambda: bus.updates.last_or_none("cust-behind") is not None, what="good event"
        )
    await bus.wait_for(
        lambda: bus.updates.last_or_none("cust-after") is not None, what="good event"
    )

    dlq = bus.topics.dlq(topic)
    await bus.wait_for(lambda: len(bus.dead[dlq]) >= 1, what="the dead letter")
    (dead,) = bus.dead[dlq]
    assert dead.value == value
    assert dead.key == b"cust-bad"
    headers = dead.headers
    assert list(headers[: len(ORIGINAL_HEADERS)]) == ORIGINAL_HEADERS
    extra = dict(headers[len(ORIGINAL_HEADERS) :])
    assert extra["x-error-class"] == error_class.encode()
    assert extra["x-error-message"]
    assert extra["x-original-topic"] == topic.encode()
    assert extra["x-original-partition"] == b"0"
    assert extra["x-original-offset"] == b"0"
    assert extra["x-failed-at"].endswith(b"Z")
    assert await store.version("cust-bad") == 0
    assert await store.version("cust-after") == 1
    assert all(not records for name, records in bus.dead.items() if name != dlq)
