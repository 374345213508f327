"""The record cache is bounded by memory as well as by customers, and what it evicts is
read from Redis again without changing any record."""

import random

from redis.asyncio import Redis

from tests.reference import reference_records
from tests.support.events import at, event
from tests.support.generate import Generator
from tests.support.pipeline_harness import Harness
from worker.domain.fold import CustomerState
from worker.domain.record import render
from worker.record_cache import RecordCache, footprint


def _state(customer_id: str, fields: int) -> CustomerState:
    return CustomerState(customer_id, {f"p.x{i}": "v" * 50 for i in range(fields)})


def test_the_byte_bound_evicts_the_least_recently_used() -> None:
    one = footprint(_state("a", 10))
    cache = RecordCache(capacity=1000, max_bytes=3 * one)
    for customer in "abc":
        cache.put(_state(customer, 10))
    assert cache.take("a") is not None  # used: now the most recent
    cache.put(_state("a", 10))
    cache.put(_state("d", 10))  # over the bound: b, the least recently used, goes
    assert len(cache) == 3
    assert cache.bytes == 3 * one
    assert cache.take("b") is None
    assert {c for c in "acd" if cache.take(c) is not None} == set("acd")
    assert cache.bytes == 0


def test_a_grown_state_counts_with_its_new_size() -> None:
    cache = RecordCache(capacity=1000, max_bytes=10 * footprint(_state("a", 10)))
    state = _state("a", 10)
    cache.put(state)
    taken = cache.take("a")
    assert taken is state
    state.fields.update({f"p.y{i}": "v" * 50 for i in range(200)})
    cache.put(state)  # now larger than the whole bound: not kept
    assert len(cache) == 0
    assert cache.bytes == 0


async def test_records_stay_exact_when_the_cache_evicts_by_size(
    redis: "Redis", scratch_prefix: str
) -> None:
    customers = [f"c{i}" for i in range(12)]
    events = Generator(random.Random(5), customers).events(600)
    bound = 3 * footprint(_state("x", 40))
    harness = Harness(redis, scratch_prefix, cache_size=1000, cache_bytes=bound)
    evicted = False
    for start in range(0, len(events), 20):
        await harness.deliver(events[start : start + 20])
        assert harness.cache.bytes <= bound
        evicted |= len(harness.cache) < len({e["subject"] for e in events[: start + 20]})
    assert evicted, "the bound never evicted: the test checks nothing"
    for customer, record in reference_records(events).items():
        assert render(customer, await harness.store.state(customer)) == record, customer


def _lookups(harness: Harness, outcome: str) -> float:
    return harness.metrics.cache_lookups.labels(outcome)._value.get()


async def test_lookups_are_counted_and_held_states_share_their_field_names(
    redis: "Redis", scratch_prefix: str
) -> None:
    harness = Harness(redis, scratch_prefix)
    data = {"name": "N", "metadata": {"tier": "gold"}}
    await harness.deliver([event("customer.create", c, data, time=at(1)) for c in ("ann", "bob")])
    assert (_lookups(harness, "hit"), _lookups(harness, "miss")) == (0, 2)
    await harness.deliver([event("customer.update", "ann", {"name": "M"}, time=at(2))])
    assert (_lookups(harness, "hit"), _lookups(harness, "miss")) == (1, 2)
    # A name every customer's fields have is one string in the memory of all of them (as
    # the fold wrote it, and as read from Redis after a miss): cached states stay small.
    ann, bob = harness.cache.take("ann"), harness.cache.take("bob")
    assert ann is not None
    assert bob is not None
    (read,) = await harness.store.load(["bob"])
    for name in ("p:name", "m:tier", "@p:name"):
        held = [next(k for k in state.fields if k == name) for state in (ann, bob, read)]
        assert held[0] is held[1] is held[2], name
