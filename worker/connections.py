"""Connections to Kafka and Redis, secured as configured, built in one place.

Every Kafka client of the project (FastStream's consumer, the worker's producer, the CLI's
admin, producer and consumer clients) gets its security from `kafka_security`, through
FastStream's own translation into aiokafka options, so they can never disagree.
"""

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
from aiokafka.helpers import create_ssl_context
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection

from worker.settings import Settings

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's security object for the configured protocol (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    tls = protocol in ("SSL", "SASL_SSL")
    context = (
        create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
        if tls
        else None
    )
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    if settings.kafka_sasl_username is None or settings.kafka_sasl_password is None:
        raise ValueError(f"{protocol} needs CW_KAFKA_SASL_USERNAME and CW_KAFKA_SASL_PASSWORD")
    return _SASL[settings.kafka_sasl_mechanism](
        settings.kafka_sasl_username,
        settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=tls,
    )


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        **parse_security(kafka_security(settings)),
    }


def connect_redis(settings: Settings) -> "Redis | RedisCluster":
    """A client for the store: a single Redis or a Redis Cluster, authenticated and over TLS
    as configured, with socket timeouts so a hung server becomes a retried failure."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    if settings.redis_username is not None:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_ssl_ca_certs is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_certs)
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **options)
    client = Redis.from_url(settings.redis_url, **options)
    pool = client.connection_pool
    pool.connection_class = _packing_with_hiredis(pool.connection_class)
    return client


class _HiredisPacking(AbstractConnection):
    """Packs commands with hiredis (C), as redis-py's synchronous connections do, instead of
    its asyncio connections' pure-Python packer: a batch's pipeline of commits has tens of
    thousands of arguments. Unlike redis-py's `HiredisRespSerializer` it does not copy the
    arguments into a new tuple first (the worker passes str and bytes only). (Redis Cluster
    clients keep redis-py's packer: their node connections are not configurable.)"""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " in name:  # e.g. "SCRIPT LOAD": sent as two words
            args = (*name.split(), *args[1:])
        return [hiredis.pack_command(args)]


_HIREDIS_CLASSES: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packing_with_hiredis(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """The connection class (plain, TLS or Unix socket) with hiredis packing."""
    found = _HIREDIS_CLASSES.get(connection_class)
    if found is None:
        name = f"Hiredis{connection_class.__name__}"
        found = _HIREDIS_CLASSES[connection_class] = type(
            name, (_HiredisPacking, connection_class), {}
        )
    return found


def redacted(url: str) -> str:
    """A URL safe to print: any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))
