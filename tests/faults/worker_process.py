"""The worker as a real subprocess (`python -m worker.cli run`), to be killed for real."""

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.faults.stack import REPO


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """One worker process slot: started, killed and restarted; every run logs to one file."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self.port = 0
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Pid of the current run."""
        assert self._process is not None, f"{self.name} was never started"
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the current run has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start a run on a fresh HTTP port (the previous one may linger in TIME_WAIT)."""
        assert not self.alive, f"{self.name} is already running"
        self.port = free_port()
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {self.name} start #{self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worker.cli",
                    "run",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def send(self, signum: signal.Signals) -> None:
        """Deliver a signal to the current run."""
        assert self._process is not None
        self._process.send_signal(signum)

    async def wait_exit(self, within: float) -> int:
        """The exit status of the current run (negative: killed by that signal)."""
        assert self._process is not None
        deadline = time.monotonic() + within
        while (code := self._process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {within}s")
            await asyncio.sleep(0.02)
        return code

    async def kill(self) -> int:
        """SIGKILL the current run and reap it."""
        self.send(signal.SIGKILL)
        return await self.wait_exit(10.0)

    async def readiness(self) -> int | None:
        """HTTP status of `/readyz`, or None when the endpoint does not answer (the worker
        probes Redis and Kafka for up to a few seconds before it replies)."""
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.get(f"http://127.0.0.1:{self.port}/readyz")
        except httpx.HTTPError:
            return None
        return response.status_code

    async def wait_ready(self, within: float = 60.0) -> None:
        """Wait until `/readyz` says 200; fail early if the process dies."""
        deadline = time.monotonic() + within
        while await self.readiness() != 200:
            if not self.alive:
                raise AssertionError(f"{self.name} exited during start-up; see {self.log_path}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready within {within}s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Tear-down: SIGTERM, then SIGKILL if it does not go."""
        if not self.alive:
            return
        self.send(signal.SIGTERM)
        try:
            await self.wait_exit(20.0)
        except AssertionError:
            await self.kill()

    def log_tail(self, lines: int = 80) -> str:
        """The end of the log, for failure reports."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
