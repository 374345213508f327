"""Child processes run as users run them: `customer-worker run` configured through its
environment only (`settings_env`, secrets included), or any other command (the benchmark's
naive consumer). Their stdout and stderr go to files of their own, kept across restarts, to
be searched for error messages and leaks; they are killed for real in the fault tests."""

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.cli import SCRIPT, settings_env
from tests.support.services import REPO, free_ports
from worker.settings import Settings


class Child:
    """One child process slot: started, signalled, killed and restarted; every run of it
    appends to the same `NAME.out` and `NAME.err` in `directory`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.env = env
        self.starts = 0
        self._argv = argv
        self._out_path = directory / f"{name}.out"
        self._err_path = directory / f"{name}.err"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def out(self) -> str:
        """Everything it wrote to stdout so far."""
        return self._read(self._out_path)

    @property
    def err(self) -> str:
        """Everything it wrote to stderr so far (its logs)."""
        return self._read(self._err_path)

    @property
    def pid(self) -> int:
        """Process id of the current run."""
        assert self._process is not None, f"{self.name} was never started"
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the current run has not exited."""
        return self._process is not None and self._process.returncode is None

    def argv(self) -> list[str]:
        """The command line of the next run."""
        return self._argv

    async def start(self) -> None:
        """Start a run; a restart writes a header line into both files first."""
        assert not self.alive, f"{self.name} is already running"
        self._out_path.parent.mkdir(parents=True, exist_ok=True)
        mode = "ab" if self.starts else "wb"
        self.starts += 1
        argv = self.argv()
        with self._out_path.open(mode) as out, self._err_path.open(mode) as err:
            if self.starts > 1:
                header = f"\n===== {self.name} start #{self.starts} at {time.time():.3f}\n"
                for file in (out, err):
                    file.write(header.encode())
                    file.flush()
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a Ctrl-C of the tests reaches it through stop()
            )

    def send(self, signum: signal.Signals) -> None:
        """Deliver a signal to the current run."""
        assert self._process is not None, f"{self.name} was never started"
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signum)

    async def wait_exit(self, within: float) -> int:
        """The exit status of the current run (negative: killed by that signal); fails if
        it still runs after `within` seconds (it is left running)."""
        assert self._process is not None, f"{self.name} was never started"
        try:
            return await asyncio.wait_for(self._process.wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} still ran after {within}s:\n{self.log_tail()}"
            ) from None

    async def kill(self) -> int:
        """SIGKILL the current run and reap it."""
        self.send(signal.SIGKILL)
        return await self.wait_exit(10.0)

    async def stop(self, within: float = 30.0) -> int | None:
        """Graceful stop (SIGTERM), SIGKILL if it lingers; the exit status."""
        if self._process is None:
            return None
        if self.alive:
            self.send(signal.SIGTERM)
            try:
                await self.wait_exit(within)
            except AssertionError:
                await self.kill()
        return self._process.returncode

    def ensure_alive(self) -> None:
        """Fail early when the child died."""
        if not self.alive:
            raise AssertionError(f"{self.name} exited unexpectedly:\n{self.log_tail()}")

    def log_tail(self, lines: int = 80) -> str:
        """The end of both files, for failure reports."""
        return "\n".join(
            f"--- {path}:\n" + "\n".join(self._read(path).splitlines()[-lines:])
            for path in (self._err_path, self._out_path)
        )

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""


class WorkerProcess(Child):
    """`customer-worker run` with the settings' environment, its HTTP endpoints on a fresh
    loopback port each run (the previous one may linger in TIME_WAIT)."""

    def __init__(
        self,
        settings: Settings,
        directory: Path,
        name: str = "worker",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {**settings_env(settings), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        super().__init__(name, [str(SCRIPT), "run", "--host", "127.0.0.1"], env, directory)
        self.port = 0

    def argv(self) -> list[str]:
        (self.port,) = free_ports(1)
        return [*super().argv(), "--port", str(self.port)]

    async def readiness(self) -> int | None:
        """HTTP status of `/readyz`, or None when the endpoint does not answer (the worker
        probes Redis and Kafka for up to a few seconds before it replies)."""
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.get(f"http://127.0.0.1:{self.port}/readyz")
        except httpx.HTTPError:
            return None
        return response.status_code

    async def wait_ready(self, within: float = 60.0) -> float:
        """Wait until `/readyz` says 200 (connected, partitions assigned), failing early if
        the process dies; the seconds it took."""
        started = time.monotonic()
        while await self.readiness() != 200:
            self.ensure_alive()
            if time.monotonic() - started > within:
                raise AssertionError(f"{self.name} not ready in {within}s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def __aenter__(self) -> "WorkerProcess":
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
