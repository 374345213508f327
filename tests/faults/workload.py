"""The traffic of a fault scenario: generated events (duplicated, shuffled) and poison.

Events are delivered in any order, erases included: the worker's erase replay log makes the
record independent of arrival order within `CW_ERASE_REPLAY_WINDOW_SECONDS` (README
"Erasure"), far wider than the generator's time span. Kafka reorders across topics and
partitions anyway, and faults add redeliveries on top.
"""

import json
import random
from dataclasses import dataclass
from typing import Any

from contracts.identity import implicit_customer_id
from tests.support.events import topic_field
from tests.support.generate import Event, Generator, delivery_order

#: `Topics` fields of the input topics, each with a type it does not know and a schema
#: violation of one of its types.
INPUTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "customer_commands": ("customer.teleported", "customer.update", {"emial": "x@y.z"}),
    "order_events": ("order.teleported", "order.paid", {"order_id": "o1", "amount": -5}),
    "redemption_events": (
        "redemption.teleported",
        "redemption.succeeded",
        {"voucher": {"type": "GIFT_VOUCHER"}},
    ),
    "loyalty_events": ("loyalty.teleported", "loyalty.points.added", {"campaign_id": "k1"}),
}
POISON_KINDS = ("UndecodableMessage", "InvalidJson", "UnknownEventType", "SchemaViolation")


@dataclass(frozen=True)
class Message:
    """One record to produce. `error_class` is set on poison: the DLQ class it must get."""

    topic_field: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    error_class: str | None = None


@dataclass(frozen=True)
class Workload:
    """What a scenario sends, and what the checks compare against."""

    customers: list[str]
    events: list[Event]
    messages: list[Message]
    poison: list[Message]
    source_ids: tuple[str, ...] = ()

    @property
    def deliveries(self) -> int:
        """Records to produce: duplicates and poison included."""
        return len(self.messages)


def good(event: Event) -> Message:
    """An event as its producer sends it: JSON, keyed by the customer id (by the
    `sourceid` when it names the customer by that alone)."""
    key = event.get("subject") or event["sourceid"]
    return Message(topic_field(event["type"]), key.encode(), json.dumps(event).encode())


def poison_messages(rng: random.Random, customers: list[str], per_topic: int) -> list[Message]:
    """`per_topic` bad records for every input topic, cycling through the kinds of bad input;
    each is unique (its own id or nonce), so the DLQ can be compared byte for byte."""
    tag = f"{rng.getrandbits(32):08x}"
    messages = []
    for field, (unknown_type, schema_type, schema_data) in INPUTS.items():
        for n in range(per_topic):
            ident = f"poison-{tag}-{field}-{n}"
            kind = POISON_KINDS[n % len(POISON_KINDS)]
            subject = rng.choice(customers)
            if kind == "UndecodableMessage":
                value = b"\xff\xfe" + ident.encode() + b"\x00\x81"
            elif kind == "InvalidJson":
                value = b'{"id": "' + ident.encode() + b'", "type": '
            else:
                type_, data = (
                    (unknown_type, {"x": 1})
                    if kind == "UnknownEventType"
                    else (schema_type, schema_data)
                )
                envelope = {
                    "specversion": "1.0",
                    "id": ident,
                    "source": "poison",
                    "type": type_,
                    "time": "2025-01-01T00:00:10Z",
                    "subject": subject,
                    "data": data,
                }
                value = json.dumps(envelope).encode()
            headers: tuple[tuple[str, bytes], ...] = ()
            if n % 2:
                headers = (("traceparent", f"00-{ident}-01".encode()), ("raw", b"\xff\x00\xfe"))
            key = subject.encode() if n % 3 else None
            messages.append(Message(field, key, value, headers, kind))
    return messages


def build_workload(
    seed: int, customers: int, events: int, duplicates: float, poison_per_topic: int
) -> Workload:
    """A reproducible workload: `events` generated events (fewer once deduplicated by
    (source, id)) over `customers` customers, shuffled, redelivered with probability
    `duplicates`, with poison scattered through."""
    rng = random.Random(seed)
    ids = [f"cust-{n:04d}" for n in range(customers)]
    # A source_id per ten customers: claimed by profiles, conflicting, naming events alone.
    source_ids = tuple(f"crm-{n:04d}" for n in range(max(1, customers // 10)))
    generator = Generator(rng, ids, span_seconds=120, source_ids=list(source_ids))
    distinct = generator.events(events)
    # A constant clock dates nothing after an erase: `delivery_order` then shuffles freely.
    order = delivery_order(rng, distinct, duplicates, lambda _: 0)
    messages = [good(event) for event in order]
    poison = poison_messages(rng, ids, poison_per_topic)
    for message in poison:
        messages.insert(rng.randrange(len(messages) + 1), message)
    implicit = [implicit_customer_id(source_id) for source_id in source_ids]
    return Workload(ids + implicit, distinct, messages, poison, source_ids)
