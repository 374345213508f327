"""What the benchmark says: progress on stderr, a table on stdout, everything in JSON."""

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Results = dict[str, Any]


def log(message: str) -> None:
    """Progress, on stderr (stdout is the report)."""
    print(f"[perf] {message}", file=sys.stderr, flush=True)


def write_json(results: Results, path: Path) -> None:
    """The whole result, for comparing runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


_PHASE_COLUMNS = [
    "phase",
    "records",
    "seconds",
    "events/s",
    "CPU s/10k",
    "Redis CPU s",
    "Kafka CPU s",
    "bench CPU s",
    "other CPU s",
]


def _phase_row(name: str, phase: Results | None) -> list[str]:
    if phase is None:
        return [name, "skipped", *[""] * (len(_PHASE_COLUMNS) - 2)]
    cpu = phase.get("cpu_seconds", {})
    return [
        name,
        _n(phase.get("records", phase.get("events"))),
        _n(phase["seconds"], 1),
        _n(phase["events_per_second"]),
        _n(phase.get("cpu_seconds_per_10k"), 2),
        *(_n(cpu.get(who), 1) for who in ("redis", "kafka", "harness", "others")),
    ]


def _percentile_line(label: str, found: dict[str, float]) -> str:
    cells = "  ".join(f"{name} {value:,.0f}" for name, value in found.items())
    return f"  {label:<36}{cells or '-'} ms"


def render(results: Results) -> str:
    """The human summary of a run."""
    git, machine, params = results["git"], results["machine"], results["parameters"]
    production = results.get("production")
    worker, ceiling = results.get("worker"), results.get("ceiling")
    naive, live, quix = results.get("naive"), results.get("live"), results.get("quix")
    lines = [
        f"customer-worker benchmark  {results['timestamp']}  commit {git['commit']}"
        + (f" (diff {git['code_diff_sha256']})" if git.get("code_diff_sha256") else ""),
        f"machine: {machine['cpus']} x {machine['cpu_model']}, "
        f"{machine['memory_bytes'] / 2**30:.1f} GiB, Python {machine['python']}, "
        f"Kafka {machine['kafka']}, Redis {machine['redis']} "
        + " ".join(f"{k}={v}" for k, v in machine["redis_persistence"].items()),
    ]
    if production:
        lines.append(
            f"workload: {production['records']:,} records ({production['events']:,} events + "
            f"{production['duplicates']:,} duplicates) over {params['customers']:,} customers, "
            f"4 topics x {params['partitions']} partitions, {production['average_bytes']:.0f} B avg"
        )
    lines.append("")
    rows = [
        *([_phase_row("produce (bulk)", production)] if production else []),
        _phase_row("ceiling (pass-through)", ceiling),
        _phase_row("worker (backlog)", worker),
        _phase_row("naive (prefix)", naive),
        _phase_row("quix streams peer", quix),
    ]
    lines += _table(_PHASE_COLUMNS, rows)
    lines.append(
        "  CPU s/10k: the consumer's own CPU (the ceiling's is the benchmark's); other CPU:"
        " the box's CPU used by none of these (other programs, kernel threads)"
    )
    ratios = results.get("ratios", {})
    if ratios:
        lines.append("  " + "   ".join(f"{k.replace('_', ' ')}: {v}" for k, v in ratios.items()))
    costs = results.get("per_event", {})
    if costs:
        lines += [
            "",
            "cost per event (consumer: the process under test; the ceiling's is the "
            "benchmark's own)",
            *_cost_lines(costs),
        ]
    if worker:
        header = "worker (Redis counts are server-wide: other clients of this Redis add to them)"
        lines += ["", header, *_worker_lines(worker)]
    if live:
        lines += [
            "",
            "live (latency per customer.updated: its timestamp minus the produce timestamp"
            " of its cause event)",
            f"  {'rate target / achieved':<36}{_n(live['target_rate'])} / "
            f"{_n(live['achieved_rate'])} events/s for {live['seconds']} s, "
            f"{live['outputs_matched']:,} updates matched",
            _percentile_line("to the update's timestamp", live["latency_ms_to_output_timestamp"]),
            _percentile_line("to a downstream reader", live["latency_ms_to_reader"]),
            f"  {'record cache hits':<36}{_cache_line(live.get('record_cache'))}",
        ]
    if naive:
        lines += [
            "",
            f"naive: {naive['events']:,} of the workload's first {naive['of_total']:,} records "
            f"(its own copy) processed in {naive['seconds']:.1f} s; "
            f"EVALSHA/event {naive['redis']['evalsha_per_event']}, peak RSS "
            f"{_mib(naive['memory'].get('peak_rss'))}, log {_problems(naive['log'])}",
            "  processed by topic: "
            + _counts(naive["processed_by_topic"])
            + ("" if naive["complete"] else " (stopped by --naive-seconds: a partial mix)"),
        ]
    tracing = results.get("tracing")
    if tracing:
        lines += [
            "",
            f"tracing on: the worker exported {tracing['otlp_requests']:,} OTLP requests "
            f"({tracing['otlp_bytes'] / 2**20:,.1f} MiB) to a local sink",
        ]
    if quix:
        lines += [
            "",
            f"quix: {quix['events']:,} of {quix['of_total']:,} records (its own copy) in "
            f"{quix['seconds']:.1f} s ({quix['measured_from']}), "
            f"{quix['outputs']:,} customer.updated, peak RSS "
            f"{_mib(quix['memory'].get('peak_rss'))}, start-up {quix['startup_seconds']:.1f} s, "
            f"log {_problems(quix['log'])}"
            + ("" if quix["complete"] else " (cut off by --quix-seconds)"),
        ]
    lines += _contention(results)
    if "error" in results:
        lines += ["", f"FAILED: {results['error']}"]
    lines += ["", f"took {results.get('duration_seconds', 0):.0f} s; JSON: {results['output']}"]
    return "\n".join(lines)


_COST_COLUMNS = [
    "phase",
    "consumer CPU us",
    "Redis CPU us",
    "Kafka CPU us",
    "Redis commands",
    "Redis bytes in",
    "Redis bytes out",
]


def _cost_lines(costs: Results) -> list[str]:
    keys = (
        "consumer_cpu_us",
        "redis_cpu_us",
        "kafka_cpu_us",
        "redis_commands",
        "redis_bytes_in",
        "redis_bytes_out",
    )
    rows = [
        [name, *(_n(cost.get(key), 2 if key == "redis_commands" else 1) for key in keys)]
        for name, cost in costs.items()
    ]
    return ["  " + line for line in _table(_COST_COLUMNS, rows)]


#: Other programs using more than this share of the box during a phase get a warning.
_CONTENTION = 0.10


def _contention(results: Results) -> list[str]:
    """Warnings for phases during which other programs used a noticeable share of the box."""
    cpus = results["machine"]["cpus"] or 1
    warnings = []
    for name in ("ceiling", "worker", "live", "naive", "quix"):
        cpu = results.get(name, {}).get("cpu_seconds")
        if (
            cpu
            and cpu["wall_seconds"]
            and cpu["others"] / (cpu["wall_seconds"] * cpus) > _CONTENTION
        ):
            share = cpu["others"] / (cpu["wall_seconds"] * cpus)
            warnings.append(
                f"WARNING: other programs used {share:.0%} of the box's CPU during {name} "
                f"(load average {cpu['load_average_1m']}): its numbers are skewed"
            )
    return ["", *warnings] if warnings else []


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())


def _problems(found: dict[str, Any]) -> str:
    return _counts(found.get("counts", {})) or "clean"


def _cache_line(cache: Results | None) -> str:
    """Customers of a batch found in the record cache (the rest read or new)."""
    if not cache or cache["hit_ratio"] is None:
        return "-"
    return f"{cache['hit_ratio']:.1%} of {_n(cache['hits'] + cache['misses'])} lookups"


def _worker_lines(worker: Results) -> list[str]:
    redis, memory = worker["redis"], worker["memory"]
    events = worker["events"]
    batches = worker.get("batches")
    outcomes = _counts(dict(sorted(worker["events_by_outcome"].items())))
    rows = [
        ("measured", worker["measured_from"]),
        (
            "customer.updated published",
            f"{worker['outputs']:,} ({worker['outputs'] / events:.2f} per event)",
        ),
        ("batches", f"{_n(batches)} ({_n(events / batches if batches else None)} records each)"),
        (
            "Redis round trips / event",
            f"{_n(redis['round_trips_per_event'], 4)} "
            f"(ideal = batches/events {_n(redis['ideal_round_trips_per_event'], 4)}; "
            f"{_n(redis['pipelines'])} pipelines + "
            f"{redis['client_commands'] - redis['evalsha']:,} other client commands)",
        ),
        (
            "EVALSHA / event",
            f"{_n(redis['evalsha_per_event'], 3)} (one call writes up to 64 customers)",
        ),
        ("Lua commands / event", _n(redis["script_commands_per_event"], 2)),
        ("Redis failed calls", _counts(redis["failed_calls"]) or "none"),
        ("Redis memory growth", _mib(redis["used_memory_delta_bytes"])),
        ("worker CPU s / 10k events", _n(worker["cpu_seconds_per_10k"], 2)),
        ("worker RSS end / peak", f"{_mib(memory.get('rss'))} / {_mib(memory.get('peak_rss'))}"),
        *(
            (
                f"worker RSS at {int(mark):,} events",
                f"{_mib(at.get('rss'))} (sampled at {at['processed']:,})",
            )
            for mark, at in memory["at"].items()
        ),
        ("record cache hits", _cache_line(worker.get("record_cache"))),
        ("events by outcome", outcomes or "-"),
        ("worker log", f"{_problems(worker['log'])} (exit code {worker.get('exit_code')})"),
    ]
    return [f"  {label:<36}{value}" for label, value in rows]
