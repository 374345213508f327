"""Measures the Quix Streams peer (`tests/perf/quix/app.py`) as a child process, with the
topics, consumer group and state directory it is given.

The peer has an environment of its own (`tests/perf/quix/pyproject.toml` and `uv.lock`:
quixstreams pins pydantic below the worker's), so the child is `uv run --project
tests/perf/quix --frozen python tests/perf/quix/app.py`; uv forwards SIGTERM to the Python
process it spawns, and that Python process (not uv) is the one whose CPU and memory are
measured.

It runs on a pre-produced backlog until its group has committed every input record and
every referral it forwarded to its referrals topic (or `max_seconds`). The rate is
measured like the worker's, start-up left out: from its first `customer.updated` to its
last, by their CloudEvent `time` (the peer's wall clock when it produced them; Quix stamps
output records with the input record's timestamp, so the Kafka timestamps say nothing
about when it worked). The worker is measured from its readiness (partitions assigned) to
its last output: the peer's first output comes a fetch and one event later than that, a
few milliseconds. CPU is counted from the first output seen (polled every 50 ms) to the
final commit.

Topic names: Quix names the changelog topic of the peer's state after its group and all
five topics its stateful step consumes (`changelog_topic`), which must fit Kafka's 249
characters; `check_names` fails early otherwise (prefixes like the naive baseline's
`perf-<8 hex>.naive.` fit). The changelog topic is deleted after the run, with the state
directory; the peer's other topics are the caller's (its settings' `Topics`, as created by
`contract_topics`: the four inputs, their `.dlq`, `referrals` and `customer.updated`).
"""

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from tests.perf.kafka_io import GroupProgress, OffsetReader
from tests.perf.measure import Usage, per_10k, process_cpu, process_memory
from tests.perf.process import STALL_SECONDS
from tests.perf.report import log
from tests.perf.sandbox import PARTITIONS, source_topics
from tests.support.bus import partitions
from tests.support.cli import settings_env
from tests.support.services import REPO
from tests.support.worker_process import Child
from worker.settings import Settings

PROJECT = REPO / "tests" / "perf" / "quix"
APP = PROJECT / "app.py"
POLL_SECONDS = 0.25
#: Kafka's limit on topic names.
MAX_TOPIC_NAME = 249
FIRST_OUTPUT_POLL_SECONDS = 0.05
#: Quix's log line format: `[time] [LEVEL] [quixstreams] : message`.
_QUIX_LINE = re.compile(r"^\[[^\]]*\] \[([A-Z]+)\] \[[^\]]*\] : (.*)$")
_PYTHON_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")


def uv_binary() -> str:
    """The pinned uv (installed on first use by `deploy/ensure-uv.sh`)."""
    found = subprocess.run(
        [str(REPO / "deploy" / "ensure-uv.sh")], capture_output=True, text=True, check=True
    )
    return found.stdout.strip()


def changelog_topic(settings: Settings) -> str:
    """The name Quix gives the changelog of the peer's state store: its group and every
    topic the stateful step consumes (`StreamingDataFrame.stream_id`, `TopicManager`)."""
    consumed = sorted({*source_topics(settings.topics), settings.topics.referrals})
    return f"changelog__{settings.group_id}--{'--'.join(consumed)}--default"


def check_names(settings: Settings) -> None:
    """Fail early, and clearly, when the peer's topic names are too long for Quix."""
    name = changelog_topic(settings)
    if len(name) > MAX_TOPIC_NAME:
        raise ValueError(
            f"the Quix peer's changelog topic would be named {len(name)} characters long "
            f"(Kafka allows {MAX_TOPIC_NAME}): give it shorter topic names or group: {name}"
        )


def _uv_env(env: dict[str, str]) -> dict[str, str]:
    """`env` without the main project's VIRTUAL_ENV (uv would warn that it ignores it)."""
    return {name: value for name, value in env.items() if name != "VIRTUAL_ENV"}


async def sync_environment(uv: str) -> None:
    """Install the peer's locked environment now, so that the child's `uv run` finds it
    ready (a first install would otherwise happen inside its start-up)."""
    process = await asyncio.create_subprocess_exec(
        uv,
        "sync",
        "--project",
        str(PROJECT),
        "--frozen",
        "--quiet",
        env=_uv_env(dict(os.environ)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"uv sync of {PROJECT} failed:\n{out.decode(errors='replace')}")


def quix_child(settings: Settings, directory: Path, name: str, state_dir: Path, uv: str) -> Child:
    """The peer as a child process, configured like the worker (CW_* variables)."""
    env = {
        **settings_env(settings),
        "CW_QUIX_STATE_DIR": str(state_dir),
        "PYTHONUNBUFFERED": "1",
    }
    argv = [uv, "run", "--project", str(PROJECT), "--frozen", "python", str(APP)]
    return Child(name, argv, _uv_env(env), directory)


def spawned_app(parent: int) -> int | None:
    """The child of `parent` that runs the peer's app.py, if it exists yet (from /proc)."""
    for children in Path(f"/proc/{parent}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                if str(APP) in Path(f"/proc/{pid}/cmdline").read_text():
                    return int(pid)
    return None


async def python_pid(child: Child, within: float = 60.0) -> int:
    """The Python process `uv run` spawned (uv itself only waits and forwards signals)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        child.ensure_alive()
        pid = spawned_app(child.pid)
        if pid is not None:
            return pid
        await asyncio.sleep(0.05)
    raise RuntimeError(f"uv started no {APP.name} within {within}s")


async def internal_topics(bootstrap: str, group: str) -> list[str]:
    """The changelog (and any repartition) topics Quix created for `group`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    prefixes = (f"repartition__{group}--", f"changelog__{group}--")
    return sorted(name for name in names if name.startswith(prefixes))


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Delete the topics Quix created for the run (the sandbox removes its own)."""
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


def _produced_at(value: bytes | None, timestamp_ms: int) -> float:
    """When the peer produced a `customer.updated`: its CloudEvent `time` (a tombstone
    has none: its record timestamp then)."""
    if value is None:
        return timestamp_ms / 1000
    return datetime.fromisoformat(json.loads(value)["time"]).timestamp()


async def output_span(bootstrap: str, tps: list[TopicPartition]) -> tuple[float, float] | None:
    """Production times of the first and the last output record, None when none."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end > 0}
        if not ends:
            return None
        starts = await consumer.beginning_offsets(list(ends))
        firsts: list[float] = []
        lasts: list[float] = []
        for tp, end in ends.items():
            consumer.assign([tp])
            for offset, into in ((starts[tp], firsts), (end - 1, lasts)):
                consumer.seek(tp, offset)
                record = await asyncio.wait_for(consumer.getone(), 30)
                into.append(_produced_at(record.value, record.timestamp))
        return min(firsts), max(lasts)
    finally:
        await consumer.stop()


def quix_problems(child: Child, samples: int = 5) -> dict[str, Any]:
    """Warnings and errors in its output: Quix's own log lines by level, Python warnings
    (e.g. of its dependencies at import) and any other line (a traceback)."""
    counts: dict[str, int] = {}
    first: list[str] = []
    after_warning = False
    for line in (child.err + child.out).splitlines():
        if not line.strip() or (after_warning and line.startswith(" ")):
            continue  # the source line Python prints under a warning
        after_warning = False
        match = _QUIX_LINE.match(line)
        if match:
            level, message = match[1].lower(), match[2]
        elif _PYTHON_WARNING.match(line):
            level, message, after_warning = "warning", line, True
        else:
            level, message = "unparsed", line
        if level in ("warning", "error", "critical", "unparsed"):
            counts[level] = counts.get(level, 0) + 1
            if len(first) < samples:
                first.append(f"{level}: {message[:300]}")
    return {"counts": counts, "samples": first}


async def _first_output(
    child: Child, offsets: OffsetReader, outputs: list[TopicPartition]
) -> float:
    """Wait for its first output; the monotonic time it was seen."""
    started = time.monotonic()
    while sum((await offsets.ends(outputs)).values()) == 0:
        child.ensure_alive()
        if time.monotonic() - started > STALL_SECONDS:
            raise RuntimeError(f"the Quix peer published nothing:\n{child.log_tail(20)}")
        await asyncio.sleep(FIRST_OUTPUT_POLL_SECONDS)
    return time.monotonic()


async def run_quix(
    settings: Settings,
    redis: "Redis",
    directory: Path,
    name: str,
    *,
    total: int,
    max_seconds: float,
) -> dict[str, Any]:
    """Run the Quix peer over the `total` input records already in its input topics."""
    log(f"quix peer: {total:,} records, at most {max_seconds:.0f}s")
    bootstrap, group = settings.kafka_bootstrap_servers, settings.group_id
    check_names(settings)
    uv = uv_binary()
    await sync_environment(uv)
    state_dir = directory / f"{name}.state"
    shutil.rmtree(state_dir, ignore_errors=True)
    child = quix_child(settings, directory, name, state_dir, uv)
    inputs = partitions(source_topics(settings.topics), PARTITIONS)
    outputs = partitions([settings.topics.customer_updated], PARTITIONS)
    dlqs = partitions([settings.topics.dlq(t) for t in source_topics(settings.topics)], PARTITIONS)
    launched = time.time()
    pid: int | None = None
    await child.start()
    try:
        pid = await python_pid(child)
        async with OffsetReader(bootstrap) as offsets:
            began = await _first_output(child, offsets, outputs)
            usage_before = await Usage.read(redis, pid)
            copies = partitions([settings.topics.referrals], PARTITIONS)
            async with GroupProgress(bootstrap, group, inputs + copies) as progress:
                done, moved = -1, time.monotonic()
                while True:
                    child.ensure_alive()
                    committed = await progress.committed()
                    latest = sum(committed[tp] for tp in inputs)
                    behind = sum((await offsets.ends(copies)).values()) - sum(
                        committed[tp] for tp in copies
                    )
                    now = time.monotonic()
                    if latest != done:
                        done, moved = latest, now
                    elif now - moved > STALL_SECONDS:
                        raise RuntimeError(f"the Quix peer stalled at {done} records")
                    complete = done >= total and behind == 0
                    if complete or now - began >= max_seconds:
                        break
                    await asyncio.sleep(POLL_SECONDS)
            usage = (await Usage.read(redis, pid)).since(usage_before)
            memory = process_memory(pid)
            produced = sum((await offsets.ends(outputs)).values())
            dead_letters = sum((await offsets.ends(dlqs)).values())
            referrer_copies = sum((await offsets.ends(copies)).values())
        span = await output_span(bootstrap, outputs)
    finally:
        exit_code = await child.stop()
        if pid is not None and process_cpu(pid) is not None:  # uv was killed, not its child
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):  # best effort: never hide the run's own error
            await delete_topics(bootstrap, await internal_topics(bootstrap, group))
        shutil.rmtree(state_dir, ignore_errors=True)
    assert span is not None  # it published at least once (`_first_output`)
    if complete:
        seconds = span[1] - span[0]
        measured_from = (
            "first to last customer.updated, by their CloudEvent time (the peer's clock "
            "when it produced them): start-up excluded"
        )
    else:  # cut off: outputs run ahead of commits, so count the commits' window
        seconds = moved - began
        measured_from = "first output seen to the last commit seen (cut off by max_seconds)"
    return {
        "events": done,
        "of_total": total,
        "complete": complete,
        "seconds": round(seconds, 3),
        "events_per_second": round(done / seconds, 1) if seconds > 0 else None,
        "measured_from": measured_from,
        "startup_seconds": round(span[0] - launched, 3),
        "outputs": produced,
        "dead_letters": dead_letters,
        "referrer_copies": referrer_copies,
        "cpu_seconds": usage,
        "cpu_seconds_per_10k": per_10k(usage["subject"], done),
        "memory": memory,
        "exit_code": exit_code,
        "log": quix_problems(child),
    }
