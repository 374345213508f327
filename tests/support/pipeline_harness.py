"""Drives the real batch pipeline and Redis store without Kafka: records in, messages out."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any

from redis.asyncio import Redis

from worker.domain.fold import FoldLimits
from worker.health import Health
from worker.intake import Intake
from worker.messages import OutMessage
from worker.metrics import Metrics
from worker.pipeline import BatchPipeline
from worker.record_cache import RecordCache
from worker.retry import Retrier
from worker.settings import Limits, Topics
from worker.store.customer_store import CustomerStore


@dataclass(frozen=True)
class FakeRecord:
    """An input record as the consumer would hand it over."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class RecordingPublisher:
    """Keeps what the pipeline publishes."""

    messages: list[OutMessage] = field(default_factory=list)

    async def publish_all(self, messages: Sequence[OutMessage]) -> None:
        self.messages.extend(messages)

    def updates(self) -> dict[str, list[OutMessage]]:
        by_customer: dict[str, list[OutMessage]] = {}
        for message in self.messages:
            if message.topic == Topics().customer_updated and message.key is not None:
                by_customer.setdefault(message.key.decode(), []).append(message)
        return by_customer

    def last(self, customer_id: str) -> OutMessage:
        """The customer's update with the highest version (what downstream keeps)."""
        return max(self.updates()[customer_id], key=lambda m: int(dict(m.headers)["version"]))


def topic_of(event: dict[str, Any]) -> str:
    """The default input topic of an event type."""
    from contracts.events import TOPIC_OF_TYPE

    return TOPIC_OF_TYPE[event["type"]]


class Harness:
    """A pipeline over a real Redis under its own key prefix."""

    def __init__(
        self,
        redis: "Redis",
        key_prefix: str,
        every_change: bool = False,
        max_markers: int = 1000,
        replay_window_seconds: int = 86_400,
        limits: Limits | None = None,
        cache_size: int = 1000,
        cache_bytes: int = 1 << 30,
    ) -> None:
        topics = Topics()
        limits = limits or Limits()
        self.store = CustomerStore(redis, key_prefix)
        self.cache = RecordCache(cache_size, cache_bytes)
        self.publisher = RecordingPublisher()
        self.health = Health()
        self.metrics = Metrics()
        self.pipeline = BatchPipeline(
            intake=Intake(topics.inputs, limits),
            store=self.store,
            publisher=self.publisher,  # type: ignore[arg-type]
            topics=topics,
            retrier=Retrier(self.health, self.metrics, 0.01, 0.1),
            metrics=self.metrics,
            fold_limits=FoldLimits(
                each_change=every_change,
                kept_markers=max_markers,
                replay_window=replay_window_seconds * 1_000_000,
                max_fields=limits.max_record_fields,
                max_bytes=limits.max_record_bytes,
            ),
            cache=self.cache,
        )
        self._offset = 0

    async def deliver(
        self, batch: Sequence[dict[str, Any] | bytes], topic: str | None = None
    ) -> None:
        """One batch of events (dicts are encoded, bytes sent as they are)."""
        await self._process(self.records_of(batch, topic))

    async def deliver_in_batches(self, order: Sequence[dict[str, Any]], rng: Random) -> None:
        """The events in this order, cut into batches of randomly chosen sizes."""
        position = 0
        while position < len(order):
            size = rng.choice([1, 2, 5, 17, 64])
            await self.deliver(order[position : position + size])
            position += size

    def records_of(
        self, batch: Sequence[dict[str, Any] | bytes], topic: str | None = None
    ) -> list[FakeRecord]:
        """The records the consumer would hand over for these events."""
        records = []
        for item in batch:
            self._offset += 1
            if isinstance(item, bytes):
                value, key, where = item, None, topic or "customer.commands"
            else:
                value, key, where = (
                    json.dumps(item).encode(),
                    str(item.get("subject") or item.get("sourceid")).encode(),
                    topic_of(item),
                )
            records.append(FakeRecord(where, 0, self._offset, key, value))
        return records

    async def _process(self, records: list[FakeRecord]) -> None:
        """Process a batch, then feed back what it forwarded to the internal topic (as the
        workers owning the referrers and the notices' targets would consume it)."""
        already = len(self.publisher.messages)
        await self.pipeline.process(records)
        forwarded = [m for m in self.publisher.messages[already:] if m.topic == Topics().referrals]
        if forwarded:
            fed_back = []
            for message in forwarded:
                self._offset += 1
                fed_back.append(
                    FakeRecord(
                        message.topic, 0, self._offset, message.key, message.value, message.headers
                    )
                )
            await self._process(fed_back)
