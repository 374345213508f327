"""The records the worker writes to Kafka: `customer.updated` events and dead letters."""

from dataclasses import dataclass

from pydantic_core import to_json

from contracts.updated import ERASED_TYPE, UPDATED_TYPE, WORKER_SOURCE
from worker.domain.record import JsonDict
from worker.records import InputRecord
from worker.rejection import Rejection

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class Cause:
    """The input event a published version is attributed to."""

    id: str
    source: str
    type: str


def customer_updated(
    topic: str,
    customer_id: str,
    version: int,
    record: JsonDict | None,
    changed: list[str],
    cause: Cause,
    time: str,
) -> OutMessage:
    """A `customer.updated` CloudEvent, or the tombstone of an erased customer. `time` is
    when the batch was published (formatted once per batch)."""
    event_id = f"{customer_id}:{version}"
    headers: Headers = [("ce_id", event_id.encode()), ("version", str(version).encode())]
    key = customer_id.encode()
    if record is None:
        return OutMessage(topic, key, None, [("ce_type", ERASED_TYPE.encode()), *headers])
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": WORKER_SOURCE,
        "type": UPDATED_TYPE,
        "time": time,
        "subject": customer_id,
        "datacontenttype": "application/json",
        "data": {
            "customer": record,
            "version": version,
            "changed": changed,
            "cause": {"id": cause.id, "source": cause.source, "type": cause.type},
        },
    }
    value = to_json(event)
    return OutMessage(
        topic,
        key,
        value,
        [
            ("content-type", b"application/cloudevents+json"),
            ("ce_type", UPDATED_TYPE.encode()),
            *headers,
        ],
    )


def forward(topic: str, key: str, record: InputRecord) -> OutMessage:
    """An input record re-keyed to another topic, bytes and headers unchanged."""
    return OutMessage(topic, key.encode(), record.value, list(record.headers))


def dead_letter(topic: str, record: InputRecord, why: Rejection, failed_at: str) -> OutMessage:
    """The original key, value and headers, plus where they came from and why they failed
    (`failed_at`: the batch's time, formatted once per batch)."""
    error_headers: Headers = [
        ("x-error-class", why.error_class.encode()),
        ("x-error-message", why.message.encode()),
        ("x-original-topic", record.topic.encode()),
        ("x-original-partition", str(record.partition).encode()),
        ("x-original-offset", str(record.offset).encode()),
        ("x-failed-at", failed_at.encode()),
    ]
    return OutMessage(topic, record.key, record.value, [*record.headers, *error_headers])
