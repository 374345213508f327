"""Kafka plumbing of the benchmark: producing the workload, following a consumer group's
progress, and reading what a consumer under test wrote."""

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.perf.report import log
from tests.perf.workload import Message, Workload
from tests.support.bus import Follower


def idempotent_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """The producer settings every Kafka writer of the benchmark shares with the worker:
    idempotent, acks=all; larger batches by default since the benchmark produces in bulk."""
    settings: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
    }
    settings.update(options)
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **settings)


async def produce(producer: AIOKafkaProducer, messages: Sequence[Message]) -> None:
    """Send every message, then wait until all are acknowledged (raising the first error)."""
    futures = [await producer.send(m.topic, m.value, key=m.key) for m in messages]
    for result in await asyncio.gather(*futures, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


class GroupProgress:
    """How far a consumer group has committed on its input partitions."""

    def __init__(self, bootstrap: str, group: str, inputs: list[TopicPartition]) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._group = group
        self._inputs = inputs

    async def __aenter__(self) -> "GroupProgress":
        await self._admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()

    async def committed(self) -> dict[TopicPartition, int]:
        """The group's committed offset per input partition, i.e. the records it is done
        with (every partition starts at 0)."""
        found = await self._admin.list_consumer_group_offsets(self._group, partitions=self._inputs)
        return {tp: max(found[tp].offset, 0) if tp in found else 0 for tp in self._inputs}

    async def done(self) -> int:
        """Records of all its input partitions the group is done with."""
        return sum((await self.committed()).values())


class OffsetReader:
    """End offsets and last records of topics, from a consumer outside any group."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def __aenter__(self) -> "OffsetReader":
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Log end offsets."""
        return dict(await self._consumer.end_offsets(tps))

    async def last_timestamp(self, tps: list[TopicPartition]) -> float | None:
        """Latest record timestamp (seconds) of the last records of `tps`, None when empty.

        Records are produced without transactions, so the record before a partition's end
        offset is a data record; its timestamp is its producer's send time (CreateTime)."""
        ends = {tp: end for tp, end in (await self.ends(tps)).items() if end > 0}
        if not ends:
            return None
        self._consumer.assign(list(ends))
        for tp, end in ends.items():
            self._consumer.seek(tp, end - 1)
        latest, pending = 0, set(ends)
        async with asyncio.timeout(30):
            while pending:
                for tp, records in (await self._consumer.getmany(timeout_ms=500)).items():
                    pending.discard(tp)
                    latest = max([latest, *(r.timestamp for r in records)])
        return latest / 1000


class UpdateTail:
    """Follows `customer.updated` from given offsets and keeps, per record, its cause's id,
    its timestamp (the worker's send time) and when this reader received it."""

    def __init__(self, bootstrap: str, start: dict[TopicPartition, int]) -> None:
        self.seen: list[tuple[str, int, int]] = []  # (cause id, created ms, received ms)
        self._follower = Follower(bootstrap, start, self._take, fetch_max_wait_ms=50)

    async def __aenter__(self) -> "UpdateTail":
        await self._follower.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._follower.stop()

    def _take(self, records: list[ConsumerRecord[bytes, bytes]], received: int) -> None:
        for record in records:
            if record.value is not None:
                cause = orjson.loads(record.value)["data"]["cause"]["id"]
                self.seen.append((cause, record.timestamp, received))


async def produce_workload(
    bootstrap: str, workload: Workload, records: int, chunk: int = 50_000
) -> dict[str, Any]:
    """Produce `records` records in chunks (a million events would not fit in memory as
    Python objects); only the producing is timed, not the generating."""
    producer = idempotent_producer(bootstrap)
    await producer.start()
    producing = generating = 0.0
    try:
        while workload.records < records:
            began = time.monotonic()
            messages = workload.take(min(chunk, records - workload.records))
            sent = time.monotonic()
            await produce(producer, messages)
            generating += sent - began
            producing += time.monotonic() - sent
            log(f"produced {workload.records:,}/{records:,} records")
    finally:
        await producer.stop()
    return {
        "records": workload.records,
        "events": workload.events,
        "duplicates": workload.duplicated,
        "bytes": workload.bytes,
        "average_bytes": round(workload.bytes / workload.records, 1),
        "seconds": round(producing, 3),
        "events_per_second": round(workload.records / producing, 1),
        "mib_per_second": round(workload.bytes / producing / 2**20, 2),
        "generation_seconds": round(generating, 3),
    }
