"""The real worker under load: `customer-worker run` as a child process.

Backlog: the whole workload is already in the input topics when the worker starts; events/s
is measured from the worker's readiness (its partitions are assigned, so it starts
fetching) to the send time of its last `customer.updated` (the output record's timestamp).
Completion is detected by the worker group having committed every input record (it
commits only after its output is acknowledged) and no new output for `IDLE_SECONDS`; that
idle tail is not counted, since the end is the last output's own timestamp.

Live: with the worker caught up, new events are produced at a steady rate; each
`customer.updated` is matched to its cause (`data.cause.id`, unique per event) and its
latency is its timestamp minus the produce timestamp of that event. With conflation one
update covers several events of a customer in a batch and names the last one applied as
its cause: the earlier ones waited longer, by the time between their production and the
cause's (at most the span of the batch), which this measure leaves out. Updates whose
cause is not a live event (none once the backlog is done) are not counted.
"""

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.perf.kafka_io import (
    GroupProgress,
    OffsetReader,
    UpdateTail,
    idempotent_producer,
)
from tests.perf.measure import RedisCounters, Usage, per_10k, percentiles, process_memory
from tests.perf.process import STALL_SECONDS, http_get
from tests.perf.report import log
from tests.perf.sandbox import PARTITIONS, source_topics
from tests.perf.workload import Workload
from tests.support.bus import partitions
from tests.support.worker_process import WorkerProcess
from worker.settings import Settings

#: No new output for this long, with nothing left to commit, means the worker is done.
IDLE_SECONDS = 2.0
POLL_SECONDS = 0.5
#: RSS is sampled about this often for the memory curve in the JSON.
RSS_SAMPLE_SECONDS = 2.0
_CACHE_LOOKUPS = "customer_worker_record_cache_lookups_total"


class WorkerUnderTest:
    """The worker process, its HTTP port and the offsets it reads and writes."""

    def __init__(self, settings: Settings, directory: Path, name: str) -> None:
        self.settings = settings
        self.child = WorkerProcess(settings, directory, name)
        # Everything it consumes (for its lag), and the public inputs (the events counted).
        self.consumed = partitions(settings.topics.inputs, PARTITIONS)
        self.sources = partitions(source_topics(settings.topics), PARTITIONS)
        self.outputs = partitions([settings.topics.customer_updated], PARTITIONS)

    async def start(self, within: float = 120.0) -> float:
        """Start the worker and wait for /readyz; the wall-clock time it became ready."""
        await self.child.start()
        await self.child.wait_ready(within)
        return time.time()

    async def metrics(self) -> dict[str, float]:
        """Totals of its Prometheus series, summed over labels; `name:outcome` also per
        outcome label. Empty when /metrics does not answer."""
        answer = await http_get(self.child.port, "/metrics")
        if answer is None or answer[0] != 200:
            return {}
        totals: dict[str, float] = defaultdict(float)
        for line in answer[1].splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            totals[name] += float(value)
            outcome = re.search(r'outcome="([^"]*)"', labels)
            if outcome:
                totals[f"{name}:{outcome[1]}"] += float(value)
        return dict(totals)

    async def drain(self, on_poll: Callable[[int], None] | None = None) -> int:
        """Wait until every record it consumes is committed and its output has been idle
        for `IDLE_SECONDS`; returns the number of records in the public inputs."""
        bootstrap = self.settings.kafka_bootstrap_servers
        async with (
            GroupProgress(bootstrap, self.settings.group_id, self.consumed) as progress,
            OffsetReader(bootstrap) as offsets,
        ):
            last_output, output_moved = -1, time.monotonic()
            last_done, done_moved = -1, time.monotonic()
            last_log = time.monotonic()
            while True:
                self.child.ensure_alive()
                # Read each time: the worker may write to topics it consumes (forwarding).
                expected = sum((await offsets.ends(self.consumed)).values())
                committed = await progress.committed()
                done = sum(committed.values())
                now = time.monotonic()
                if done != last_done:
                    last_done, done_moved = done, now
                elif now - done_moved > STALL_SECONDS:
                    raise RuntimeError(f"worker stalled at {done} of {expected} records")
                if on_poll is not None:
                    on_poll(sum(committed[tp] for tp in self.sources))
                if now - last_log >= 5:
                    rss = process_memory(self.child.pid).get("rss", 0) / 2**20
                    log(f"worker committed {done:,}/{expected:,} records, RSS {rss:.0f} MiB")
                    last_log = now
                output = sum((await offsets.ends(self.outputs)).values())
                if output != last_output:
                    last_output, output_moved = output, now
                if done >= expected and now - output_moved >= IDLE_SECONDS:
                    return sum((await offsets.ends(self.sources)).values())
                await asyncio.sleep(POLL_SECONDS)


async def run_backlog(
    worker: WorkerUnderTest, redis: "Redis", checkpoints: tuple[int, ...]
) -> dict[str, Any]:
    """Start the worker on the pre-produced workload and measure it until it is done."""
    log("starting the worker on the backlog")
    ready = await worker.start()
    usage_before = await Usage.read(redis, worker.child.pid)
    redis_before = await RedisCounters.read(redis)
    rss_at: dict[str, dict[str, int]] = {}
    curve: list[tuple[float, int, int]] = []

    def sample(done: int) -> None:
        memory = process_memory(worker.child.pid)
        for checkpoint in checkpoints:
            if done >= checkpoint and str(checkpoint) not in rss_at:
                rss_at[str(checkpoint)] = {"processed": done, **memory}
        if not curve or time.time() - ready - curve[-1][0] >= RSS_SAMPLE_SECONDS:
            curve.append((round(time.time() - ready, 1), done, memory.get("rss", 0)))

    events = await worker.drain(sample)
    usage = (await Usage.read(redis, worker.child.pid)).since(usage_before)
    calls = (await RedisCounters.read(redis)).since(redis_before)
    metrics = await worker.metrics()
    memory = process_memory(worker.child.pid)
    async with OffsetReader(worker.settings.kafka_bootstrap_servers) as offsets:
        last_output = await offsets.last_timestamp(worker.outputs)
        outputs = sum((await offsets.ends(worker.outputs)).values())
    if last_output is None:
        raise RuntimeError("the worker published nothing")
    seconds = last_output - ready
    batches = metrics.get("customer_worker_batch_size_count")
    pipelines = metrics.get("customer_worker_redis_seconds_count")
    # One round trip per pipelined apply (the worker's own count) plus every client command
    # sent on its own (SCRIPT LOAD, PING). Not counted: the per-step retries after a script
    # error (see `failed_calls`), which the worker makes outside its timed pipeline.
    direct = calls["client_commands"] - calls["evalsha"]
    round_trips = None if pipelines is None else pipelines + direct
    return {
        "events": events,
        "outputs": outputs,
        "seconds": round(seconds, 3),
        "events_per_second": round(events / seconds, 1),
        "measured_from": "worker ready (partitions assigned) to the last output's timestamp",
        "batches": batches,
        "events_by_outcome": {
            key.partition(":")[2]: int(value)
            for key, value in metrics.items()
            if key.startswith("customer_worker_events_total:")
        },
        "record_cache": _cache_lookups(metrics.get),
        "redis": {
            **calls,
            "pipelines": pipelines,
            "round_trips_per_event": _ratio(round_trips, events),
            "ideal_round_trips_per_event": _ratio(batches, events),
            "evalsha_per_event": _ratio(calls["evalsha"], events),
            "script_commands_per_event": _ratio(calls["script_commands"], events),
        },
        "cpu_seconds": usage,
        "cpu_seconds_per_10k": per_10k(usage["subject"], events),
        "memory": {**memory, "at": rss_at, "curve": curve},
    }


async def run_live(
    worker: WorkerUnderTest, redis: "Redis", workload: Workload, rate: float, seconds: float
) -> dict[str, Any]:
    """Produce at `rate` events/s for `seconds` while the (caught-up) worker runs; latency
    from each event's produce timestamp to the timestamp of the update that names it."""
    settings = worker.settings
    log(f"live: producing {rate:,.0f} events/s for {seconds:.0f}s")
    async with OffsetReader(settings.kafka_bootstrap_servers) as offsets:
        start = await offsets.ends(worker.outputs)
    metrics_before = await worker.metrics()
    redis_before = await RedisCounters.read(redis)
    produced_at: dict[str, list[int]] = defaultdict(list)
    producer = idempotent_producer(settings.kafka_bootstrap_servers, max_batch_size=16384)
    await producer.start()
    usage_before = await Usage.read(redis, worker.child.pid)
    try:
        async with UpdateTail(settings.kafka_bootstrap_servers, start) as tail:
            began = time.monotonic()
            pending: list[asyncio.Future[Any]] = []
            while (elapsed := time.monotonic() - began) < seconds:
                for message in workload.take(int(elapsed * rate) - workload.records):
                    stamp = int(time.time() * 1000)
                    produced_at[message.event_id].append(stamp)
                    future = await producer.send(
                        message.topic, message.value, key=message.key, timestamp_ms=stamp
                    )
                    pending.append(future)
                await asyncio.sleep(0.005)
            produced_for = time.monotonic() - began
            await asyncio.gather(*pending)
            await worker.drain()
            seen = list(tail.seen)
        usage = (await Usage.read(redis, worker.child.pid)).since(usage_before)
        calls = (await RedisCounters.read(redis)).since(redis_before)
        metrics = await worker.metrics()
    finally:
        await producer.stop()

    def grown(series: str) -> float:
        return metrics.get(series, 0.0) - metrics_before.get(series, 0.0)

    batches = grown("customer_worker_batch_size_count")
    records = grown("customer_worker_batch_size_sum")
    to_output: list[float] = []
    to_reader: list[float] = []
    for cause, created, received in seen:
        stamps = produced_at.get(cause)
        if not stamps:
            continue
        produced = max((s for s in stamps if s <= created), default=min(stamps))
        to_output.append(created - produced)
        to_reader.append(received - produced)
    points = (50, 90, 99, 99.9)
    return {
        "events": workload.records,
        "target_rate": round(rate, 1),
        "achieved_rate": round(workload.records / produced_for, 1),
        "seconds": round(produced_for, 1),
        "outputs_matched": len(to_output),
        "outputs": len(seen),
        "batches": batches,
        "records_per_batch": round(records / batches, 1) if batches else None,
        "record_cache": _cache_lookups(grown),
        "redis": {
            **calls,
            "script_commands_per_event": _ratio(calls["script_commands"], workload.records),
        },
        "latency_ms_to_output_timestamp": percentiles(to_output, points),
        "latency_ms_to_reader": percentiles(to_reader, points),
        "cpu_seconds": usage,
    }


def _cache_lookups(count: Callable[[str], float | None]) -> dict[str, float | None]:
    """The record cache's hits and misses (customers per batch) and its hit ratio."""
    hits = count(f"{_CACHE_LOOKUPS}:hit") or 0
    misses = count(f"{_CACHE_LOOKUPS}:miss") or 0
    ratio = round(hits / (hits + misses), 3) if hits + misses else None
    return {"hits": hits, "misses": misses, "hit_ratio": ratio}


def _ratio(part: float | None, whole: int) -> float | None:
    return None if part is None or not whole else round(part / whole, 4)
