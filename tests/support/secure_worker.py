"""`customer-worker run` as a subprocess, as the security tests need it: configured through
its environment only (`settings_env`, secrets included), with what it prints kept on stdout
and stderr apart, to be searched for error messages and leaks."""

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.cli import SCRIPT, settings_env
from tests.support.secure_stack import free_ports
from worker.settings import Settings


class WorkerProcess:
    """`customer-worker run` with the settings' environment; stdout and stderr go to files of
    their own, so that a test can tell what the worker printed where."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        (self.port,) = free_ports(1)
        self._env = settings_env(settings)
        self._out_path = directory / f"worker-{self.port}.out"
        self._err_path = directory / f"worker-{self.port}.err"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def out(self) -> str:
        """Everything it wrote to stdout so far."""
        return self._out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        """Everything it wrote to stderr so far (its logs)."""
        return self._err_path.read_text(errors="replace")

    async def start(self) -> None:
        """Launch it, HTTP endpoints on a free loopback port."""
        with self._out_path.open("wb") as out, self._err_path.open("wb") as err:
            self._process = await asyncio.create_subprocess_exec(
                str(SCRIPT),
                *("run", "--host", "127.0.0.1", "--port", str(self.port)),
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    async def wait_exit(self, within: float) -> int:
        """Its exit status; fails (and kills it) if it is still running after `within` s."""
        assert self._process is not None, "not started"
        try:
            return await asyncio.wait_for(self._process.wait(), within)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
            raise AssertionError(
                f"the worker still ran after {within}s:\n{self.err[-3000:]}"
            ) from None

    async def wait_ready(self, within: float = 60.0) -> None:
        """Wait until `/readyz` says 200 (connected, partitions assigned)."""
        assert self._process is not None, "not started"
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=10.0) as client:
            while True:
                if self._process.returncode is not None:
                    raise AssertionError(f"the worker exited on start:\n{self.err[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"http://127.0.0.1:{self.port}/readyz")
                    if response.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the worker not ready in {within}s:\n{self.err[-3000:]}")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it lingers."""
        if self._process is None or self._process.returncode is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            await self.wait_exit(30.0)

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
