"""Composition root: wires settings, Redis, Kafka and the pipeline into a FastStream app."""

import asyncio
import functools
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer
from faststream.kafka.annotations import KafkaMessage as KafkaMessageContext
from faststream.kafka.message import FAKE_CONSUMER, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from prometheus_client import make_asgi_app

from contracts.updated import CustomerUpdated
from worker.assignment import AssignmentListener
from worker.asyncapi import ContractAsyncAPI
from worker.collection import CollectionPolicy
from worker.connections import connect_redis, kafka_options, kafka_security, redacted
from worker.health import Health
from worker.intake import Intake
from worker.metrics import Metrics
from worker.offsets import (
    BatchAbandoned,
    FailurePause,
    PublishFailed,
    RewindOnFailure,
    commit,
    rewind,
)
from worker.pipeline import AppliedBatch, BatchPipeline
from worker.publisher import Publisher
from worker.record_cache import RecordCache
from worker.records import InputRecord
from worker.retry import Retrier
from worker.settings import Settings, fold_limits
from worker.store.customer_store import CustomerStore
from worker.tracing import Tracing

log = logging.getLogger(__name__)

Records = tuple[InputRecord, ...]

#: How long a readiness probe waits for Redis and Kafka to answer.
PROBE_TIMEOUT = 1.5


async def _raw_batch(records: Records) -> StreamMessage[Records]:
    """Hands the records over untouched: decoding (and rejecting) them is the pipeline's job,
    and FastStream's default parser would fail the whole batch on one non-UTF-8 header. The
    body is the raw values, which is what FastStream's Prometheus middleware measures."""
    values = [record.value or b"" for record in records]
    return KafkaMessage(raw_message=records, body=values, consumer=FAKE_CONSUMER)


async def _undecoded(message: StreamMessage[Records]) -> Records:
    """FastStream decodes even for a handler without a body parameter; this keeps it inert."""
    return message.raw_message


class Worker:
    """Owns the connections and the pipeline for the lifetime of the app.

    The producer can only be created inside the running event loop, hence `start`.
    """

    def __init__(
        self, settings: Settings, health: Health, metrics: Metrics, tracing: Tracing
    ) -> None:
        self._settings = settings
        self._tracing = tracing
        self._health = health
        self._metrics = metrics
        self._redis = connect_redis(settings)
        self._producer: AIOKafkaProducer | None = None
        self._pipeline: BatchPipeline | None = None
        self._tail: asyncio.Task[None] | None = None
        self._draining = False
        self._deadline = -1.0  # loop time by which shutdown gives up the batch in flight
        self.pause = FailurePause(health, settings.retry_max_seconds)
        self._collection = CollectionPolicy()

    async def start(self) -> None:
        """Connect the producer and assemble the pipeline."""
        settings = self._settings
        log.info(
            "starting",
            extra={
                "kafka": settings.kafka_bootstrap_servers,
                "kafka_security": settings.kafka_security_protocol,
                "redis": redacted(settings.redis_url),
                "group_id": settings.group_id,
                "inputs": list(settings.topics.inputs),
                "event_loop": type(asyncio.get_running_loop()).__module__,
                "tracing": self._tracing.enabled,
            },
        )
        self._producer = AIOKafkaProducer(
            **kafka_options(settings),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
            compression_type=None
            if settings.kafka_compression == "none"
            else settings.kafka_compression,
        )
        try:
            await self._producer.start()
        except Exception:
            await self._producer.stop()  # a clean failure: no "unclosed producer" noise
            raise
        store = CustomerStore(self._redis, settings.key_prefix)
        self._pipeline = BatchPipeline(
            intake=Intake(settings.topics.inputs, settings.limits),
            store=store,
            publisher=Publisher(self._producer),
            topics=settings.topics,
            retrier=Retrier(
                self._health,
                self._metrics,
                settings.retry_initial_seconds,
                settings.retry_max_seconds,
            ),
            metrics=self._metrics,
            fold_limits=fold_limits(settings),
            cache=RecordCache(settings.record_cache_size, settings.record_cache_mib << 20),
            tracing=self._tracing,
        )
        self._collection.started()
        self._health.started = True

    async def drain(self) -> None:
        """Shutdown begins (before the consumer stops): from now on every batch is published
        and committed before its handler returns, and the batch in flight is waited for.

        FastStream stops the consumer as soon as the last handler has returned. A commit
        that starts after that never ends: aiokafka retries it against a coordinator that
        is gone. Not popped here: a failed batch must still stop the next one from
        committing past it (`handle`). The whole shutdown keeps to the graceful timeout.
        """
        self._draining = True
        self._deadline = asyncio.get_running_loop().time() + self._settings.graceful_timeout_seconds
        await self._settle()

    async def stop(self) -> None:
        """Finish the last batch, flush and close the connections."""
        self._health.started = False
        self._collection.stopped()
        await self._settle()
        tail, self._tail = self._tail, None
        if tail is not None and tail.done() and not tail.cancelled():
            error = tail.exception()  # retrieved, so that it is not reported unretrieved
            if error is not None:
                log.error("the last batch failed; it will be redelivered: %r", error)
        if self._producer is not None:
            await self._producer.stop()
        await self._redis.aclose()
        self._tracing.shutdown()

    async def handle(self, records: Records, consumer: AIOKafkaConsumer) -> None:
        """Apply in Redis now; publish, then commit, in a task of its own.

        The second half of a batch (producing its output, waiting for the acknowledgements,
        committing) overlaps with the first half of the next batch (decoding, folding, the
        Redis round trip, rendering: rendered before the next batch takes the customers'
        states from the record cache). Order is kept: the next batch's output is produced
        only once this batch's is acknowledged and committed, and Redis steps run one batch
        after the other.
        """
        assert self._pipeline is not None, "the worker is not started"
        applied = await self._pipeline.apply(records)
        try:
            await self._previous_batch()
        except PublishFailed as failure:
            # This batch may have been fetched before the rewind (later records) or after
            # it (the same records again): rewind to the earliest of both, and drop it.
            rewind(consumer, [*failure.records, *records])
            raise BatchAbandoned("the previous batch failed; both were rewound") from failure
        self._tail = asyncio.create_task(self._complete(applied, consumer))
        if self._draining:
            await self._previous_batch()

    async def _settle(self) -> None:
        """Wait for the batch in flight until the shutdown's deadline; then give it up: it
        is applied but not committed, so it is redelivered and deduplicated."""
        tail = self._tail
        if tail is None:
            return
        now = asyncio.get_running_loop().time()
        deadline = (
            self._deadline if self._deadline >= 0 else now + self._settings.graceful_timeout_seconds
        )
        done, _ = await asyncio.wait([tail], timeout=max(0.0, deadline - now))
        if not done:
            tail.cancel()
            log.warning("the batch in flight was not committed in time; it will be redelivered")

    async def _previous_batch(self) -> None:
        """Wait for the previous batch's publish and commit (raises PublishFailed)."""
        tail, self._tail = self._tail, None
        if tail is not None:
            await tail

    async def _complete(self, applied: AppliedBatch, consumer: AIOKafkaConsumer) -> None:
        assert self._pipeline is not None
        try:
            offsets = await self._pipeline.publish(applied)
        except Exception:
            # Already past this batch: rewind so that it is fetched and done again.
            rewind(consumer, applied.records)
            pause = self.pause.failed()
            log.exception("publishing a batch failed; rewound, retrying in %.1fs", pause)
            await asyncio.sleep(pause)
            raise PublishFailed(applied.records) from None
        await commit(consumer, offsets)
        self._collection.batch_done()
        for partition, offset in offsets.items():
            highwater = consumer.highwater(partition)
            if highwater is not None:
                lag = self._metrics.lag.labels(partition.topic, str(partition.partition))
                lag.set(max(0, highwater - offset))

    async def probe(self) -> list[str]:
        """Why the worker is not ready, asking Redis and Kafka now, concurrently (empty when
        ready). Bounded by PROBE_TIMEOUT, below the readiness probe's own timeout."""
        redis, kafka = await asyncio.gather(self._redis_answers(), self._kafka_answers())
        return self._health.problems() + redis + kafka

    async def _redis_answers(self) -> list[str]:
        try:
            await asyncio.wait_for(self._redis.ping(), PROBE_TIMEOUT)
        except Exception as error:
            return [f"redis unreachable: {type(error).__name__}"]
        return []

    async def _kafka_answers(self) -> list[str]:
        if self._producer is None:
            return []
        try:
            update = self._producer.client.force_metadata_update()
            if await asyncio.wait_for(update, PROBE_TIMEOUT):
                return []
        except Exception:  # noqa: S110 - any failure means "not reachable"
            pass
        return ["kafka unreachable"]


def build_app(settings: Settings, tracing: Tracing | None = None) -> AsgiFastStream:
    """The worker as an ASGI app: the Kafka consumer plus its HTTP endpoints. Tracing is as
    the `OTEL_*` environment configures it, unless given."""
    health = Health()
    metrics = Metrics()
    metrics.ready.set_function(lambda: 1.0 if health.ready else 0.0)
    if tracing is None:
        tracing = Tracing.from_environment(settings.group_id, settings.batch_max_records)
    worker = Worker(settings, health, metrics, tracing)
    topics = settings.topics
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=kafka_security(settings),
        consumer_only=True,
        graceful_timeout=settings.graceful_timeout_seconds,
        logger=logging.getLogger("faststream.access.kafka"),  # formatted like every other line
        log_level=logging.DEBUG,  # FastStream's per-batch "Received/Processed" lines
        middlewares=[
            functools.partial(RewindOnFailure, pause=worker.pause),
            KafkaPrometheusMiddleware(registry=metrics.registry),
        ],
    )
    subscriber = broker.subscriber(
        *topics.inputs,
        batch=True,
        group_id=settings.group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # Range assignment gives one consumer the same partition number of every input
        # topic: with events keyed by customer id (and referrals forwarded keyed by the
        # referrer), one customer's events meet in one worker, which alone writes and
        # publishes that customer: its versions are published in order.
        partition_assignment_strategy=(RangePartitionAssignor,),
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(1_000, settings.session_timeout_ms // 3),
        listener=AssignmentListener(health, metrics),
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        parser=_raw_batch,
        decoder=_undecoded,
        title="customer-worker inputs",
        description="CloudEvents from upstream services; see the contracts package.",
    )

    @subscriber
    async def apply_batch(message: KafkaMessageContext, consumer: Consumer) -> None:
        await worker.handle(message.raw_message, consumer)

    broker.publisher(
        topics.customer_updated,
        schema=CustomerUpdated,
        title="customer.updated",
        description="The record after each change, keyed by customer id; keep the highest version.",
    )

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        return AsgiResponse(b"ok", 200)

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        problems = await worker.probe()
        if not problems:
            return AsgiResponse(b"ready", 200)
        return AsgiResponse(("not ready: " + "; ".join(problems)).encode(), 503)

    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/healthz", healthz),
            ("/readyz", readyz),
            ("/metrics", make_asgi_app(metrics.registry)),
        ],
        asyncapi_path="/docs/asyncapi",
        specification=ContractAsyncAPI(broker, topics),
        on_startup=[worker.start],
        on_shutdown=[worker.drain],
        after_shutdown=[worker.stop],
    )
