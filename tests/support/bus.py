"""Test-side Kafka clients: produce input events, read what the worker wrote."""

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from tests.support.events import topic_field
from worker.settings import Topics


def partitions(topics: Iterable[str], count: int) -> list[TopicPartition]:
    """Every partition of `topics`, all created with `count` partitions."""
    return [TopicPartition(topic, p) for topic in topics for p in range(count)]


class Follower:
    """A consumer of assigned partitions, read from given offsets (None: the beginning) in a
    background task that hands every fetched batch to `take`, with the time it arrived (ms).
    Fetch errors (the broker stopped by a fault test) are retried."""

    def __init__(
        self,
        bootstrap: str,
        start: Mapping[TopicPartition, int | None],
        take: Callable[[list[ConsumerRecord[bytes, bytes]], int], None],
        **options: Any,
    ) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, **options
        )
        self._start = dict(start)
        self._take = take
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign the partitions, seek and follow them."""
        await self.consumer.start()
        self.consumer.assign(list(self._start))
        for tp, offset in self._start.items():
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    async def _follow(self) -> None:
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=200)
            except (KafkaError, OSError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            received = int(time.time() * 1000)
            for records in batches.values():
                self._take(records, received)


@dataclass
class Updates:
    """Every `customer.updated` record read so far, per customer, in log order."""

    by_customer: dict[str, list[ConsumerRecord[bytes, bytes]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def events(self, customer_id: str) -> list[dict[str, Any] | None]:
        """Decoded values (None for a tombstone)."""
        return [
            None if r.value is None else json.loads(r.value) for r in self.by_customer[customer_id]
        ]

    def last(self, customer_id: str) -> dict[str, Any] | None:
        """The latest decoded value of the customer."""
        return self.events(customer_id)[-1]

    def last_or_none(self, customer_id: str) -> dict[str, Any] | None:
        """The latest decoded value of the customer, None if none yet (or a tombstone)."""
        events = self.events(customer_id)
        return events[-1] if events else None

    def versions(self, customer_id: str) -> list[int]:
        """The `version` header of each record of the customer."""
        return [int(dict(r.headers)["version"]) for r in self.by_customer[customer_id]]


class Bus:
    """A producer for the inputs and background readers of the output and DLQ topics."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.topics = topics
        self._bootstrap = bootstrap
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.updates = Updates()
        self.dead: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        self._tasks: list[asyncio.Task[None]] = []
        self._consumers: list[AIOKafkaConsumer] = []

    async def __aenter__(self) -> "Bus":
        await self.producer.start()
        await self._follow([self.topics.customer_updated], self._on_update)
        await self._follow([self.topics.dlq(t) for t in self.topics.inputs], self._on_dead)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for consumer in self._consumers:
            await consumer.stop()
        await self.producer.stop()

    async def _follow(
        self, topics: list[str], sink: Callable[[ConsumerRecord[bytes, bytes]], None]
    ) -> None:
        consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=self._bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        self._consumers.append(consumer)

        async def run() -> None:
            async for record in consumer:
                sink(record)

        self._tasks.append(asyncio.create_task(run()))

    def _on_update(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.updates.by_customer[record.key.decode()].append(record)

    def _on_dead(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.dead[record.topic].append(record)

    def topic_of(self, event: dict[str, Any]) -> str:
        """The input topic of an event of the contract."""
        return str(getattr(self.topics, topic_field(event["type"])))

    async def send(self, *events: dict[str, Any], partition: int | None = None) -> None:
        """Produce events to their topics, keyed by subject, and wait for the acks."""
        for event in events:
            await self.send_raw(
                self.topic_of(event),
                json.dumps(event).encode(),
                key=(event.get("subject") or event["sourceid"]).encode(),
                partition=partition,
            )

    async def send_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Produce raw bytes (for bad input) and wait for the ack."""
        await self.producer.send_and_wait(
            topic, value, key=key, headers=headers, partition=partition
        )

    async def wait_for(
        self, condition: Callable[[], bool], within: float = 30.0, what: str = "condition"
    ) -> None:
        """Poll until `condition()` holds; fail with `what` after `within` seconds."""
        deadline = asyncio.get_running_loop().time() + within
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            await asyncio.sleep(0.05)
