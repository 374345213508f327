"""A private Kafka + Redis for the fault session, driven through `deploy/local-stack.sh`.

The fault tests kill and pause these services, so they never touch the shared local stack:
the script runs with a stack directory and ports of its own, and without the
`KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` variables that would make it reuse another stack.
"""

import asyncio
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import REPO

SCRIPT = REPO / "deploy" / "local-stack.sh"

#: Variables that would point the script (or a worker) at another stack.
FOREIGN_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "CW_STACK_DIR")


class StackError(RuntimeError):
    """A stack command failed; the message carries its output."""


def port_in_use(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def clean_env(*, keep_cw: bool = False) -> dict[str, str]:
    """This process's environment without anything naming another stack, and without any
    `CW_*` setting unless `keep_cw` (the stack script's jar cache and Kafka version)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in FOREIGN_ENV and (keep_cw or not name.startswith("CW_"))
    }


@dataclass(frozen=True)
class StackPorts:
    """Loopback ports of the private stack."""

    kafka: int
    controller: int
    redis: int

    def all(self) -> dict[str, int]:
        """Port per purpose, for error messages."""
        return {"Kafka": self.kafka, "Kafka controller": self.controller, "Redis": self.redis}


class PrivateStack:
    """One Kafka broker and one Redis (AOF, fsync always) under `directory`."""

    def __init__(self, directory: Path, ports: StackPorts) -> None:
        self.directory = directory
        self.ports = ports

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers."""
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def redis_url(self) -> str:
        """Redis URL."""
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    @property
    def logs(self) -> Path:
        """Where the script keeps the services' logs."""
        return self.directory / "logs"

    def _env(self) -> dict[str, str]:
        env = clean_env(keep_cw=True)
        env.update(
            CW_STACK_DIR=str(self.directory),
            CW_KAFKA_PORT=str(self.ports.kafka),
            CW_KAFKA_CONTROLLER_PORT=str(self.ports.controller),
            CW_REDIS_PORT=str(self.ports.redis),
        )
        return env

    def check_ports_free(self) -> None:
        """Fail clearly (rather than reuse a stranger's service) when a port is taken."""
        taken = [f"{what} {port}" for what, port in self.ports.all().items() if port_in_use(port)]
        if taken:
            raise StackError(
                f"ports taken on 127.0.0.1: {', '.join(taken)}. The fault tests need a private "
                "stack; free them (a leftover fault stack? see /tmp/cw-faults-*) or choose "
                "others with CW_FAULTS_KAFKA_PORT / CW_FAULTS_CONTROLLER_PORT / "
                "CW_FAULTS_REDIS_PORT."
            )

    def run(self, command: str, timeout: float = 300.0) -> None:
        """Run a script command to completion (blocking: session set-up and tear-down)."""
        done = subprocess.run(
            [str(SCRIPT), command],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"local-stack.sh {command} failed:\n{done.stdout}{done.stderr}")

    async def arun(self, command: str, within: float = 180.0) -> None:
        """Run a script command without blocking the event loop (faults mid-stream)."""
        process = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            command,
            env=self._env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), within)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise StackError(f"local-stack.sh {command} took more than {within}s") from None
        if process.returncode != 0:
            raise StackError(f"local-stack.sh {command} failed:\n{output.decode(errors='replace')}")

    def redis_pid(self) -> int:
        """The pid of the running redis-server, from the pid file Redis writes itself."""
        return int((self.directory / "run" / "redis.pid").read_text().strip())

    def signal_redis(self, signum: signal.Signals) -> int:
        """Send `signum` to redis-server; returns its pid."""
        pid = self.redis_pid()
        os.kill(pid, signum)
        return pid

    async def wait_gone(self, pid: int, within: float = 10.0) -> None:
        """Wait until `pid` no longer runs (a zombie counts as gone: init reaps it later)."""
        deadline = asyncio.get_running_loop().time() + within
        while _running(pid):
            if asyncio.get_running_loop().time() > deadline:
                raise StackError(f"process {pid} still runs {within}s after being killed")
            await asyncio.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
