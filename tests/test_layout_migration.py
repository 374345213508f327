"""Records written by layout 1 (orders, contributions, card balances and markers in keys of
their own, folded by the old Lua step) are taken over by the current worker: moved into the
record hash once, then folded on as if they had always been there."""

import json
import random
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from redis.asyncio import Redis

from contracts.events import AnyInputEvent
from contracts.loyalty import ReferralCompleted
from tests.reference import parse_time_us, reference_records
from tests.support.generate import Generator, delivery_order
from tests.support.pipeline_harness import Harness
from worker.domain.record import render
from worker.domain.steps import Step, referrer_step_of, step_of
from worker.store.keys import KeyLayout

CUSTOMERS = ["c1", "c2", "c3"]
LEGACY_SCRIPT = (Path(__file__).parent / "support" / "legacy" / "apply_v1.lua").read_text()
_EVENTS = TypeAdapter(AnyInputEvent)


async def _apply_with_layout_1(redis: "Redis", prefix: str, events: list[dict[str, object]]):
    """What the worker of layout 1 stored for these events (one batch per event)."""
    sha = await redis.script_load(LEGACY_SCRIPT)
    for raw in events:
        event = _EVENTS.validate_json(json.dumps(raw))
        steps: list[Step] = [step_of(event)]
        if isinstance(event, ReferralCompleted):
            steps.append(referrer_step_of(event))
        for step in steps:
            keys = [
                f"{prefix}:{{{step.customer_id}}}:{s}"
                for s in ("r", "b", "o", "lo", "k", "d", "lg")
            ]
            window = str(86_400 * 1_000_000)
            await redis.execute_command(
                "EVALSHA", sha, 7, *keys, "0", "0", "1000", window, "2000", step.encode()
            )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(2, 80))
async def test_a_layout_1_record_is_migrated_and_folds_on_exactly(
    redis: "Redis", scratch_prefix: str, seed: int, count: int
) -> None:
    rng = random.Random(seed)
    events = Generator(rng, CUSTOMERS).events(count)
    prefix = f"{scratch_prefix}-{uuid.uuid4().hex[:8]}"
    split = rng.randrange(1, len(events) + 1)
    await _apply_with_layout_1(redis, prefix, events[:split])

    harness = Harness(redis, prefix)
    # The rest, plus redeliveries of what layout 1 applied: its markers must still count.
    later = delivery_order(rng, events[split:], duplicates=0.2, parse_us=parse_time_us)
    redelivered = rng.sample(events[:split], k=min(len(events[:split]), 5))
    for position in range(0, len(later + redelivered), 4):
        await harness.deliver((later + redelivered)[position : position + 4])
    migrated = 0
    for customer, record in reference_records(events).items():
        state = await harness.store.state(customer)
        if "lv" not in state:  # untouched by the new worker: still layout 1, renders the same
            assert render(customer, state) == record
            continue
        assert state["lv"] == "2"
        migrated += 1
        assert render(customer, state) == record, f"{customer}, seed {seed}"
        layout = KeyLayout(prefix)
        for key in layout.legacy(customer):
            assert not await redis.exists(key), key
    assert migrated  # the redeliveries alone touch some customer of layout 1
