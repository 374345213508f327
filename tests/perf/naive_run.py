"""Measures the naive baseline (`tests.perf.naive`) as a child process, with topics,
consumer group and key prefix of its own.

It is slow, so it gets a prefix of the workload: the first records of the same stream,
produced to its own input topics (a per-message consumer of the shared topics would drain a
few partitions first, and its sample would hold one topic's events only). It runs until it
has processed them all or for `max_seconds`. Its rate is measured from its first observed
commit to the end (it commits after every message, so the group's committed offsets count
exactly what it processed), which leaves its start-up out."""

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from redis.asyncio import Redis

from tests.perf.kafka_io import GroupProgress
from tests.perf.measure import RedisCounters, Usage, per_10k, process_memory
from tests.perf.process import STALL_SECONDS, problems
from tests.perf.report import log
from tests.perf.sandbox import PARTITIONS, source_topics
from tests.support.bus import partitions
from tests.support.cli import settings_env
from tests.support.worker_process import Child
from worker.settings import Settings

POLL_SECONDS = 0.25


async def run_naive(
    settings: Settings,
    redis: "Redis",
    directory: Path,
    name: str,
    *,
    total: int,
    max_seconds: float,
) -> dict[str, Any]:
    """Run the naive consumer over (a prefix of) the `total` input records."""
    log(f"naive baseline: {total:,} records, at most {max_seconds:.0f}s")
    child = Child(
        name, [sys.executable, "-m", "tests.perf.naive"], settings_env(settings), directory
    )
    inputs = partitions(source_topics(settings.topics), PARTITIONS)
    await child.start()
    try:
        async with GroupProgress(settings.kafka_bootstrap_servers, settings.group_id, inputs) as g:
            started = time.monotonic()
            while (first := await g.done()) == 0:
                child.ensure_alive()
                if time.monotonic() - started > STALL_SECONDS:
                    raise RuntimeError("the naive consumer committed nothing")
                await asyncio.sleep(POLL_SECONDS)
            began = time.monotonic()
            usage_before = await Usage.read(redis, child.pid)
            redis_before = await RedisCounters.read(redis)
            done, moved = first, began
            while done < total:
                child.ensure_alive()
                await asyncio.sleep(POLL_SECONDS)
                now = time.monotonic()
                if now - began >= max_seconds:
                    break
                latest = await g.done()
                if latest != done:
                    done, moved = latest, now
                elif now - moved > STALL_SECONDS:
                    raise RuntimeError(f"the naive consumer stalled at {done} records")
            committed = await g.committed()
            done = sum(committed.values())
            seconds = time.monotonic() - began
            usage = (await Usage.read(redis, child.pid)).since(usage_before)
            calls = (await RedisCounters.read(redis)).since(redis_before)
        memory = process_memory(child.pid)
    finally:
        await child.stop()
    events = done - first
    return {
        "events": events,
        "of_total": total,
        "complete": done >= total,
        "seconds": round(seconds, 3),
        "events_per_second": round(events / seconds, 1),
        "measured_from": "first commit seen to the end of the window (start-up excluded)",
        "redis": {
            **calls,
            "evalsha_per_event": round(calls["evalsha"] / events, 4) if events else None,
        },
        "cpu_seconds": usage,
        "cpu_seconds_per_10k": per_10k(usage["subject"], events),
        "processed_by_topic": _by_topic(committed, source_topics(settings.topics)),
        "memory": memory,
        "log": problems(child),
    }


def _by_topic(committed: dict[TopicPartition, int], contracts: dict[str, str]) -> dict[str, int]:
    """What it processed per (contract) topic: shows whether it saw the workload's mix."""
    totals: dict[str, int] = {}
    for tp, offset in committed.items():
        totals[contracts[tp.topic]] = totals.get(contracts[tp.topic], 0) + offset
    return totals
