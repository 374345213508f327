"""The worker runs unchanged on a Redis Cluster (three masters, keys spread over them)."""

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from tests.conftest import isolated_settings, topics_of
from tests.reference import reference_holders, reference_records
from tests.support.bus import Bus
from tests.support.generate import Generator
from tests.support.redis_cluster import redis_cluster
from tests.support.services import Services
from tests.support.worker_process import WorkerProcess
from worker.store.customer_store import CustomerStore
from worker.store.keys import KeyLayout
from worker.views import customer_view

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


async def test_two_worker_processes_on_a_redis_cluster(
    stack: Services, cluster_url: str, tmp_path: Path
) -> None:
    """The end-to-end workload, two `customer-worker run` processes in one group, the
    store on three masters: every record exact, customers spread over all three; with
    events naming customers by `source_id`, whose index lives in other slots than the
    customers claiming them: every holder as the reference says."""
    settings = isolated_settings(stack, redis_url=cluster_url, redis_cluster=True)
    customers = [f"cl-{n}" for n in range(40)] + TRICKY_IDS
    source_ids = [f"crm-{n}" for n in range(12)] + ["ann@example.com", "{tag}"]
    events = Generator(random.Random(5), customers, source_ids=source_ids).events(1200)
    expected = reference_records(events)
    holders = reference_holders(events)
    assert sum(1 for holder, _ in holders.values() if holder in customers) >= 3
    async with (
        topics_of(settings),
        Bus(settings.kafka_bootstrap_servers, settings.topics) as bus,
        WorkerProcess(settings, tmp_path, "first") as first,
        WorkerProcess(settings, tmp_path, "second") as second,
    ):
        await first.wait_ready()
        await second.wait_ready()  # both hold partitions of the group
        for item in events:
            await bus.send(item)
        await bus.wait_for(
            lambda: all(
                (bus.updates.events(c) or [None])[-1] is None
                if record is None
                else (last := bus.updates.last_or_none(c)) is not None
                and last["data"]["customer"] == record
                for c, record in expected.items()
            ),
            within=120,
            what="every customer's expected record",
        )
    client = RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        store = CustomerStore(client, settings.key_prefix)
        layout = KeyLayout(settings.key_prefix)
        spread = set()
        for customer, record in expected.items():
            assert (await customer_view(store, customer)).record == record, customer
            spread.add(client.get_node_from_key(layout.record(customer)).port)
        assert len(spread) == 3  # the customers really are spread over the three masters
        elsewhere = 0
        for source_id, (holder, conflicting) in holders.items():
            holding = await store.index.holding(source_id)
            assert (holding.holder, holding.conflicting) == (holder, conflicting), source_id
            index_key = layout.source_index(holding.implicit_id)
            if holder is not None and key_slot(index_key.encode()) != key_slot(
                layout.record(holder).encode()
            ):
                elsewhere += 1
        assert elsewhere >= 3  # claims really cross slots
    finally:
        await client.aclose()
