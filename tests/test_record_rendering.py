"""Rendering only the touched sections gives exactly the full before/after diff."""

import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.support.generate import Generator
from tests.support.pipeline_harness import Harness
from worker.domain.record import changed_paths, render, render_change
from worker.store.customer_store import Snapshot


def _full_diff(customer_id: str, snapshot: Snapshot) -> tuple[object, list[str]]:
    """The obvious way: render the whole record before and after, diff them."""
    before = dict(snapshot.state)
    for name, old in snapshot.before.items():
        if old is None:
            before.pop(name, None)
        else:
            before[name] = old
    after = render(customer_id, snapshot.state)
    if after is None:
        return None, []
    return after, changed_paths(render(customer_id, before), after)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), every_change=st.booleans())
async def test_sectioned_change_equals_the_full_diff(
    redis: "Redis", scratch_prefix: str, seed: int, every_change: bool
) -> None:
    rng = random.Random(seed)
    events = Generator(rng, ["c1", "c2"], erase_weight=8).events(50)
    prefix = f"{scratch_prefix}-{uuid.uuid4().hex[:8]}"
    harness = Harness(redis, prefix, every_change=every_change)
    store_apply = harness.store.apply
    snapshots: list[tuple[str, Snapshot]] = []

    async def recording(batches):  # type: ignore[no-untyped-def]
        outcomes = await store_apply(batches)
        for batch, outcome in zip(batches, outcomes, strict=True):
            snapshots.extend((batch.customer_id, s) for s in getattr(outcome, "snapshots", []))
        return outcomes

    harness.store.apply = recording  # type: ignore[method-assign]
    for start in range(0, len(events), 3):
        await harness.deliver(events[start : start + 3])
    assert snapshots
    for customer_id, snapshot in snapshots:
        assert render_change(customer_id, snapshot.state, snapshot.before) == _full_diff(
            customer_id, snapshot
        )
