"""The records the worker writes to Kafka: `customer.updated` events and dead letters."""

from dataclasses import dataclass

import orjson

from contracts.updated import (
    ERASED_TYPE,
    MERGED_TYPE,
    UPDATED_SCHEMA,
    UPDATED_TYPE,
    WORKER_SOURCE,
)
from worker.records import InputRecord
from worker.rejection import Rejection
from worker.trace_context import TraceContext

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
_DATASCHEMA = b'"dataschema":%s' % orjson.dumps(UPDATED_SCHEMA)
_UPDATED_HEADERS: Headers = [
    ("content-type", b"application/cloudevents+json"),
    ("ce_type", UPDATED_TYPE.encode()),
    ("ce_dataschema", UPDATED_SCHEMA.encode()),
]


def _trace_attributes(trace: TraceContext | None) -> bytes:
    """The CloudEvents distributed-tracing attributes, as JSON members."""
    if trace is None:
        return b""
    members = b',"traceparent":' + orjson.dumps(trace.traceparent)
    if trace.tracestate:
        members += b',"tracestate":' + orjson.dumps(trace.tracestate)
    return members


def customer_updated(
    topic: str,
    customer_id: str,
    version: int,
    record: bytes | None,
    changed: list[str],
    cause: Cause,
    time: str,
    trace: TraceContext | None = None,
    merged_into: str | None = None,
) -> OutMessage:
    """A `customer.updated` CloudEvent carrying the record (its JSON), or the tombstone of
    an erased customer, or of an implicit customer `merged_into` another. `time` is when
    the batch was applied (formatted once per batch); `trace` the context of the span that
    produced it (headers and CloudEvents attributes). The JSON is assembled around the
    record's bytes rather than re-encoding it."""
    event_id = f"{customer_id}:{version}"
    headers: Headers = [("ce_id", event_id.encode()), ("version", str(version).encode())]
    if trace is not None:
        headers += trace.headers
    key = customer_id.encode()
    if record is None and merged_into is not None:
        merged = [("ce_type", MERGED_TYPE.encode()), ("merged_into", merged_into.encode())]
        return OutMessage(topic, key, None, [*merged, *headers])
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
            _trace_attributes(trace),
            b',"datacontenttype":"application/json",',
            _DATASCHEMA,
            b',"data":{"customer":',
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


def forward(
    topic: str, key: str, record: InputRecord, trace: TraceContext | None = None
) -> OutMessage:
    """An input record re-keyed to another topic, bytes and headers unchanged; but for the
    trace context (`trace`, when tracing), which becomes the one of the span forwarding it,
    in its headers and in its CloudEvents attributes."""
    if trace is None or record.value is None:
        return OutMessage(topic, key.encode(), record.value, list(record.headers))
    event = orjson.loads(record.value)
    event["traceparent"] = trace.traceparent
    event.pop("tracestate", None)
    if trace.tracestate:
        event["tracestate"] = trace.tracestate
    headers = [(n, v) for n, v in record.headers if n not in ("traceparent", "tracestate")]
    return OutMessage(topic, key.encode(), orjson.dumps(event), [*headers, *trace.headers])


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
