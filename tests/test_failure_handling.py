"""Failures that are not bad input: retried with backoff, never dead-lettered, never lost."""

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaTimeoutError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.conftest import running
from tests.support.bus import Bus
from tests.support.events import at, event
from tests.support.pipeline_harness import Harness
from worker.domain.fold import Commit
from worker.messages import OutMessage
from worker.pipeline import AppliedBatch, BatchPipeline
from worker.settings import Settings
from worker.store.customer_store import CustomerStore, Stale, Written


async def test_redis_unavailable_is_retried_and_never_dead_lettered(
    redis: "Redis", scratch_prefix: str
) -> None:
    harness = Harness(redis, scratch_prefix)
    real_commit = harness.store.commit
    failures = {"left": 3}
    readiness: list[bool] = []

    async def flaky_commit(
        commits: Sequence[tuple[str, Commit]],
    ) -> list[Written | Stale | ResponseError]:
        readiness.append("redis" in harness.health.failing)
        if failures["left"]:
            failures["left"] -= 1
            raise RedisConnectionError("connection refused")
        return await real_commit(commits)

    harness.store.commit = flaky_commit  # type: ignore[method-assign]
    await harness.deliver([event("loyalty.points.added", "c1", {"campaign_id": "k", "points": 5})])

    assert readiness == [False, True, True, True]  # not ready while retrying
    assert "redis" not in harness.health.failing
    assert harness.metrics.retries.labels("redis")._value.get() == 3
    assert not [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    state = await harness.store.state("c1")
    assert state["loyalty.points"] == "5"  # applied exactly once


async def test_kafka_publish_failure_is_retried(redis: "Redis", scratch_prefix: str) -> None:
    harness = Harness(redis, scratch_prefix)
    real_publish = harness.publisher.publish_all
    failures = {"left": 2}

    async def flaky_publish(messages: Sequence[OutMessage]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise KafkaTimeoutError()
        await real_publish(messages)

    harness.publisher.publish_all = flaky_publish  # type: ignore[method-assign]
    await harness.deliver([event("customer.create", "c2", {"name": "Ann"})])
    (update,) = harness.publisher.updates()["c2"]
    assert dict(update.headers)["version"] == b"1"


async def test_a_write_redis_rejects_is_isolated_and_dead_lettered(
    redis: "Redis", scratch_prefix: str
) -> None:
    """Redis rejects the write of a customer's batch that contains the poisoned event: the
    customer's events are then written one by one, and only the poisoned one is
    dead-lettered."""
    harness = Harness(redis, scratch_prefix)
    real_commit = harness.store.commit

    def poisoned(commit: Commit) -> bool:
        return any("poison" in name for name in commit.sets)

    async def rejecting_commit(commits: Sequence[tuple[str, Commit]]) -> list[Any]:
        results: list[Any] = await real_commit([c for c in commits if not poisoned(c[1])])
        return [
            ResponseError("ERR user_script:1: simulated") if poisoned(c) else results.pop(0)
            for _, c in commits
        ]

    harness.store.commit = rejecting_commit  # type: ignore[method-assign]
    await harness.deliver(
        [
            event("customer.create", "c3", {"name": "Before"}, time=at(1)),
            event("customer.update", "c3", {"name": "Poisoned"}, time=at(2), id_="poison"),
            event("customer.update", "c3", {"email": "after@x.io"}, time=at(3)),
            event("customer.create", "c4", {"name": "Other"}, time=at(1)),
        ]
    )
    dead = [m for m in harness.publisher.messages if m.topic == "customer.commands.dlq"]
    assert len(dead) == 1
    assert dict(dead[0].headers)["x-error-class"] == b"ProcessingError"
    assert b"Poisoned" in (dead[0].value or b"")
    state = await harness.store.state("c3")
    assert state["p:name"] == '"Before"'
    assert state["p:email"] == '"after@x.io"'
    assert (await harness.store.state("c4"))["p:name"] == '"Other"'


@pytest.mark.parametrize("stage", ["apply", "publish"])
async def test_an_unexpected_error_rewinds_the_batch_instead_of_losing_it(
    stage: str, bus: Bus, worker: None, store: CustomerStore, monkeypatch: Any
) -> None:
    """A bug in either half of a batch (Redis, or publishing, which runs in the background
    while the next batch is applied) rewinds the consumer; the batch is done again."""
    real = getattr(BatchPipeline, stage)
    calls = {"n": 0}

    async def failing_once(self: BatchPipeline, batch: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug")
        return await real(self, batch)

    monkeypatch.setattr(BatchPipeline, stage, failing_once)
    await bus.send(event("customer.create", "c5", {"name": "Kept"}, time=at(1)))
    await bus.wait_for(lambda: bus.updates.last_or_none("c5") is not None, what="the retried batch")
    await bus.send(event("customer.update", "c5", {"name": "Next"}, time=at(2)))
    await bus.wait_for(lambda: 2 in bus.updates.versions("c5"), what="the next batch")
    assert calls["n"] >= 2
    assert await store.version("c5") == 2


async def test_shutdown_publishes_and_commits_the_batch_in_flight(
    settings: Settings, bus: Bus, monkeypatch: Any
) -> None:
    """Shutdown (SIGTERM) while a batch is being published: the worker finishes it and
    commits it before the consumer stops, and then exits. A commit that starts after the
    consumer stopped is retried by aiokafka forever: the process hung on SIGTERM."""
    real = BatchPipeline.publish

    async def slow_publish(self: BatchPipeline, applied: AppliedBatch) -> Any:
        await asyncio.sleep(1.0)  # still publishing when the shutdown begins
        return await real(self, applied)

    real_commit = AIOKafkaConsumer.commit
    late_commits: list[object] = []

    async def watched_commit(self: AIOKafkaConsumer, offsets: Any = None) -> None:
        if self._closed:  # the race of the hang: in flight while the consumer closes
            late_commits.append(offsets)
        await real_commit(self, offsets)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", watched_commit)
    await _stop_while_publishing(settings, bus, "c7", slow_publish, monkeypatch)

    await bus.wait_for(lambda: bus.updates.versions("c7") == [1], what="the batch's update")
    assert await _committed(settings) == 1
    assert late_commits == []


async def test_shutdown_gives_up_a_batch_that_cannot_finish_and_it_is_redelivered(
    settings: Settings, bus: Bus, store: CustomerStore, monkeypatch: Any
) -> None:
    """A batch whose publishing cannot finish (Kafka gone) does not hold the shutdown past
    the graceful timeout; it stays uncommitted, so the next worker does it again."""
    real = BatchPipeline.publish

    async def stuck_publish(self: BatchPipeline, applied: AppliedBatch) -> Any:
        await asyncio.Event().wait()

    quick = settings.model_copy(update={"graceful_timeout_seconds": 2.0})
    took = await _stop_while_publishing(quick, bus, "c8", stuck_publish, monkeypatch)
    assert took < 10
    assert await _committed(settings) == 0
    assert bus.updates.last_or_none("c8") is None

    monkeypatch.setattr(BatchPipeline, "publish", real)
    async with running(settings):
        await bus.wait_for(lambda: bus.updates.versions("c8") == [1], what="the redelivered batch")
    assert await store.version("c8") == 1


async def _stop_while_publishing(
    settings: Settings,
    bus: Bus,
    customer: str,
    publish: Callable[[BatchPipeline, AppliedBatch], Awaitable[Any]],
    monkeypatch: Any,
) -> float:
    """Run the worker with `publish` in place of the pipeline's, send it one event and shut
    it down as soon as it publishes; returns how long the shutdown took."""
    publishing = asyncio.Event()

    async def watched(self: BatchPipeline, applied: AppliedBatch) -> Any:
        publishing.set()
        return await publish(self, applied)

    monkeypatch.setattr(BatchPipeline, "publish", watched)
    worker = running(settings)
    await worker.__aenter__()
    try:
        await bus.send(event("customer.create", customer, {"name": "Last"}, time=at(1)))
        await asyncio.wait_for(publishing.wait(), 30)
    finally:
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(worker.__aexit__(None, None, None), 20)
    return asyncio.get_running_loop().time() - started


async def _committed(settings: Settings) -> int:
    """The group's committed offsets, summed over the partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.group_id)
    finally:
        await admin.close()
    return sum(meta.offset for meta in committed.values() if meta.offset > 0)


async def test_a_customer_whose_keys_redis_rejects_does_not_hold_back_the_others(
    redis: "Redis", scratch_prefix: str
) -> None:
    """On a single Redis one script call writes many customers: one whose record key holds
    the wrong type fails the call mid-way. Each customer is then written on its own: those
    written before the failure exactly once, the rejected one's events dead-lettered."""
    harness = Harness(redis, scratch_prefix)
    await redis.set(f"{scratch_prefix}:{{c9}}:r", "not a hash")
    points = {"campaign_id": "k", "points": 5}
    await harness.deliver(
        [
            event("loyalty.points.added", "c8", points, time=at(1)),
            event("loyalty.points.added", "c9", points, time=at(1)),
            event("loyalty.points.added", "c10", points, time=at(1)),
        ]
    )
    dead = [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    assert [json.loads(m.value or b"")["subject"] for m in dead] == ["c9"]
    assert dict(dead[0].headers)["x-error-class"] == b"ProcessingError"
    for customer in ("c8", "c10"):
        assert (await harness.store.state(customer))["loyalty.points"] == "5"  # once
        assert harness.publisher.updates()[customer], customer
