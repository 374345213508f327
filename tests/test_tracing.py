"""Trace context in, trace context out: on the real broker and Redis, with the
OpenTelemetry SDK's in-memory exporter."""

import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.conftest import running
from tests.support.bus import Bus
from tests.support.events import at, event
from worker.settings import Settings
from worker.store.customer_store import CustomerStore
from worker.tracing import Tracing, configured_exporter


def _traceparent(n: int) -> tuple[str, int]:
    """A valid W3C traceparent of an upstream span, and that span's id."""
    span_id = 0x1000 + n
    return f"00-{0xABC0 + n:032x}-{span_id:016x}-01", span_id


@pytest_asyncio.fixture
async def traced(settings: Settings) -> AsyncIterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with running(settings, Tracing(provider, settings.group_id)):
        yield exporter


def _spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def _publishes(exporter: InMemorySpanExporter, bus: Bus) -> list[ReadableSpan]:
    return _spans(exporter, f"publish {bus.topics.customer_updated}")


def _header(record: Any, name: str) -> str | None:
    found = dict(record.headers).get(name)
    return None if found is None else found.decode()


async def test_traced_inputs_on_every_topic_are_linked_and_outputs_carry_the_batch_span(
    bus: Bus, traced: InMemorySpanExporter, store: CustomerStore
) -> None:
    events = [
        event("customer.create", "t1", {"name": "Ann"}, time=at(1)),
        event("order.paid", "t1", {"order_id": "o1", "amount": 100}, time=at(2)),
        event(
            "redemption.failed",
            "t2",
            {"redemption_id": "r1", "voucher": {"type": "DISCOUNT_VOUCHER"}},
            time=at(3),
        ),
        event("loyalty.points.added", "t2", {"campaign_id": "k", "points": 5}, time=at(4)),
    ]
    upstream = {}
    for n, item in enumerate(events):
        traceparent, span_id = _traceparent(n)
        upstream[span_id] = item["id"]
        if n % 2 == 0:  # structured mode: the CloudEvents attribute
            await bus.send({**item, "traceparent": traceparent, "tracestate": "vendor=x"})
        else:  # only the Kafka header
            await bus.send_raw(
                bus.topic_of(item),
                json.dumps(item).encode(),
                key=item["subject"].encode(),
                headers=[("traceparent", traceparent.encode())],
            )
    await bus.wait_for(
        lambda: await_versions(bus, {"t1": 2, "t2": 2}) and len(_spans(traced, "process")) > 0,
        what="the outputs and the batch spans",
    )
    await bus.wait_for(
        lambda: (
            {link.context.span_id for s in _spans(traced, "process") for link in s.links}
            >= set(upstream)
        ),
        what="links to every input",
    )

    def produced_by() -> set[int]:
        records = [r for c in ("t1", "t2") for r in bus.updates.by_customer[c]]
        return {int((_header(r, "traceparent") or "0-0-0").split("-")[2], 16) for r in records}

    await bus.wait_for(  # a publish span ends once its batch's records are acknowledged
        lambda: produced_by() <= {s.context.span_id for s in _publishes(traced, bus)},
        what="the publish spans",
    )
    processes = _spans(traced, "process")
    linked = [link.context.span_id for span in processes for link in span.links]
    assert sorted(linked) == sorted(upstream)  # exactly those inputs, each once
    assert all(span.kind == SpanKind.CONSUMER for span in processes)
    assert all(span.attributes["messaging.system"] == "kafka" for span in processes)
    publishes = {span.context.span_id: span for span in _publishes(traced, bus)}
    commits = _spans(traced, "commit")
    ids = {span.context.span_id for span in processes}
    assert commits
    assert all(span.parent.span_id in ids for span in commits)
    for customer in ("t1", "t2"):
        for record in bus.updates.by_customer[customer]:
            traceparent = _header(record, "traceparent")
            assert traceparent is not None
            span_id = int(traceparent.split("-")[2], 16)
            assert span_id in publishes  # a span of its batch: its publish
            assert publishes[span_id].parent.span_id in ids
            assert json.loads(record.value)["traceparent"] == traceparent
    carried = Counter(
        int((_header(record, "traceparent") or "").split("-")[2], 16)
        for customer in ("t1", "t2")
        for record in bus.updates.by_customer[customer]
    )  # each batch produced only these records: a publish span counts those carrying it
    assert {
        span_id: publishes[span_id].attributes["messaging.batch.message_count"]
        for span_id in carried
    } == dict(carried)
    assert await store.version("t1") == 2


def await_versions(bus: Bus, wanted: dict[str, int]) -> bool:
    return all(wanted[customer] in bus.updates.versions(customer) for customer in wanted)


async def test_untraced_and_malformed_contexts_are_applied_without_links(
    bus: Bus, traced: InMemorySpanExporter, store: CustomerStore
) -> None:
    await bus.send(event("customer.create", "u1", {"name": "Plain"}, time=at(1)))
    await bus.send(
        {**event("customer.create", "u2", {"name": "Bad"}, time=at(1)), "traceparent": "garbage"}
    )
    await bus.send(
        {**event("customer.create", "u3", {"name": "Typed"}, time=at(1)), "traceparent": 42}
    )
    await bus.send_raw(
        bus.topics.customer_commands,
        json.dumps(event("customer.create", "u4", {"name": "Header"}, time=at(1))).encode(),
        key=b"u4",
        headers=[("traceparent", b"00-zz-zz-01"), ("tracestate", b"\xff")],
    )
    await bus.wait_for(
        lambda: all(bus.updates.last_or_none(c) for c in ("u1", "u2", "u3", "u4")),
        what="every event applied",
    )
    assert not any(bus.dead.values())  # a bad trace context is never a reason to dead-letter
    assert all(not span.links for span in _spans(traced, "process"))
    for customer in ("u1", "u2", "u3", "u4"):
        assert await store.version(customer) == 1


async def test_a_forwarded_referral_continues_the_trace_on_the_referrer_side(
    bus: Bus, traced: InMemorySpanExporter
) -> None:
    traceparent, span_id = _traceparent(99)
    referral = event(
        "referral.completed",
        "referee",
        {
            "campaign_id": "k",
            "referrer_id": "referrer",
            "related_object_id": "o1",
            "related_object_type": "order",
        },
        time=at(1),
    )
    await bus.send({**referral, "traceparent": traceparent})
    await bus.wait_for(lambda: bus.updates.last_or_none("referrer") is not None, what="both sides")
    await bus.wait_for(lambda: len(_spans(traced, "process")) >= 2, what="both batches")
    publishes = {s.context.span_id for s in _publishes(traced, bus)}
    links = [link.context.span_id for s in _spans(traced, "process") for link in s.links]
    assert span_id in links  # the referee's batch links the upstream span ...
    assert set(links) & publishes  # ... and the referrer's batch links the forwarding span


async def test_tracing_is_off_unless_the_environment_configures_an_exporter(
    bus: Bus, worker: None
) -> None:
    assert configured_exporter({}) is None
    assert configured_exporter({"OTEL_SERVICE_NAME": "x"}) is None
    assert configured_exporter({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert configured_exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == "otlp"
    assert configured_exporter({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert (
        configured_exporter({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}) is None
    )
    assert configured_exporter(os.environ) is None  # the test run configures none
    await bus.send(event("customer.create", "o1", {"name": "Off"}, time=at(1)))
    await bus.wait_for(lambda: bus.updates.last_or_none("o1") is not None, what="the output")
    (record,) = bus.updates.by_customer["o1"]
    assert _header(record, "traceparent") is None
    assert "traceparent" not in json.loads(record.value)


def test_the_service_is_named_by_the_environment_else_customer_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def service_name() -> object:
        tracing = Tracing.from_environment("g", 10)
        assert tracing.provider is not None
        try:
            return tracing.provider.resource.attributes["service.name"]
        finally:
            tracing.shutdown()

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert service_name() == "customer-worker"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert service_name() == "from-attributes"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-eu")
    assert service_name() == "orders-eu"
