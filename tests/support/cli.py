"""Runs the `customer-worker` console script as a subprocess, configured like a test."""

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, SecretStr

from worker.settings import Settings

SCRIPT = Path(sys.executable).parent / "customer-worker"


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `Settings()` equal `settings` (CW_* variables)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CW_") and key not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")
    }
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):  # nested: CW_TOPICS__ORDER_EVENTS=...
            for inner in type(value).model_fields:
                env[f"CW_{name.upper()}__{inner.upper()}"] = _env_value(getattr(value, inner))
        elif value is not None:
            env[f"CW_{name.upper()}"] = _env_value(value)
    return env


@dataclass(frozen=True)
class Result:
    """Exit status and output of one command."""

    code: int
    out: str
    err: str


async def run_cli(settings: Settings, *args: str, stdin: bytes = b"") -> Result:
    """`customer-worker ARGS...` with the settings' environment."""
    process = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        env=settings_env(settings),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout=120)
    except TimeoutError:
        process.kill()  # never leave a stuck command behind
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())
