"""What the benchmark reads besides Kafka: CPU and memory of processes from /proc (psutil is
not installed), Redis's own counters, and facts about the machine and the code measured.

On a 2-core box the worker, the broker, Redis and the benchmark itself compete for the same
cores, so every phase records the CPU each of them used: that says where the time went."""

import hashlib
import os
import platform
import resource
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.support.services import REPO

STACK_DIR = Path(os.environ.get("CW_STACK_DIR", REPO / ".stack"))
_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a process (not its children); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def process_memory(pid: int) -> dict[str, int]:
    """Resident set size now and its peak (VmRSS, VmHWM), in bytes; empty if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found["rss" if name == "VmRSS" else "peak_rss"] = int(value.split()[0]) * 1024
    return found


def own_cpu() -> float:
    """CPU seconds of the benchmark process itself."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def kafka_pid() -> int | None:
    """The local stack's broker, from its pid file (None when the broker is not ours)."""
    try:
        pid = int((STACK_DIR / "run" / "kafka.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if process_cpu(pid) is not None else None


#: Commands only a client sends (the Lua step issues none of them). INFO commandstats also
#: counts the commands a script runs, so these are told apart from the script's work.
CLIENT_COMMANDS = ("evalsha", "eval", "script|load", "ping")


@dataclass(frozen=True, slots=True)
class RedisCounters:
    """Redis's cumulative counters at one moment. They are server-wide: other clients of
    the same Redis during a phase (tests running meanwhile) add to the deltas."""

    calls: dict[str, int]  # per command, from INFO commandstats
    failed: dict[str, int]  # failed_calls per command (an error raised by a script counts)
    cpu: float  # used_cpu_user + used_cpu_sys of the server
    used_memory: int
    bytes_in: int  # total_net_input_bytes: what clients sent
    bytes_out: int  # total_net_output_bytes: what Redis answered

    @classmethod
    async def read(cls, redis: "Redis") -> "RedisCounters":
        """Snapshot the counters (INFO calls, excluded from the deltas)."""
        stats = await redis.info("commandstats")
        cpu = await redis.info("cpu")
        memory = await redis.info("memory")
        net = await redis.info("stats")
        return cls(
            {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()},
            {name.removeprefix("cmdstat_"): int(v["failed_calls"]) for name, v in stats.items()},
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            int(memory["used_memory"]),
            int(net["total_net_input_bytes"]),
            int(net["total_net_output_bytes"]),
        )

    def since(self, earlier: "RedisCounters") -> dict[str, Any]:
        """Deltas: command calls (INFO excluded: the benchmark's own), split into what
        clients sent and what scripts ran; failed calls; server CPU; memory."""

        def delta(now: dict[str, int], then: dict[str, int]) -> dict[str, int]:
            moved = {name: count - then.get(name, 0) for name, count in now.items()}
            return {name: n for name, n in moved.items() if n and name != "info"}

        calls = delta(self.calls, earlier.calls)
        client = sum(calls.get(name, 0) for name in CLIENT_COMMANDS)
        return {
            "calls": calls,
            "failed_calls": delta(self.failed, earlier.failed),
            "commands": sum(calls.values()),
            "client_commands": client,
            "script_commands": sum(calls.values()) - client,
            "evalsha": calls.get("evalsha", 0),
            "cpu_seconds": round(self.cpu - earlier.cpu, 3),
            "used_memory_delta_bytes": self.used_memory - earlier.used_memory,
            "bytes_in": self.bytes_in - earlier.bytes_in,
            "bytes_out": self.bytes_out - earlier.bytes_out,
        }


def box_busy_cpu() -> float:
    """CPU seconds all processes of the machine have used (non-idle time in /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU seconds used so far by each process that competes for the cores, and by the
    whole box: what is left is other work on the machine, which skews the numbers."""

    wall: float
    box: float
    harness: float
    redis: float
    kafka: float | None
    subject: float | None  # the process under test, when it is a child

    @classmethod
    async def read(cls, redis: "Redis", subject_pid: int | None = None) -> "Usage":
        """Snapshot now."""
        broker = kafka_pid()
        return cls(
            wall=time.monotonic(),
            box=box_busy_cpu(),
            harness=own_cpu(),
            redis=(await RedisCounters.read(redis)).cpu,
            kafka=None if broker is None else process_cpu(broker),
            subject=None if subject_pid is None else process_cpu(subject_pid),
        )

    def since(self, earlier: "Usage") -> dict[str, float | None]:
        """CPU seconds each used between the two snapshots, the wall time, and `others`:
        the box's CPU used by none of them. That is mostly other programs on the machine,
        plus kernel threads working for them all (AOF fsync journaling, loopback softirqs)."""

        def delta(now: float | None, then: float | None) -> float | None:
            return None if now is None or then is None else round(now - then, 3)

        used = {
            "subject": delta(self.subject, earlier.subject),
            "harness": delta(self.harness, earlier.harness),
            "redis": delta(self.redis, earlier.redis),
            "kafka": delta(self.kafka, earlier.kafka),
        }
        box = self.box - earlier.box
        return {
            "wall_seconds": round(self.wall - earlier.wall, 3),
            **used,
            "box": round(box, 3),
            "others": round(box - sum(v for v in used.values() if v is not None), 3),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }


def per_10k(seconds: float | None, events: int) -> float | None:
    """CPU seconds per 10k events: comparable across runs of different sizes."""
    return None if seconds is None or not events else round(seconds / events * 10_000, 3)


def percentiles(values: list[float], points: tuple[float, ...]) -> dict[str, float]:
    """Nearest-rank percentiles (`p50`, `p99`, ...) and the maximum; empty for no values."""
    if not values:
        return {}
    ordered = sorted(values)
    found = {
        f"p{point:g}": ordered[min(len(ordered) - 1, max(0, round(point / 100 * len(ordered)) - 1))]
        for point in points
    }
    found["max"] = ordered[-1]
    return found


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def code_version() -> dict[str, Any]:
    """The commit measured. Tracked changes make it `-dirty`; their digest tells two dirty
    runs of the same commit apart (the worker is being optimised while benchmarks run)."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [line for line in _git("status", "--porcelain").splitlines() if line]
    tracked = [line[3:] for line in changed if not line.startswith("??")]
    diff = _git("diff", "HEAD", "--", "worker", "contracts", "pyproject.toml", "uv.lock")
    return {
        "commit": commit + ("-dirty" if tracked else ""),
        "changed_files": tracked,
        "untracked_files": [line[3:] for line in changed if line.startswith("??")],
        "code_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None,
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _memory_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


async def machine_facts(redis: "Redis") -> dict[str, Any]:
    """The hardware and software the numbers were taken on."""
    server = await redis.info("server")
    persistence = await redis.config_get("appendonly")
    persistence |= await redis.config_get("appendfsync")
    kafka_version = STACK_DIR / "kafka" / "version"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_total(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": kafka_version.read_text().strip() if kafka_version.exists() else None,
        "redis": server.get("redis_version"),
        "redis_persistence": persistence,
        "libraries": {
            name: _version(name)
            for name in ("faststream", "aiokafka", "redis", "hiredis", "pydantic")
        },
    }


def per_event_costs(
    events: int, cpu: dict[str, float | None], redis: dict[str, Any] | None, consumer: str
) -> dict[str, float | None]:
    """What one event costs: CPU microseconds of the consumer under test (`consumer`: the
    key of its CPU in `cpu`), of Redis and of the Kafka broker; Redis commands (the ones
    clients sent and the ones scripts ran) and bytes sent to and read from Redis."""

    def each(value: float | None, scale: float = 1.0) -> float | None:
        return None if value is None or not events else round(value * scale / events, 2)

    return {
        "consumer_cpu_us": each(cpu.get(consumer), 1e6),
        "redis_cpu_us": each(cpu.get("redis"), 1e6),
        "kafka_cpu_us": each(cpu.get("kafka"), 1e6),
        "redis_commands": each(redis["commands"]) if redis else 0.0,
        "redis_bytes_in": each(redis["bytes_in"]) if redis else 0.0,
        "redis_bytes_out": each(redis["bytes_out"]) if redis else 0.0,
    }
