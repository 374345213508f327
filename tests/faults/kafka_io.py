"""Test-side Kafka clients that survive the broker being stopped: a producer that retries
until every record is acknowledged, a reader of everything the worker wrote, and a probe of
the worker group's committed offsets and members."""

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError

from tests.faults.workload import Message
from tests.support.bus import Follower, partitions
from worker.settings import Topics

T = TypeVar("T")

#: What a call to a broker that is down (or restarting) may raise.
UNAVAILABLE = (KafkaError, OSError, TimeoutError)
#: How long a producer may keep failing before it is replaced.
RENEW_AFTER_SECONDS = 20.0


async def _bounded(call: Awaitable[T], within: float = 5.0) -> T | None:
    """The call's result, or None when Kafka does not answer in time or fails."""
    try:
        return await asyncio.wait_for(call, within)
    except UNAVAILABLE:
        return None


class InputProducer:
    """Produces the workload and keeps retrying through broker outages; a producer that
    still fails long after an outage is replaced by a fresh one. A duplicate is harmless:
    the worker deduplicates events and the DLQ check compares distinct records."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._producer = self._new()
        self.resent = 0
        self.renewed = 0

    def _new(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            linger_ms=5,
            request_timeout_ms=15_000,
            retry_backoff_ms=200,
        )

    async def start(self) -> None:
        """Connect."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and close."""
        await self._producer.stop()

    async def _renew(self) -> None:
        fresh = self._new()
        try:
            await asyncio.wait_for(fresh.start(), 10)
        except UNAVAILABLE:
            await fresh.stop()
            return  # Kafka still away: keep the old one and try again later
        stale, self._producer = self._producer, fresh
        self.renewed += 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stale.stop(), 5)

    async def _round(self, messages: list[Message]) -> tuple[list[Message], BaseException | None]:
        """Send once; the messages not acknowledged and the last error."""
        failed: list[Message] = []
        error: BaseException | None = None
        pending = []
        for message in messages:
            try:
                future = await self._producer.send(
                    str(getattr(self._topics, message.topic_field)),
                    message.value,
                    key=message.key,
                    headers=list(message.headers),
                )
            except UNAVAILABLE as refused:
                failed.append(message)
                error = refused
            else:
                pending.append((message, future))
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        for (message, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(message)
                error = result
        return failed, error

    async def send(self, messages: list[Message], within: float = 180.0) -> None:
        """Produce `messages` and wait until every one is acknowledged."""
        deadline = time.monotonic() + within
        failing_since: float | None = None
        pending = messages
        while pending:
            pending, error = await self._round(pending)
            if not pending:
                return
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(
                    f"{len(pending)} records not acknowledged in {within}s; last error: {error!r}"
                )
            failing_since = failing_since or now
            if now - failing_since > RENEW_AFTER_SECONDS:
                await self._renew()
                failing_since = now
            self.resent += len(pending)
            await asyncio.sleep(0.5)


class OutputLog:
    """Reads `customer.updated` and the DLQ topics from the start, in the background."""

    def __init__(self, bootstrap: str, topics: Topics, partition_count: int) -> None:
        self.updates: dict[str, list[ConsumerRecord]] = defaultdict(list)
        self.dead: list[ConsumerRecord] = []
        self.last_read_at = time.monotonic()
        self.assigned = partitions(
            [topics.customer_updated, *(topics.dlq(t) for t in topics.inputs)], partition_count
        )
        self._updated_topic = topics.customer_updated
        self._follower = Follower(
            bootstrap, dict.fromkeys(self.assigned), self._take, auto_offset_reset="earliest"
        )

    async def start(self) -> None:
        """Follow every output partition from its beginning."""
        await self._follower.start()

    async def stop(self) -> None:
        """Stop reading."""
        await self._follower.stop()

    def _take(self, records: list[ConsumerRecord], received: int) -> None:
        for record in records:
            if record.topic == self._updated_topic:
                self.updates[record.key.decode()].append(record)
            else:
                self.dead.append(record)
        self.last_read_at = time.monotonic()

    async def caught_up(self, ends: dict[TopicPartition, int]) -> bool:
        """Whether everything up to `ends` has been read."""
        for tp in self.assigned:
            position = await _bounded(self._follower.consumer.position(tp))
            if position is None or position < ends.get(tp, 0):
                return False
        return True


class GroupProbe:
    """End offsets, a group's committed offsets and members; None while Kafka is away."""

    def __init__(self, bootstrap: str) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=5000
        )

    async def start(self) -> None:
        """Connect."""
        await self._admin.start()
        await self._offsets.start()

    async def stop(self) -> None:
        """Close."""
        await self._offsets.stop()
        await self._admin.close()

    @property
    def admin(self) -> AIOKafkaAdminClient:
        """The admin client (topic creation)."""
        return self._admin

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int] | None:
        """Log end offsets."""
        ends = await _bounded(self._offsets.end_offsets(tps))
        return None if ends is None else dict(ends)

    async def committed(
        self, group: str, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int] | None:
        """The group's committed offsets (0 where it has none)."""
        found = await _bounded(self._admin.list_consumer_group_offsets(group, partitions=tps))
        if found is None:
            return None
        return {tp: max(found[tp].offset, 0) if tp in found else 0 for tp in tps}

    async def lag(self, group: str, tps: list[TopicPartition]) -> int | None:
        """Records of `tps` the group has not committed yet."""
        ends = await self.end_offsets(tps)
        done = await self.committed(group, tps)
        if ends is None or done is None:
            return None
        return sum(ends[tp] - done[tp] for tp in tps)

    async def members(self, group: str) -> list[set[TopicPartition]] | None:
        """The assignment of each member of the group."""
        found = await _bounded(self._admin.describe_consumer_groups([group]))
        if found is None:
            return None
        assignments: list[set[TopicPartition]] = []
        for response in found:
            for described in response.groups:
                # DescribeGroups v0-v3: `members` is the group's only array field, and
                # `member_assignment` the last field of a member.
                members = next(part for part in described if isinstance(part, list))
                for *_, raw in members:
                    decoded = ConsumerProtocolMemberAssignment.decode(raw) if raw else None
                    assignments.append(set(decoded.partitions()) if decoded else set())
        return assignments
