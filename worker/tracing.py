"""Distributed tracing: continue the trace of every input event, and hand it on.

An input event's trace context is its CloudEvents distributed-tracing attributes
(`traceparent`, `tracestate`, in the JSON: structured mode) or, when absent there, the Kafka
headers of the same names. Each batch is one `process` span (kind CONSUMER) that follows
OpenTelemetry's messaging conventions for batch consumers: it is linked to the context of
every input event of the batch, and has two children: `commit` (the Redis step) and
`publish customer.updated` (kind PRODUCER, from building the batch's output, which
carries its context, to the last acknowledgement). Every record the worker produces from
the batch (`customer.updated`, referrals forwarded to the referrer's worker) carries the
`publish` span's context, as Kafka headers and as the CloudEvents attributes; dead letters
keep the input's own.

FastStream's telemetry middleware is not used: it reads the context from Kafka headers only
(not from the CloudEvents attributes of a structured-mode event), links a batch's messages
by correlation id (these events have none: links would collapse), and injects the context
only into what FastStream's own publishers send (the worker produces with aiokafka's batch
API, see `worker.publisher`).

Configured only through the standard `OTEL_*` environment variables: tracing is on when an
exporter is configured (`OTEL_TRACES_EXPORTER`, default none here, or an
`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, which implies `otlp`) and `OTEL_SDK_DISABLED` is not
true; service name, resource attributes, sampler (`OTEL_TRACES_SAMPLER`), batch processor
and exporter settings are the SDK's own. Off, the pipeline checks one flag per batch and
does nothing else.
"""

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import (
    Link,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.events import AnyInputEvent
from worker.records import InputRecord
from worker.trace_context import TraceContext

_PROPAGATOR = TraceContextTextMapPropagator()
#: `service.name` unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name another.
DEFAULT_SERVICE_NAME = "customer-worker"
_FIELDS = ("traceparent", "tracestate")

#: The standard variables the README documents (the SDK reads more: all `OTEL_*` work).
DOCUMENTED_ENV = (
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
)


def configured_exporter(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """The exporter the environment asks for (None: tracing off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        return None if named == "none" else named
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return "otlp" if endpoint else None


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: customer-worker supports otlp, console")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def context_of(carrier: dict[str, str]) -> Link | None:
    """A link to the span a `traceparent` (and `tracestate`) names; None when absent or
    malformed (which is ignored, never an error)."""
    span_context = get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    return Link(span_context) if span_context.is_valid else None


def input_context(record: InputRecord, event: AnyInputEvent | None) -> Link | None:
    """The trace context of an input: its CloudEvents attributes, else its Kafka headers."""
    if event is not None and event.model_extra:
        carrier = {k: v for k in _FIELDS if isinstance(v := event.model_extra.get(k), str)}
        if "traceparent" in carrier:
            return context_of(carrier)
    carrier = {}
    for name, value in record.headers:
        if name in _FIELDS and value is not None:
            carrier[name] = value.decode("utf-8", errors="replace")
    return context_of(carrier) if "traceparent" in carrier else None


@dataclass(slots=True)
class BatchTrace:
    """The spans of one batch."""

    tracer: Tracer
    process: Span
    publish: Span | None = None

    def commit(self) -> Any:
        """A context manager: the span of one Redis step of the batch."""
        return self.tracer.start_as_current_span(
            "commit",
            context=set_span_in_context(self.process),
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": "redis", "db.operation.name": "EVALSHA"},
        )

    def start_publish(self, topic: str) -> TraceContext:
        """Start the publish span; the context every produced record carries."""
        self.publish = self.tracer.start_span(
            f"publish {topic}",
            context=set_span_in_context(self.process),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": topic,
            },
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=set_span_in_context(self.publish))
        return TraceContext(carrier["traceparent"], carrier.get("tracestate", ""))

    def produced(self, count: int) -> None:
        """How many records the publish span sends."""
        if self.publish is not None:
            self.publish.set_attribute("messaging.batch.message_count", count)

    def end(self, error: BaseException | None = None) -> None:
        """End the batch's spans (with the error, if it failed)."""
        for span in (self.publish, self.process):
            if span is None:
                continue
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()


def _resource() -> Resource:
    """The SDK's resource from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, named
    `customer-worker` when neither names the service (the SDK's "unknown_service")."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


class Tracing:
    """The worker's tracer, or nothing at all (`enabled` False)."""

    def __init__(self, provider: TracerProvider | None, group_id: str) -> None:
        self.provider = provider
        self.enabled = provider is not None
        self._tracer = None if provider is None else provider.get_tracer("customer-worker")
        self._group_id = group_id

    @classmethod
    def from_environment(cls, group_id: str, batch_max_records: int) -> "Tracing":
        """Tracing as the `OTEL_*` environment configures it (off unless an exporter is)."""
        exporter = configured_exporter(os.environ)
        if exporter is None:
            return cls(None, group_id)
        provider = TracerProvider(
            resource=_resource(),
            # A batch links to every input event: keep as many links as a batch has records
            # unless OTEL_SPAN_LINK_COUNT_LIMIT says otherwise (the SDK's default is 128).
            span_limits=SpanLimits(
                max_links=int(
                    os.environ.get("OTEL_SPAN_LINK_COUNT_LIMIT", max(128, batch_max_records))
                )
            ),
        )
        provider.add_span_processor(BatchSpanProcessor(_exporter(exporter)))
        return cls(provider, group_id)

    def begin(
        self, records: Sequence[InputRecord], links: Iterable[Link], started_ns: int
    ) -> BatchTrace | None:
        """The batch's `process` span, linked to its inputs (None when tracing is off)."""
        if self._tracer is None:
            return None
        topics = {record.topic for record in records}
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": self._group_id,
            "messaging.batch.message_count": len(records),
        }
        if len(topics) == 1:
            attributes["messaging.destination.name"] = next(iter(topics))
        span = self._tracer.start_span(
            "process",
            context=Context(),  # a batch starts a trace of its own, linked to its inputs
            kind=SpanKind.CONSUMER,
            links=list(links),
            attributes=attributes,
            start_time=started_ns,
        )
        return BatchTrace(self._tracer, span)

    def shutdown(self) -> None:
        """Flush and stop the exporter."""
        if self.provider is not None:
            self.provider.shutdown()
