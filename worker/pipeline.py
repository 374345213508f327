"""One batch, end to end: decode, apply in Redis, publish, and say which offsets are done.

Order of effects per batch (DESIGN.md §1): every event is applied (one pipelined round trip
of per-customer atomic steps), then every `customer.updated` and dead letter is produced and
acknowledged, and only then are the offsets returned for commit. A crash anywhere before the
commit means redelivery; redelivered events are recognised by their dedup markers, and the
current snapshot is published again if its version may not have been published yet.
"""

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import TopicPartition
from redis.exceptions import ResponseError

from contracts.events import AnyInputEvent
from contracts.loyalty import ReferralCompleted
from worker.domain.clock import format_time
from worker.domain.record import render_change
from worker.domain.steps import referrer_step_of, step_of
from worker.intake import Intake
from worker.messages import Cause, OutMessage, customer_updated, dead_letter, forward
from worker.metrics import OUTCOMES, Metrics
from worker.publisher import Publisher
from worker.records import InputRecord
from worker.rejection import Rejection
from worker.retry import Retrier
from worker.settings import Topics
from worker.store.customer_store import CustomerBatch, CustomerStore, Outcome

log = logging.getLogger(__name__)


#: Published versions remembered until the customer's next step confirms them to Redis.
#: Forgetting one only costs an unnecessary re-publish after a redelivery.
_MAX_CONFIRMATIONS = 20_000


@dataclass(slots=True)
class _Work:
    """One customer's share of a batch: its steps and the record each came from."""

    batch: CustomerBatch
    sources: list[tuple[InputRecord, AnyInputEvent]] = field(default_factory=list)


_Applied = list[tuple[_Work, Outcome]]
_Dead = tuple[InputRecord, Rejection]


@dataclass(slots=True)
class _Plan:
    """A decoded batch: each customer's steps, the rejected records, the referrals to
    forward to their referrer's worker."""

    work: dict[str, _Work] = field(default_factory=dict)
    dead: list[_Dead] = field(default_factory=list)
    forward: list[OutMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """A batch applied in Redis whose output is not published yet."""

    records: Sequence[InputRecord]
    outcomes: _Applied
    dead: list[_Dead]
    forward: list[OutMessage]
    started: float


class BatchPipeline:
    """Processes batches of input records; stateless apart from pending confirmations."""

    def __init__(
        self,
        intake: Intake,
        store: CustomerStore,
        publisher: Publisher,
        topics: Topics,
        retrier: Retrier,
        metrics: Metrics,
        max_record_fields: int,
    ) -> None:
        self._intake = intake
        self._store = store
        self._publisher = publisher
        self._topics = topics
        self._retrier = retrier
        self._metrics = metrics
        self._max_fields = max_record_fields
        self._published: dict[str, int] = {}

    async def process(self, records: Sequence[InputRecord]) -> dict[TopicPartition, int]:
        """Handle the batch completely; returns the offsets to commit (last + 1)."""
        return await self.publish(await self.apply(records))

    async def apply(self, records: Sequence[InputRecord]) -> AppliedBatch:
        """First half: decode and apply in Redis (nothing is published yet)."""
        started = time.perf_counter()
        plan = self._plan(records)
        work = list(plan.work.values())
        outcomes, rejected = await self._retrier.run("redis", lambda: self._apply(work))
        return AppliedBatch(records, outcomes, plan.dead + rejected, plan.forward, started)

    async def publish(self, batch: AppliedBatch) -> dict[TopicPartition, int]:
        """Second half: publish the batch's updates and dead letters, wait for every
        acknowledgement; returns the offsets to commit (last + 1 per partition)."""
        now = format_time(datetime.now(UTC))
        messages = [self._dead_letter(record, why, now) for record, why in batch.dead]
        messages += batch.forward
        versions: dict[str, int] = {}
        for item, outcome in batch.outcomes:
            messages += self._announce(item, outcome, versions, now)
        await self._retrier.run("kafka", lambda: self._publish(messages))
        self._remember(versions)
        self._count(batch.outcomes)
        self._metrics.batch_size.observe(len(batch.records))
        self._metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        return _next_offsets(batch.records)

    async def _publish(self, messages: list[OutMessage]) -> None:
        with self._metrics.publish_seconds.time():
            await self._publisher.publish_all(messages)

    def _dead_letter(self, record: InputRecord, why: Rejection, now: str) -> OutMessage:
        log.warning(
            "dead-lettered %s record: %s",
            why.error_class,
            why.message,
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error_class": why.error_class,
            },
        )
        self._metrics.dlq.labels(record.topic, why.error_class).inc()
        self._metrics.events.labels(record.topic, "", "dlq").inc()
        return dead_letter(self._topics.dlq(record.topic), record, why, now)

    def _count(self, outcomes: _Applied) -> None:
        """Events by topic, type and outcome."""
        counts: Counter[tuple[str, str, str]] = Counter()
        for item, outcome in outcomes:
            for (record, event), letter in zip(item.sources, outcome.letters, strict=True):
                outcome_name = OUTCOMES.get(letter)  # refused ones are counted as dead letters
                if outcome_name is not None:
                    counts[record.topic, event.type, outcome_name] += 1
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("event %s", outcome_name, extra=_event_fields(record, event))
        for labels, count in counts.items():
            self._metrics.events.labels(*labels).inc(count)

    def _plan(self, records: Sequence[InputRecord]) -> _Plan:
        """Decode and group by customer. A referral's referrer side is not applied here: it
        is forwarded to the referrals topic, keyed by the referrer, so that the worker owning
        the referrer applies it and every customer is written (and published) by one worker."""
        plan = _Plan()
        forwarded = self._topics.referrals
        for record in records:
            event = self._intake.decode(record.topic, record.value)
            if isinstance(event, Rejection):
                plan.dead.append((record, event))
                continue
            if record.topic != forwarded:
                step = step_of(event)
                if isinstance(event, ReferralCompleted):
                    plan.forward.append(forward(forwarded, event.data.referrer_id, record))
            elif isinstance(event, ReferralCompleted):
                step = referrer_step_of(event)
            else:
                plan.dead.append((record, Rejection("UnknownEventType", "not a referral")))
                continue
            item = plan.work.get(step.customer_id)
            if item is None:
                confirmed = self._published.pop(step.customer_id, 0)
                item = plan.work[step.customer_id] = _Work(
                    CustomerBatch(step.customer_id, confirmed_version=confirmed)
                )
            item.batch.steps.append(step)
            item.sources.append((record, event))
        return plan

    async def _apply(self, work: list[_Work]) -> tuple[_Applied, list[_Dead]]:
        """Apply all customers' steps; a customer whose call Redis rejects is isolated."""
        with self._metrics.redis_seconds.time():
            results = await self._store.apply([item.batch for item in work])
        done: _Applied = []
        dead: list[_Dead] = []
        for item, result in zip(work, results, strict=True):
            if isinstance(result, ResponseError):
                await self._isolate(item, done, dead)
            else:
                done.append((item, result))
                dead += _refused(item, result, self._max_fields)
        return done, dead

    async def _isolate(self, item: _Work, done: _Applied, dead: list[_Dead]) -> None:
        """Apply a failing customer's steps one by one; dead-letter the ones Redis rejects."""
        batch = item.batch
        for step, source in zip(batch.steps, item.sources, strict=True):
            single = _Work(CustomerBatch(batch.customer_id, [step], batch.confirmed_version))
            single.sources.append(source)
            (result,) = await self._store.apply([single.batch])
            if isinstance(result, ResponseError):
                log.error("step rejected by Redis: %s", result, extra=_event_fields(*source))
                dead.append((source[0], Rejection("ProcessingError", str(result))))
            else:
                done.append((single, result))

    def _announce(
        self, item: _Work, outcome: Outcome, versions: dict[str, int], now: str
    ) -> list[OutMessage]:
        """The `customer.updated` messages of one customer's snapshots."""
        customer_id = item.batch.customer_id
        messages = []
        for snapshot in outcome.snapshots:
            event = item.sources[snapshot.cause][1]
            record, changed = render_change(customer_id, snapshot.state, snapshot.before)
            messages.append(
                customer_updated(
                    self._topics.customer_updated,
                    customer_id,
                    snapshot.version,
                    record,
                    changed,
                    Cause(event.id, event.source, event.type),
                    now,
                )
            )
            versions[customer_id] = snapshot.version
        return messages

    def _remember(self, versions: dict[str, int]) -> None:
        self._published.update(versions)
        while len(self._published) > _MAX_CONFIRMATIONS:
            del self._published[next(iter(self._published))]


def _refused(item: _Work, outcome: Outcome, max_fields: int) -> list[_Dead]:
    """Steps the store refused because the record would outgrow its cap."""
    why = Rejection(
        "RecordLimitExceeded",
        f"the customer's record would exceed {max_fields} fields (CW_LIMITS__MAX_RECORD_FIELDS)",
    )
    return [
        (record, why)
        for (record, _), letter in zip(item.sources, outcome.letters, strict=True)
        if letter == "R"
    ]


def _event_fields(record: InputRecord, event: AnyInputEvent) -> dict[str, object]:
    """What a log line about one event carries: ids and coordinates, no personal data."""
    return {
        "event_id": event.id,
        "event_type": event.type,
        "subject": event.subject,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }


def _next_offsets(records: Sequence[InputRecord]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        offsets[partition] = max(offsets.get(partition, 0), record.offset + 1)
    return offsets
