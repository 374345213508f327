"""Consumer offsets: commit what is done, and never let a failed batch be skipped.

By the time a batch is handled the consumer's position is already past it, and the next
commit would move the group past it too. So a batch that fails for an unexpected reason (a
bug: transient failures are retried inside the pipeline) rewinds the consumer to the batch's
first records and is fetched again after a growing pause. A stuck partition shows in lag and
logs; a lost event would show nowhere.
"""

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faststream import BaseMiddleware
from faststream._internal.context import ContextRepo

from worker.health import Health
from worker.records import InputRecord

log = logging.getLogger(__name__)


async def commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    """Commit explicit offsets (last processed + 1 per partition).

    A failed commit is harmless: the events are applied and published, so a redelivery is
    deduplicated, and the next successful commit moves past them anyway.
    """
    try:
        await consumer.commit(offsets)
    except CommitFailedError as error:
        log.warning("offsets not committed (partitions were reassigned): %s", error)
    except KafkaError as error:
        log.warning("offsets not committed, will be with the next batch: %s", error)


def rewind(consumer: AIOKafkaConsumer, records: Sequence[InputRecord]) -> None:
    """Seek every partition of the batch back to its first record in the batch."""
    first: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        first[partition] = min(first.get(partition, record.offset), record.offset)
    for partition, offset in first.items():
        try:
            consumer.seek(partition, offset)
        except IllegalStateError:  # no longer assigned: its new owner starts from the commit
            continue


class BatchAbandoned(Exception):
    """This batch is dropped unpublished because an earlier one failed and the consumer was
    rewound to before both: committing this one would skip the failed one."""


class PublishFailed(Exception):
    """Publishing a batch failed unexpectedly; the consumer was rewound to its records."""

    def __init__(self, records: Sequence[InputRecord]) -> None:
        super().__init__(f"publishing a batch of {len(records)} records failed")
        self.records = records


class FailurePause:
    """Growing pause between attempts at a batch that keeps failing."""

    def __init__(self, health: Health, maximum: float) -> None:
        self._health = health
        self._maximum = maximum
        self._failures = 0

    def succeeded(self) -> None:
        """The last batch went through."""
        if self._failures:
            self._failures = 0
            self._health.recovered("pipeline")

    def failed(self) -> float:
        """Record a failure; returns how long to pause."""
        self._failures += 1
        self._health.failure("pipeline", "a batch failed unexpectedly, see the logs")
        return float(min(self._maximum, 0.5 * 2 ** (self._failures - 1)))


class RewindOnFailure(BaseMiddleware):
    """FastStream middleware: wraps parsing and handling of each batch; on an exception,
    rewinds the consumer to the batch and pauses before it is fetched again."""

    def __init__(self, msg: Any, /, *, context: ContextRepo, pause: FailurePause) -> None:
        super().__init__(msg, context=context)
        self._pause = pause

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        if exc_type is None:
            self._pause.succeeded()
            return False
        if not issubclass(exc_type, Exception):  # cancellation, shutdown: nothing committed
            return False
        if issubclass(exc_type, BatchAbandoned):  # rewound further back already
            log.warning("batch abandoned: %s", exc_val)
            return False
        subscriber = self.context.get_local("handler_")
        if self.msg is not None and subscriber is not None and subscriber.consumer is not None:
            rewind(subscriber.consumer, self.msg)
        pause = self._pause.failed()
        log.error("batch failed, rewound; retrying in %.1fs: %r", pause, exc_val)
        await asyncio.sleep(pause)
        return False
