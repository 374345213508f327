"""Where the tests find a real Kafka broker and a real Redis.

From the environment first (`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL`, as exported by
`deploy/local-stack.sh`); else, where a Docker engine answers, from testcontainers; else the
run fails. It never skips: a test suite that silently skips its integration tests proves
nothing.
"""

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from worker.settings import Topics

#: The checkout the tests run from.
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Services:
    """Connection settings of the services under test."""

    kafka_bootstrap_servers: str
    redis_url: str


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@contextmanager
def services() -> Iterator[Services]:
    """The services for this test session."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    redis_url = os.environ.get("REDIS_URL")
    if bootstrap and redis_url:
        yield Services(bootstrap, redis_url)
        return
    if not _docker_available():
        raise RuntimeError(
            "No Kafka/Redis to test against: set KAFKA_BOOTSTRAP_SERVERS and REDIS_URL "
            "(`make test` starts a local stack and does it), or provide a Docker engine."
        )
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.redis import RedisContainer

    with ExitStack() as stack:
        kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft())
        redis = stack.enter_context(
            RedisContainer("redis:7").with_command("redis-server --appendonly yes")
        )
        host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        yield Services(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0")


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nobody listens on right now."""
    with ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def prefixed_topics(prefix: str) -> Topics:
    """Every topic name of `Topics` under `prefix`, including ones added after this was
    written: a default name left in place would be the stack's real topic."""
    names = {
        name: f"{prefix}.{field.default}"
        for name, field in Topics.model_fields.items()
        if isinstance(field.default, str) and not name.endswith("_suffix")
    }
    return Topics.model_validate(names)
