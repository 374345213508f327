"""The ceiling: the fastest a Python consumer can move these records through Kafka on this
box with the worker's delivery guarantees and none of its work.

Same records, same consumer settings (group, getmany of `batch_max_records`, read_committed,
range assignment), same producer (idempotent, acks=all), same per-batch rhythm (produce
every record, await all acks, commit explicit offsets), but no decoding, no Redis and no
rendering: every record is copied as is to an output topic."""

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from redis.asyncio import Redis

from tests.perf.kafka_io import idempotent_producer
from tests.perf.measure import Usage, per_10k
from tests.perf.sandbox import source_topics
from worker.settings import Settings

#: How long the ceiling may go without a record before it is declared stuck.
STALL_SECONDS = 60.0


async def run_ceiling(
    settings: Settings, group: str, output: str, expected: int, redis: "Redis"
) -> dict[str, Any]:
    """Pass `expected` records through; events/s from the first record consumed to the
    last acknowledgement."""
    consumer = AIOKafkaConsumer(
        *source_topics(settings.topics),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    producer = idempotent_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    await consumer.start()
    try:
        moved, batches = 0, 0
        first: float | None = None
        before = await Usage.read(redis)
        last_record = time.monotonic()
        while moved < expected:
            fetched = await consumer.getmany(
                timeout_ms=settings.batch_timeout_ms, max_records=settings.batch_max_records
            )
            if not fetched:
                if time.monotonic() - last_record > STALL_SECONDS:
                    raise RuntimeError(f"ceiling stuck after {moved} of {expected} records")
                continue
            last_record = time.monotonic()
            if first is None:
                first, before = last_record, await Usage.read(redis)
            futures = [
                await producer.send(output, record.value, key=record.key)
                for records in fetched.values()
                for record in records
            ]
            await asyncio.gather(*futures)
            acked = time.monotonic()
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
            moved += len(futures)
            batches += 1
        usage = (await Usage.read(redis)).since(before)
    finally:
        await consumer.stop()
        await producer.stop()
    assert first is not None
    seconds = acked - first
    return {
        "events": moved,
        "batches": batches,
        "seconds": round(seconds, 3),
        "events_per_second": round(moved / seconds, 1),
        "cpu_seconds": usage,
        "cpu_seconds_per_10k": per_10k(usage["harness"], moved),
    }
