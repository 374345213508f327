"""The records the worker writes to Kafka: `customer.updated` events and dead letters."""

from dataclasses import dataclass

import orjson

from contracts.updated import ERASED_TYPE, UPDATED_TYPE, WORKER_SOURCE
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


#: The constant attributes of every `customer.updated`, as JSON.
_ENVELOPE = b',"source":%s,"type":%s' % (orjson.dumps(WORKER_SOURCE), orjson.dumps(UPDATED_TYPE))
_UPDATED_HEADERS: Headers = [
    ("content-type", b"application/cloudevents+json"),
    ("ce_type", UPDATED_TYPE.encode()),
]


def customer_updated(
    topic: str,
    customer_id: str,
    version: int,
    record: bytes | None,
    changed: list[str],
    cause: Cause,
    time: str,
) -> OutMessage:
    """A `customer.updated` CloudEvent carrying the record (its JSON), or the tombstone of
    an erased customer. `time` is when the batch was applied (formatted once per batch).
    The JSON is assembled around the record's bytes rather than re-encoding it."""
    event_id = f"{customer_id}:{version}"
    headers: Headers = [("ce_id", event_id.encode()), ("version", str(version).encode())]
    key = customer_id.encode()
    if record is None:
        return OutMessage(topic, key, None, [("ce_type", ERASED_TYPE.encode()), *headers])
    cause_json = orjson.dumps({"id": cause.id, "source": cause.source, "type": cause.type})
    value = b"".join(
        (
            b'{"specversion":"1.0","id":',
            orjson.dumps(event_id),
            _ENVELOPE,
            b',"time":',
            orjson.dumps(time),
            b',"subject":',
            orjson.dumps(customer_id),
            b',"datacontenttype":"application/json","data":{"customer":',
            record,
            b',"version":',
            str(version).encode(),
            b',"changed":',
            orjson.dumps(changed),
            b',"cause":',
            cause_json,
            b"}}",
        )
    )
    return OutMessage(topic, key, value, [*_UPDATED_HEADERS, *headers])


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
