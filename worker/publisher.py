"""Produces a batch's output records and waits once for all acknowledgements."""

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from worker.messages import OutMessage


class Publisher:
    """Wraps an idempotent `acks=all` producer."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish_all(self, messages: Sequence[OutMessage]) -> None:
        """Enqueue every message, then wait for all to be acknowledged (or raise)."""
        pending = [
            await self._producer.send(m.topic, m.value, key=m.key, headers=m.headers)
            for m in messages
        ]
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
