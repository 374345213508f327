"""The worker runs unchanged on a Redis Cluster (three masters, keys spread over them)."""

import random
from collections.abc import Iterator

import pytest
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from tests.conftest import isolated_settings, running, topics_of
from tests.reference import reference_records
from tests.support.bus import Bus
from tests.support.generate import Generator
from tests.support.redis_cluster import redis_cluster
from tests.support.services import Services
from worker.domain.record import render
from worker.store.customer_store import CustomerStore
from worker.store.keys import KeyLayout

TRICKY_IDS = ["plain", "with{brace", "with}brace", "{tag}", "a{b}c", "ünï-cødé", "x" * 128]


def test_every_key_of_one_atomic_step_maps_to_one_slot() -> None:
    layout = KeyLayout("cw")
    for customer_id in TRICKY_IDS + [f"cust-{n}" for n in range(500)]:
        slots = {key_slot(key.encode()) for key in layout.all(customer_id)}
        assert len(slots) == 1, customer_id


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with redis_cluster() as url:
        yield url


async def test_end_to_end_on_a_redis_cluster(stack: Services, cluster_url: str) -> None:
    settings = isolated_settings(stack, redis_url=cluster_url, redis_cluster=True)
    customers = [f"cl-{n}" for n in range(40)] + TRICKY_IDS
    events = Generator(random.Random(5), customers, erases=True).events(1200)
    async with topics_of(settings), Bus(settings.kafka_bootstrap_servers, settings.topics) as bus:
        async with running(settings):
            for item in events:
                await bus.send(item)
            expected = reference_records(events)
            await bus.wait_for(
                lambda: all(
                    (bus.updates.events(c) or [None])[-1] is None
                    if record is None
                    else (last := bus.updates.last_or_none(c)) is not None
                    and last["data"]["customer"] == record
                    for c, record in expected.items()
                ),
                within=90,
                what="every customer's expected record",
            )
        client = RedisCluster.from_url(cluster_url, decode_responses=True)
        try:
            store = CustomerStore(client, settings.key_prefix, 256, False)
            spread = set()
            for customer, record in expected.items():
                assert render(customer, await store.state(customer)) == record, customer
                spread.add(
                    client.get_node_from_key(KeyLayout(settings.key_prefix).record(customer)).port
                )
            assert len(spread) == 3  # the customers really are spread over the three masters
        finally:
            await client.aclose()
