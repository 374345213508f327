"""Where the tests find a real Kafka broker and a real Redis.

From the environment first (`KAFKA_BOOTSTRAP_SERVERS`, `REDIS_URL`, as exported by
`deploy/local-stack.sh`); else, where a Docker engine answers, from testcontainers; else the
run fails. It never skips: a test suite that silently skips its integration tests proves
nothing.
"""

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass


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
