"""A consumer under test as a child process: the worker or the naive baseline.

A child of its own keeps its CPU and memory apart from the benchmark's (read from /proc)
and runs it exactly as deployed. Its output goes to a log file, scanned afterwards for
warnings and errors."""

import asyncio
import contextlib
import json
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.perf.measure import REPO, process_cpu, process_memory

#: A child whose consumer group does not progress for this long is stuck: the phase fails.
STALL_SECONDS = 90.0
#: Longest wait for a child's HTTP endpoint (its /readyz probes Redis and Kafka first).
HTTP_TIMEOUT = 10.0
#: Log lines at these levels are reported (the children log JSON lines at warning and up).
_PROBLEM_LEVELS = ("warning", "error", "critical")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """One child process with its log in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self._argv = argv
        self._env = env
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        """Its process id."""
        assert self._process is not None, f"{self.name} was not started"
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Started and not exited."""
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start it, logging to `log_path` (overwritten)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv,
                cwd=REPO,
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the benchmark reaches it via stop()
            )

    async def stop(self, within: float = 30.0) -> int | None:
        """SIGTERM (graceful stop), SIGKILL if it does not exit in time; the exit status."""
        if self._process is None:
            return None
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
        return self._process.returncode

    def cpu(self) -> float | None:
        """CPU seconds used so far."""
        return process_cpu(self.pid)

    def memory(self) -> dict[str, int]:
        """RSS now and peak, in bytes."""
        return process_memory(self.pid)

    def ensure_alive(self) -> None:
        """Fail the phase early when the child died."""
        if not self.alive:
            raise RuntimeError(f"{self.name} exited unexpectedly; see {self.log_path}")

    def problems(self, samples: int = 5) -> dict[str, Any]:
        """Warnings and errors in its log: count per level and the first few messages."""
        counts: dict[str, int] = {}
        first: list[str] = []
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {"counts": {}, "samples": []}
        for line in lines:
            try:
                entry = json.loads(line)
                level, message = str(entry["level"]), str(entry["message"])
            except (ValueError, KeyError, TypeError):
                level, message = "unparsed", line  # a traceback or a library's own print
            if level in _PROBLEM_LEVELS or level == "unparsed":
                counts[level] = counts.get(level, 0) + 1
                if len(first) < samples:
                    first.append(f"{level}: {message[:300]}")
        return {"counts": counts, "samples": first}


async def http_get(port: int, path: str) -> tuple[int, str] | None:
    """Status and body of a GET to a child's HTTP port; None when nothing answers."""

    def get() -> tuple[int, str] | None:
        url = f"http://127.0.0.1:{port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:  # loopback only
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode(errors="replace")
        except OSError:
            return None

    return await asyncio.to_thread(get)
