"""Reading dead-letter topics back: what is in them, and replaying what now passes.

A dead letter is the original record plus `x-*` error headers. Replaying re-publishes the
original key, value and headers to the original topic; replaying twice is harmless since the
worker deduplicates by event (`source`, `id`).
"""

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.events import AnyInputEvent
from worker.intake import Intake
from worker.records import InputRecord
from worker.rejection import Rejection
from worker.settings import Topics

ERROR_HEADER_PREFIX = "x-"
_UNKNOWN_TOPIC = 3


@dataclass
class Inspection:
    """Dead letters by error class, with a few samples of each."""

    total: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)


@dataclass
class ReplayReport:
    """What a replay did."""

    replayed: int = 0
    still_invalid: list[tuple[int, int, Rejection]] = field(default_factory=list)


def error_headers(record: InputRecord) -> dict[str, str]:
    """The `x-*` headers the worker added, decoded."""
    return {
        key: value.decode("utf-8", "replace")
        for key, value in record.headers
        if key.startswith(ERROR_HEADER_PREFIX)
    }


def original_topic(record: InputRecord, topics: Topics) -> str:
    """Where a dead letter came from: its header, else its name without the DLQ suffix."""
    topic = error_headers(record).get("x-original-topic")
    if topic:
        return topic
    return record.topic.removesuffix(topics.dlq_suffix)


class TopicSnapshot:
    """Every record of a topic that is present when the snapshot is opened."""

    def __init__(self, kafka: dict[str, Any], topic: str) -> None:
        """`kafka`: aiokafka connection options (see `worker.connections.kafka_options`)."""
        self._kafka = kafka
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: dict[TopicPartition, int] = {}
        self.total = 0

    async def _partitions(self) -> list[TopicPartition]:
        admin = AIOKafkaAdminClient(**self._kafka)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([self._topic])
        finally:
            await admin.close()
        if described["error_code"] == _UNKNOWN_TOPIC:
            raise LookupError(f"topic {self._topic!r} does not exist")
        return [TopicPartition(self._topic, p["partition"]) for p in described["partitions"]]

    async def __aenter__(self) -> "TopicSnapshot":
        partitions = await self._partitions()
        consumer = self._consumer = AIOKafkaConsumer(**self._kafka, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(partitions)
            starts = await consumer.beginning_offsets(partitions)
            self._ends = dict(await consumer.end_offsets(partitions))
            for partition in partitions:  # explicit offsets: no lazy reset to race with
                consumer.seek(partition, starts[partition])
        except BaseException:
            await consumer.stop()
            raise
        self.total = sum(self._ends[tp] - starts[tp] for tp in partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def __aiter__(self) -> AsyncIterator[InputRecord]:
        assert self._consumer is not None, "open the snapshot with `async with` first"
        consumer = self._consumer
        remaining = {tp: end for tp, end in self._ends.items() if end > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < remaining[tp]:
                        yield record
            # By position, not by the last record: control records are never returned.
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]


async def inspect(kafka: dict[str, Any], topic: str, samples: int) -> Inspection:
    """Count the dead letters of `topic` by error class, keeping `samples` of each."""
    report = Inspection()
    async with TopicSnapshot(kafka, topic) as snapshot:
        async for record in snapshot:
            _sample(report, record, samples)
    return report


def _sample(report: Inspection, record: InputRecord, samples: int) -> None:
    headers = error_headers(record)
    error_class = headers.get("x-error-class", "unknown")
    report.total += 1
    report.by_class[error_class] += 1
    kept = report.samples.setdefault(error_class, [])
    if len(kept) < samples:
        original = "/".join(
            headers.get(f"x-original-{part}", "?") for part in ("topic", "partition", "offset")
        )
        kept.append(
            {
                "at": f"{record.topic}/{record.partition}/{record.offset}",
                "original": original,
                "failed_at": headers.get("x-failed-at", "?"),
                "message": headers.get("x-error-message", ""),
            }
        )


async def replay(
    snapshot: TopicSnapshot,
    producer: AIOKafkaProducer,
    intake: Intake,
    topics: Topics,
    progress: Callable[[int], None],
) -> ReplayReport:
    """Re-publish the dead letters that now pass validation to their original topic
    (original key, value and headers); the ones that still fail are reported."""
    report = ReplayReport()
    async for record in snapshot:
        target = original_topic(record, topics)
        verdict: AnyInputEvent | Rejection = (
            intake.decode(target, record.value)
            if target in topics.inputs
            else Rejection("UnknownTopic", f"{target!r} is not an input topic")
        )
        if isinstance(verdict, Rejection):
            report.still_invalid.append((record.partition, record.offset, verdict))
        else:
            headers = [(k, v) for k, v in record.headers if not k.startswith(ERROR_HEADER_PREFIX)]
            await producer.send_and_wait(target, record.value, key=record.key, headers=headers)
            report.replayed += 1
        progress(1)
    return report
