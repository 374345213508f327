"""A local Redis Cluster of three masters, from the same `redis-server` as the stack."""

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PORTS = (27101, 27102, 27103)


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


@contextmanager
def redis_cluster() -> Iterator[str]:
    """Start the cluster; yields the URL of one node (the worker discovers the others)."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed: run `deploy/local-stack.sh up` first")
    root = Path(tempfile.mkdtemp(prefix="cw-redis-cluster-"))
    processes = []
    try:
        for port in PORTS:
            node = root / str(port)
            node.mkdir()
            processes.append(
                subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(node),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                        "--save",
                        "",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in PORTS:
            _wait(lambda port=port: _cli(port, "ping").strip() == "PONG", f"node {port}")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in PORTS),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            check=True,
        )
        for port in PORTS:
            _wait(
                lambda port=port: "cluster_state:ok" in _cli(port, "cluster", "info"),
                f"cluster state on {port}",
            )
        yield f"redis://127.0.0.1:{PORTS[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():  # type: ignore[operator]
                return
        except subprocess.CalledProcessError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
