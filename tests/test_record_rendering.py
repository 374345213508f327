"""The incremental output equals the obvious one: for every published version, the record
and its `changed` paths are what rendering the whole state before and after gives, and the
snapshots' changes add up to exactly the stored visible state; with the record cache warm,
cold and thrashing (so that folds start from cached, guessed and re-read states)."""

import json
import random
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.support.generate import Generator
from tests.support.pipeline_harness import Harness
from worker.domain.fields import visible_fields
from worker.domain.record import changed_paths, render
from worker.messages import OutMessage


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    every_change=st.booleans(),
    cache_size=st.sampled_from([0, 1, 1000]),
)
async def test_incremental_output_equals_the_full_render(
    redis: "Redis", scratch_prefix: str, seed: int, every_change: bool, cache_size: int
) -> None:
    rng = random.Random(seed)
    customers = ["c1", "c2", "c3"]
    events = Generator(rng, customers, erase_weight=8).events(60)
    prefix = f"{scratch_prefix}-{uuid.uuid4().hex[:8]}"
    harness = Harness(redis, prefix, every_change=every_change, cache_size=cache_size)
    pipeline: Any = harness.pipeline
    announce = pipeline._announce
    published: list[tuple[str, Any, OutMessage]] = []

    def recording(item, versions, now, context=None, joined=None):  # type: ignore[no-untyped-def]
        messages = announce(item, versions, now, context, joined)
        for snapshot, message in zip(item.folded.snapshots, messages, strict=True):
            published.append((item.customer_id, snapshot, message))
        return messages

    pipeline._announce = recording
    for start in range(0, len(events), 3):
        await harness.deliver(events[start : start + 3])

    states: dict[str, dict[str, str]] = {}
    checked = 0
    for customer, snapshot, message in published:
        state = states.setdefault(customer, {})  # every customer starts with no record
        before = dict(state)
        if snapshot.wiped:
            state.clear()
        for name, value in snapshot.changes.items():
            if value is None:
                state.pop(name, None)
            else:
                state[name] = value
        after = render(customer, state)
        if after is None:
            assert message.value is None  # a tombstone
            continue
        data = json.loads(message.value or b"")["data"]
        assert data["version"] == snapshot.version
        assert data["customer"] == after
        assert data["changed"] == changed_paths(render(customer, before), after)
        checked += 1
    assert checked
    for customer in customers:
        stored = visible_fields(await harness.store.state(customer))
        assert states.get(customer, {}) == stored, customer
