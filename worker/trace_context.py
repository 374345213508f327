"""The trace context a produced record carries (see `worker.tracing`): kept apart, with no
OpenTelemetry import, so that the message builders stay importable without the SDK."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The `traceparent` and `tracestate` (may be empty) of the span that produced a record."""

    traceparent: str
    tracestate: str

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """As Kafka headers."""
        found = [("traceparent", self.traceparent.encode())]
        if self.tracestate:
            found.append(("tracestate", self.tracestate.encode()))
        return found
