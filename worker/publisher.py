"""Produces a batch's output records and waits once for all acknowledgements.

Records are appended to one batch builder per partition and each builder is handed to the
idempotent producer whole (`send_batch`): one future and one queue entry per partition and
batch, instead of one per record as with `send`. Partitions are chosen as `send` (and the
Java client) does: murmur2 of the key, so a customer's records stay on one partition.
"""

import asyncio
import random
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from worker.messages import OutMessage


@lru_cache(maxsize=65_536)  # customers come back batch after batch; murmur2 is pure Python
def _partition_index(key: bytes, count: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % count


class Publisher:
    """Wraps an idempotent `acks=all` producer."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish_all(self, messages: Sequence[OutMessage]) -> None:
        """Produce every message, then wait for all to be acknowledged (or raise)."""
        producer = self._producer
        partitions: dict[str, list[int]] = {}
        builders: dict[tuple[str, int], Any] = {}
        pending: list[asyncio.Future[Any]] = []
        for message in messages:
            topic = message.topic
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = sorted(await producer.partitions_for(topic))
            if message.key is None:
                partition = random.choice(known)  # noqa: S311 - spreading, not security
            else:
                partition = known[_partition_index(message.key, len(known))]
            builder = builders.get((topic, partition))
            if builder is None:
                builder = builders[topic, partition] = producer.create_batch()
            if (
                builder.append(
                    timestamp=None, key=message.key, value=message.value, headers=message.headers
                )
                is None
            ):  # full: send it, start the next one (a first record always fits)
                pending.append(await producer.send_batch(builder, topic, partition=partition))
                builder = builders[topic, partition] = producer.create_batch()
                builder.append(
                    timestamp=None, key=message.key, value=message.value, headers=message.headers
                )
        for (topic, partition), builder in builders.items():
            pending.append(await producer.send_batch(builder, topic, partition=partition))
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
