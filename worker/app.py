"""Composition root: wires settings, Redis, Kafka and the pipeline into a FastStream app."""

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer
from faststream.kafka.annotations import KafkaMessage as KafkaMessageContext
from faststream.kafka.message import FAKE_CONSUMER, KafkaMessage
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from redis.asyncio import Redis

from contracts.updated import CustomerUpdated
from worker.asyncapi import ContractAsyncAPI
from worker.health import Health
from worker.intake import Intake
from worker.pipeline import BatchPipeline
from worker.publisher import Publisher
from worker.records import InputRecord
from worker.retry import Retrier
from worker.settings import Settings
from worker.store.customer_store import CustomerStore

log = logging.getLogger(__name__)

Records = tuple[InputRecord, ...]


async def _raw_batch(records: Records) -> StreamMessage[Records]:
    """Hands the records over untouched: decoding (and rejecting) them is the pipeline's job,
    and FastStream's default parser would fail the whole batch on one non-UTF-8 header."""
    return KafkaMessage(raw_message=records, body=records, consumer=FAKE_CONSUMER)


async def _undecoded(message: StreamMessage[Records]) -> Records:
    """FastStream decodes even for a handler without a body parameter; this keeps it inert."""
    return message.raw_message


async def commit(consumer: AIOKafkaConsumer, offsets: dict[Any, int]) -> None:
    """Commit explicit offsets. A failed commit is harmless: the events are applied and
    published, so a redelivery is deduplicated; a later commit moves past them anyway."""
    try:
        await consumer.commit(offsets)
    except CommitFailedError as error:
        log.warning("offsets not committed (partitions were reassigned): %s", error)
    except KafkaError as error:
        log.warning("offsets not committed, will be with the next batch: %s", error)


class Worker:
    """Owns the connections and the pipeline for the lifetime of the app.

    The producer can only be created inside the running event loop, hence `start`.
    """

    def __init__(self, settings: Settings, health: Health) -> None:
        self._settings = settings
        self._health = health
        self._redis = Redis.from_url(settings.redis_url, decode_responses=True)
        self._producer: AIOKafkaProducer | None = None
        self._pipeline: BatchPipeline | None = None
        self._failures = 0

    async def start(self) -> None:
        """Connect the producer and assemble the pipeline."""
        settings = self._settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        await self._producer.start()
        store = CustomerStore(
            self._redis,
            key_prefix=settings.key_prefix,
            max_markers=settings.dedup_max_markers,
            every_change=settings.publish_every_change,
        )
        self._pipeline = BatchPipeline(
            intake=Intake(settings.topics.inputs),
            store=store,
            publisher=Publisher(self._producer),
            topics=settings.topics,
            retrier=Retrier(
                self._health, settings.retry_initial_seconds, settings.retry_max_seconds
            ),
        )
        self._health.started = True

    async def stop(self) -> None:
        """Flush and close the connections (after the consumer has stopped)."""
        self._health.started = False
        if self._producer is not None:
            await self._producer.stop()
        await self._redis.aclose()

    async def handle(self, records: Records, consumer: AIOKafkaConsumer) -> None:
        """Apply, publish, then commit: offsets move only after both succeeded.

        Transient failures are retried inside the pipeline. Anything else is a bug; the
        batch must still not be lost (the consumer has already moved past it), so the
        consumer is rewound to the batch's first records and the batch is retried after a
        growing pause: a stuck partition is visible in lag and logs, a lost event is not.
        """
        assert self._pipeline is not None, "the worker is not started"
        try:
            offsets = await self._pipeline.process(records)
        except Exception:
            self._failures += 1
            pause = min(self._settings.retry_max_seconds, 0.5 * 2**self._failures)
            log.exception("batch failed unexpectedly; rewinding and retrying in %.1fs", pause)
            self._health.failure("pipeline", "unexpected error, see logs")
            rewind(consumer, records)
            await asyncio.sleep(pause)
            return
        self._failures = 0
        self._health.recovered("pipeline")
        await commit(consumer, offsets)


def rewind(consumer: AIOKafkaConsumer, records: Records) -> None:
    """Seek every partition of the batch back to its first record in the batch."""
    first: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        first[partition] = min(first.get(partition, record.offset), record.offset)
    for partition, offset in first.items():
        try:
            consumer.seek(partition, offset)
        except IllegalStateError:  # no longer assigned: its new owner starts from the commit
            continue


def build_app(settings: Settings) -> AsgiFastStream:
    """The worker as an ASGI app: the Kafka consumer plus its HTTP endpoints."""
    health = Health()
    worker = Worker(settings, health)
    topics = settings.topics
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        consumer_only=True,
        graceful_timeout=settings.graceful_timeout_seconds,
    )
    subscriber = broker.subscriber(
        *topics.inputs,
        batch=True,
        group_id=settings.group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
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
        if health.ready:
            return AsgiResponse(b"ready", 200)
        return AsgiResponse(("not ready: " + repr(health.failing)).encode(), 503)

    return AsgiFastStream(
        broker,
        asgi_routes=[("/healthz", healthz), ("/readyz", readyz)],
        asyncapi_path="/docs/asyncapi",
        specification=ContractAsyncAPI(broker, topics),
        on_startup=[worker.start],
        after_shutdown=[worker.stop],
    )
