"""The naive baseline: the worker's work written the way a typical FastStream user would.

One `@broker.subscriber` handler per message (no batching, no cache), acknowledged after
processing (`AckPolicy.ACK`, which commits the consumer's positions per message): validate
the event with the contracts' TypeAdapter, then for each customer it touches read the
stored fields, fold the event (the project's fold) and write it back (the project's
compare-and-set step): two awaited Redis round trips; render the record and await the
publish of each `customer.updated` (acks=all) before the next message. Same output as the
worker with `publish_every_change`, so the comparison is about the structure, not the work.

Run as `python -m tests.perf.naive`, configured like the worker (CW_* variables); it stops
on SIGTERM.
"""

import asyncio
import logging
import signal
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import TypeAdapter
from redis.asyncio import Redis

from contracts.events import INPUT_TOPICS, AnyInputEvent
from contracts.loyalty import ReferralCompleted
from tests.perf.sandbox import source_topics
from worker import logs
from worker.domain.clock import format_time
from worker.domain.fold import fold
from worker.domain.steps import Step, referrer_step_of, step_of
from worker.messages import Cause, customer_updated
from worker.pipeline import rendered_record
from worker.settings import Settings, fold_limits
from worker.store.customer_store import CustomerStore, Stale, Written


def customer_steps(event: AnyInputEvent) -> list[Step]:
    """The steps of an event for every customer it changes (a referral: both sides, at once,
    as a naive handler would do it)."""
    steps = [step_of(event)]
    if isinstance(event, ReferralCompleted):
        steps.append(referrer_step_of(event))
    return steps


def build_broker(settings: Settings, redis: "Redis") -> KafkaBroker:
    """The broker with its one per-message subscriber."""
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        logger=logging.getLogger("faststream.access.kafka"),
    )
    store = CustomerStore(redis, settings.key_prefix)
    limits = replace(fold_limits(settings), each_change=True)
    adapters: dict[str, TypeAdapter[Any]] = {
        topic: TypeAdapter(INPUT_TOPICS[contract])
        for topic, contract in source_topics(settings.topics).items()
    }
    output = settings.topics.customer_updated

    @broker.subscriber(
        *source_topics(settings.topics),
        group_id=settings.group_id,
        ack_policy=AckPolicy.ACK,
        auto_offset_reset="earliest",
    )
    async def handle(message: KafkaMessage) -> None:
        record = cast("ConsumerRecord[bytes, bytes]", message.raw_message)  # not a batch
        event = adapters[record.topic].validate_json(record.value)
        steps = customer_steps(event)
        cause = Cause(event.id, event.source, event.type)
        for step in steps:
            (state,) = await store.load([step.customer_id])
            view = rendered_record(state)
            while True:
                erasing = step.erases
                logged = (await store.logs([step.customer_id]))[0] if erasing else None
                folded = fold(state, [step], limits, logged=logged)
                if folded.commit is None:
                    break
                (result,) = await store.commit([(step.customer_id, folded.commit)])
                if isinstance(result, Stale):
                    (state,) = await store.states([(step.customer_id, result.fields)])
                    view = rendered_record(state)
                    continue
                if not isinstance(result, Written):
                    raise result
                state.commit(folded, result.added, result.removed, result.kept, result.trimmed)
                break
            for snapshot in folded.snapshots:
                record, changed = view.apply(snapshot.changes, snapshot.wiped)
                now = format_time(datetime.now(UTC))
                out = customer_updated(
                    output, step.customer_id, snapshot.version, record, changed, cause, now
                )
                await broker.publish(
                    out.value,
                    out.topic,
                    key=out.key,
                    headers={name: value.decode() for name, value in out.headers},
                )

    return broker


async def serve() -> None:
    """Consume until SIGTERM or SIGINT."""
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    broker = build_broker(settings, redis)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await broker.start()
    try:
        await stop.wait()
    finally:
        await broker.stop()
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(serve())
