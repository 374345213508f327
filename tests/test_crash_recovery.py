"""Property: however the worker crashes between applying a batch and committing it, once
the redeliveries are through, every customer's last published version is its stored one
and the record is the reference fold (real Redis; the crash is simulated by dropping the
pipeline with its in-memory state and redelivering from the last commit)."""

import json
import random
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.reference import reference_records
from tests.support.generate import Generator
from tests.support.pipeline_harness import FakeRecord, Harness, topic_of
from worker.domain.record import render
from worker.settings import Topics


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 60))
async def test_crashes_anywhere_lose_nothing_and_leave_nothing_unpublished(
    redis: "Redis", scratch_prefix: str, seed: int, count: int
) -> None:
    rng = random.Random(seed)
    # Erases are frequent here: an erase folding later events again is the subtle case.
    events = Generator(rng, ["c1", "c2", "c3"], erase_weight=15).events(count)
    stream = events + [e for e in events if rng.random() < 0.1]
    rng.shuffle(stream)
    prefix = f"{scratch_prefix}-{uuid.uuid4().hex[:8]}"
    # The input log: events, then referrals forwarded to the referrer (appended as produced).
    log: list[bytes] = [json.dumps(e).encode() for e in stream]
    topics: list[str] = [topic_of(e) for e in stream]
    published: dict[str, int] = {}
    committed = 0
    worker = Harness(redis, prefix)
    position, previous = committed, None
    while position < len(log) or previous is not None:
        current = None
        if position < len(log):
            end = min(len(log), position + rng.choice([1, 2, 4]))
            records = [FakeRecord(topics[i], 0, i, None, log[i]) for i in range(position, end)]
            current = (end, await worker.pipeline.apply(records))
            if rng.random() < 0.15:  # crash after applying, before the previous is published
                worker, position, previous = Harness(redis, prefix), committed, None
                continue
        if previous is not None:
            await worker.pipeline.publish(previous[1])
            for message in worker.publisher.messages:
                if message.topic == Topics().customer_updated and message.key is not None:
                    version = int(dict(message.headers)["version"])
                    customer = message.key.decode()
                    published[customer] = max(published.get(customer, 0), version)
                elif message.topic == Topics().referrals and message.value is not None:
                    log.append(message.value)  # a forwarded referral joins the input
                    topics.append(message.topic)
            worker.publisher.messages.clear()
            if rng.random() < 0.1:  # crash after publishing, before the commit
                worker, position, previous = Harness(redis, prefix), committed, None
                continue
            committed = previous[0]
        previous = current
        position = current[0] if current is not None else position

    expected: dict[str, Any] = reference_records(events)
    for customer, record in expected.items():
        state = await worker.store.state(customer)
        assert render(customer, state) == record, (customer, seed)
        assert published.get(customer, 0) == int(state["v"]), (customer, seed)
