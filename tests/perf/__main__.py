"""`python -m tests.perf`: one benchmark run against the stack of KAFKA_BOOTSTRAP_SERVERS and
REDIS_URL (`make bench`). See the package docstring for what is measured and how."""

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.perf.ceiling import run_ceiling
from tests.perf.kafka_io import produce_workload
from tests.perf.measure import STACK_DIR, code_version, machine_facts, per_event_costs
from tests.perf.naive_run import run_naive
from tests.perf.otlp_sink import OtlpSink
from tests.perf.process import problems
from tests.perf.quix_run import run_quix
from tests.perf.report import Results, log, render, write_json
from tests.perf.sandbox import PARTITIONS, Sandbox, provisioned
from tests.perf.worker_run import WorkerUnderTest, run_backlog, run_live
from tests.perf.workload import Workload, customer_ids
from worker.settings import Settings, Topics

#: The backlog's events are dated over this much history, ending now.
HISTORY = timedelta(days=7)
#: Worker RSS is reported once this many events are processed (and at the end).
RSS_CHECKPOINT = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options; `--memory` changes the defaults of --events and --customers."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.perf",
        description="Throughput, latency, Redis round trips, CPU and memory of the worker, "
        "against a bare Kafka pass-through (ceiling), a naive per-message consumer and a "
        "Quix Streams application doing the same fold.",
    )
    parser.add_argument(
        "--events",
        type=int,
        help="input records, duplicates included [200000; 1000000 with --memory]",
    )
    parser.add_argument("--customers", type=int, help="[20000; 100000 with --memory]")
    parser.add_argument(
        "--duplicates", type=float, default=0.01, help="fraction of events delivered twice [0.01]"
    )
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-quix", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="run the worker with tracing on, exporting to a local OTLP sink",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="worker only, over 1M events: RSS after 100k and at the end",
    )
    parser.add_argument(
        "--live-rate",
        type=float,
        default=0.0,
        help="events/s of the live phase [half the worker's backlog rate]",
    )
    parser.add_argument("--live-seconds", type=float, default=20.0)
    parser.add_argument(
        "--naive-events",
        type=int,
        default=10_000,
        help="the naive baseline gets the workload's first N records [10000]",
    )
    parser.add_argument(
        "--naive-seconds", type=float, default=120.0, help="... and stops after this long [120]"
    )
    parser.add_argument(
        "--quix-seconds",
        type=float,
        default=240.0,
        help="the Quix peer gets the whole workload (its own copy), for at most this long [240]",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--output",
        type=Path,
        default=STACK_DIR / "bench-results.json",
        help="JSON results [.stack/bench-results.json]",
    )
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 1_000_000 if args.memory else 200_000
    if args.customers is None:
        args.customers = 100_000 if args.memory else 20_000
    if args.memory:
        args.skip_ceiling = args.skip_naive = args.skip_live = args.skip_quix = True
    if args.events < 1 or args.customers < 2 or not 0 <= args.duplicates < 1:
        parser.error("need --events >= 1, --customers >= 2 and 0 <= --duplicates < 1")
    return args


def _parameters(args: argparse.Namespace, sandbox: Sandbox) -> dict[str, Any]:
    settings = sandbox.worker
    return {
        **{
            name: str(value) if isinstance(value, Path) else value
            for name, value in vars(args).items()
        },
        "partitions": PARTITIONS,
        "run_prefix": sandbox.prefix,
        "worker_settings": settings.model_dump(
            include={
                "batch_max_records",
                "batch_timeout_ms",
                "publish_every_change",
                "dedup_max_markers",
                "erase_replay_window_seconds",
            }
        ),
        "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
        "redis_url": settings.redis_url,
    }


async def _phases(
    args: argparse.Namespace, sandbox: Sandbox, redis: "Redis", results: Results
) -> None:
    """Every phase in order; each result is stored as soon as it exists."""
    settings = sandbox.worker
    customers = customer_ids(args.customers)
    start, step = datetime.now(UTC) - HISTORY, HISTORY / args.events

    def backlog(topics: Topics) -> Workload:
        """The backlog's records: the same ones whatever the topics (same seed, same clock)."""
        return Workload(
            topics,
            customers,
            duplicates=args.duplicates,
            seed=args.seed,
            id_prefix="bl-",
            clock=lambda sequence: start + step * sequence,
        )

    bootstrap = settings.kafka_bootstrap_servers
    production = await produce_workload(bootstrap, backlog(settings.topics), args.events)
    results["production"] = production
    if not args.skip_ceiling:
        log("ceiling: pass-through")
        results["ceiling"] = await run_ceiling(
            settings, sandbox.ceiling_group, sandbox.ceiling_output, args.events, redis
        )
    sink = contextlib.ExitStack()
    if args.trace:  # the child inherits the OTEL_* environment (settings_env keeps it)
        otlp = sink.enter_context(OtlpSink())
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{otlp.port}"
        os.environ["OTEL_SERVICE_NAME"] = "customer-worker-bench"
    worker = WorkerUnderTest(settings, args.output.parent, f"{args.output.stem}.worker")
    try:
        results["worker"] = await run_backlog(worker, redis, (RSS_CHECKPOINT,))
        if not args.skip_live:
            rate = args.live_rate or results["worker"]["events_per_second"] / 2
            live = Workload(
                settings.topics,
                customers,
                duplicates=args.duplicates,
                seed=args.seed + 1,
                id_prefix="live-",
                clock=lambda _: datetime.now(UTC),
            )
            results["live"] = await run_live(worker, redis, live, rate, args.live_seconds)
    finally:
        exit_code = await worker.child.stop()
        if args.trace:
            results["tracing"] = {
                "otlp_requests": otlp.received.requests,
                "otlp_bytes": otlp.received.bytes,
            }
            sink.close()
            os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        if "worker" in results:
            results["worker"]["exit_code"] = exit_code
            results["worker"]["log"] = problems(worker.child)
    if not args.skip_naive:
        # Its own copy of the backlog's first records: consuming them all, it sees the
        # workload's mix (on the shared topics it would drain a few partitions first).
        records = min(args.naive_events, args.events)
        await produce_workload(bootstrap, backlog(sandbox.naive.topics), records)
        results["naive"] = await run_naive(
            sandbox.naive,
            redis,
            args.output.parent,
            f"{args.output.stem}.naive",
            total=records,
            max_seconds=args.naive_seconds,
        )
    if not args.skip_quix:
        await produce_workload(bootstrap, backlog(sandbox.quix.topics), args.events)
        results["quix"] = await run_quix(
            sandbox.quix,
            redis,
            args.output.parent,
            f"{args.output.stem}.quix",
            total=args.events,
            max_seconds=args.quix_seconds,
        )


#: Each phase's consumer under test: which CPU in its `cpu_seconds` is its own (the ceiling
#: runs inside the benchmark process).
_CONSUMERS = {"ceiling": "harness", "worker": "subject", "naive": "subject", "quix": "subject"}


def _costs(results: Results) -> dict[str, dict[str, float | None]]:
    """Per-event costs of every phase that ran: CPU of the consumer, Redis and Kafka, Redis
    commands and bytes."""
    return {
        name: per_event_costs(
            results[name]["events"],
            results[name]["cpu_seconds"],
            results[name].get("redis"),
            consumer,
        )
        for name, consumer in _CONSUMERS.items()
        if name in results
    }


def _ratios(results: Results) -> dict[str, float]:
    rate = {
        name: results[name]["events_per_second"]
        for name in _CONSUMERS
        if name in results and results[name].get("events_per_second")
    }
    ratios = {}
    if "worker" in rate:
        for peer in ("ceiling", "naive", "quix"):
            if peer in rate:
                ratios[f"worker/{peer}"] = round(rate["worker"] / rate[peer], 3)
    return ratios


def _cancel_on_signals() -> None:
    """SIGINT and SIGTERM cancel the run, so that the `finally` blocks stop the children
    and delete the topics and keys (Python's default SIGTERM would just exit)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)


async def bench(args: argparse.Namespace) -> Results:
    """One run; the results so far also when a phase fails (with `error`)."""
    began = time.monotonic()
    sandbox = Sandbox.create(Settings())
    redis = Redis.from_url(sandbox.worker.redis_url, decode_responses=True)
    results: Results = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": code_version(),
        "output": str(args.output),
    }
    _cancel_on_signals()
    try:
        results["machine"] = await machine_facts(redis)
        results["parameters"] = _parameters(args, sandbox)
        async with provisioned(sandbox, redis):
            await _phases(args, sandbox, redis, results)
    except Exception as error:  # reported with the partial results, then exit 1
        results["error"] = f"{type(error).__name__}: {error}"
        log(f"FAILED: {results['error']}")
    except asyncio.CancelledError:  # our own signal handler: children stopped, cleaned up
        results["error"] = "interrupted"
        log("interrupted")
    finally:
        await redis.aclose()
    results["ratios"] = _ratios(results)
    results["per_event"] = _costs(results)
    results["duration_seconds"] = round(time.monotonic() - began, 1)
    return results


def main() -> int:
    """Run, print the table, write the JSON."""
    args = parse_args()
    results = asyncio.run(bench(args))
    write_json(results, args.output)
    if "machine" in results:
        print(render(results))
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
