"""What the benchmark reads from a consumer under test run as a child process (the worker
or the naive baseline, `tests.support.worker_process.Child`): its HTTP endpoints and the
warnings and errors in its output."""

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from tests.support.worker_process import Child

#: A child whose consumer group does not progress for this long is stuck: the phase fails.
STALL_SECONDS = 90.0
#: Longest wait for an answer from a child's HTTP endpoint.
HTTP_TIMEOUT = 10.0
#: Log lines at these levels are reported (the children log JSON lines at warning and up).
_PROBLEM_LEVELS = ("warning", "error", "critical")


def problems(child: Child, samples: int = 5) -> dict[str, Any]:
    """Warnings and errors in its log: count per level and the first few messages."""
    counts: dict[str, int] = {}
    first: list[str] = []
    for line in (child.err + child.out).splitlines():
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
