"""Retry with capped exponential backoff for failures that pass on their own.

Redis or Kafka being unreachable, failing over or out of memory is transient: the batch
is retried (every step is idempotent) and never dead-lettered, however long it takes.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    TimeoutError,
    TryAgainError,
)

from worker.health import Health
from worker.metrics import Metrics

T = TypeVar("T")

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    OutOfMemoryError,
    ClusterDownError,
    TryAgainError,
    MasterDownError,
    KafkaError,
    OSError,
    asyncio.TimeoutError,
)


class Retrier:
    """Runs an action until it succeeds, backing off between transient failures."""

    def __init__(self, health: Health, metrics: Metrics, initial: float, maximum: float) -> None:
        self._health = health
        self._retries = metrics.retries
        self._initial = initial
        self._maximum = maximum

    async def run(self, component: str, action: Callable[[], Awaitable[T]]) -> T:
        """The action's result; transient errors mark `component` failing and are retried."""
        delay = self._initial
        while True:
            try:
                result = await action()
            except TRANSIENT_ERRORS as error:
                reason = f"{type(error).__name__}: {error}"
                self._health.failure(component, reason)
                self._retries.labels(component).inc()
                log.warning("%s unavailable, retrying in %.1fs: %s", component, delay, reason)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311
                delay = min(delay * 2, self._maximum)
            else:
                self._health.recovered(component)
                return result
