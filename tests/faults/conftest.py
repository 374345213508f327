"""A private Kafka + Redis for the fault session (never the shared local stack: these tests
kill and pause the services), and the fault matrix in the terminal summary."""

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.report import SESSION_ROWS, matrix_path, table
from tests.faults.stack import PrivateStack, StackError, StackPorts


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[PrivateStack]:
    """Started with deploy/local-stack.sh in a temporary directory, wiped at session end
    (`CW_FAULTS_KEEP_STACK=1` only stops it, keeping data and logs)."""
    ports = StackPorts(
        kafka=_port("CW_FAULTS_KAFKA_PORT", 29492),
        controller=_port("CW_FAULTS_CONTROLLER_PORT", 29493),
        redis=_port("CW_FAULTS_REDIS_PORT", 26579),
    )
    stack = PrivateStack(Path(tempfile.mkdtemp(prefix="cw-faults-")), ports)
    stack.check_ports_free()
    try:
        try:
            stack.run("up")
        except StackError as error:  # the stack is infrastructure: one more try, then fail
            print(f"retrying once: {error}")
            stack.run("up")
        yield stack
    finally:
        # A test that failed mid-pause must not leave Redis frozen (its stop would hang).
        with contextlib.suppress(OSError, ValueError):
            stack.signal_redis(signal.SIGCONT)
        try:
            stack.run("down" if os.environ.get("CW_FAULTS_KEEP_STACK") else "wipe")
        except StackError as error:
            print(error)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print this session's fault matrix."""
    if not SESSION_ROWS:
        return
    terminalreporter.section("fault matrix")
    for line in table(SESSION_ROWS):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(appended to {matrix_path()})")
