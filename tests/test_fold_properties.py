"""Property: for any event set, any delivery order with duplicates and any batching, the
worker's records equal the from-scratch reference fold (real Redis; Kafka-free pipeline)."""

import json
import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.reference import parse_time_us, reference_records
from tests.support.generate import Generator, delivery_order
from tests.support.pipeline_harness import Harness
from worker.domain.record import render

CUSTOMERS = ["c1", "c2", "c3"]


async def _fold(redis: "Redis", prefix: str, seed: int, count: int, every_change: bool) -> None:
    rng = random.Random(seed)
    events = Generator(rng, CUSTOMERS).events(count)
    harness = Harness(redis, f"{prefix}-{uuid.uuid4().hex[:8]}", every_change)
    order = delivery_order(rng, events, duplicates=0.2, parse_us=parse_time_us)
    await harness.deliver_in_batches(order, rng)

    expected = reference_records(events)
    for customer, record in expected.items():
        state = await harness.store.state(customer)
        assert render(customer, state) == record, f"stored record of {customer}, seed {seed}"
        last = harness.publisher.last(customer)
        assert int(dict(last.headers)["version"]) == int(state["v"])
        shown = None if last.value is None else json.loads(last.value)["data"]["customer"]
        assert shown == record, f"last published record of {customer}, seed {seed}"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 120))
async def test_any_order_with_duplicates_gives_the_reference_record(
    redis: "Redis", scratch_prefix: str, seed: int, count: int
) -> None:
    await _fold(redis, scratch_prefix, seed, count, every_change=False)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1))
async def test_publishing_every_change_converges_the_same(
    redis: "Redis", scratch_prefix: str, seed: int
) -> None:
    await _fold(redis, scratch_prefix, seed, 40, every_change=True)


async def test_a_long_stream_converges(redis: "Redis", scratch_prefix: str) -> None:
    await _fold(redis, scratch_prefix, seed=7, count=1500, every_change=False)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 80))
async def test_erase_is_order_independent_too(
    redis: "Redis", scratch_prefix: str, seed: int, count: int
) -> None:
    """Unconstrained shuffles: events dated after an erase may arrive before it."""
    rng = random.Random(seed)
    events = Generator(rng, CUSTOMERS).events(count)
    harness = Harness(redis, f"{scratch_prefix}-{uuid.uuid4().hex[:8]}")
    order = events + [e for e in events if rng.random() < 0.2]
    rng.shuffle(order)
    for start in range(0, len(order), 7):
        await harness.deliver(order[start : start + 7])
    for customer, record in reference_records(events).items():
        state = await harness.store.state(customer)
        assert render(customer, state) == record, f"{customer}, seed {seed}"


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 80))
async def test_a_small_replay_window_only_bounds_memory(
    redis: "Redis", scratch_prefix: str, seed: int, count: int
) -> None:
    """A 2-second replay window over a 30-second span evicts constantly; without erases it
    must change nothing, and the step must never fail."""
    rng = random.Random(seed)
    events = Generator(rng, CUSTOMERS, erases=False).events(count)
    harness = Harness(redis, f"{scratch_prefix}-{uuid.uuid4().hex[:8]}", replay_window_seconds=2)
    order = events + [e for e in events if rng.random() < 0.2]
    rng.shuffle(order)
    for start in range(0, len(order), 5):
        await harness.deliver(order[start : start + 5])
    assert not [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    for customer, record in reference_records(events).items():
        assert render(customer, await harness.store.state(customer)) == record, seed
