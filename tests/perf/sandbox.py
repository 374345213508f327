"""Topics, consumer groups and Redis key prefixes of one benchmark run: its own, so that it
never touches the stack's real topics or another run's, created for the run and removed
after it (also when it fails)."""

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from tests.perf.report import log
from tests.support.services import prefixed_topics
from worker.settings import Settings, Topics
from worker.topics import TopicSpec, contract_topics, ensure_topics

#: Partitions of every topic, as the local stack and production create them.
PARTITIONS = 6


def source_topics(topics: Topics) -> dict[str, str]:
    """The four public input topics (name -> contract topic): what upstream produces to,
    and what the benchmark feeds and counts. The worker may consume more than these
    (`Topics.inputs` can hold internal topics of its own)."""
    return {
        topics.customer_commands: "customer.commands",
        topics.order_events: "order.events",
        topics.redemption_events: "redemption.events",
        topics.loyalty_events: "loyalty.events",
    }


@dataclass(frozen=True)
class Sandbox:
    """Everything one run names."""

    prefix: str  # of every topic, group and key prefix of the run
    worker: Settings  # the worker's topics, group and key prefix
    naive: Settings  # the naive baseline's: topics, group and key prefix of its own
    quix: Settings  # the Quix Streams peer's: topics and group of its own
    ceiling_group: str
    ceiling_output: str

    @classmethod
    def create(cls, base: Settings) -> "Sandbox":
        """Fresh names for a run against the stack `base` points at."""
        run_id = uuid.uuid4().hex[:8]
        prefix = f"perf-{run_id}"
        topics = prefixed_topics(prefix)
        worker = base.model_copy(
            update={
                "topics": topics,
                "group_id": f"{prefix}-worker",
                "key_prefix": f"{prefix}-w",
                "log_level": "warning",
                "log_format": "json",
            }
        )
        naive = worker.model_copy(
            update={
                "topics": prefixed_topics(f"{prefix}.naive"),
                "group_id": f"{prefix}-naive",
                "key_prefix": f"{prefix}-n",
            }
        )
        quix = worker.model_copy(
            update={
                "topics": prefixed_topics(f"{prefix}.quix"),
                "group_id": f"{prefix}-quix",
            }
        )
        return cls(prefix, worker, naive, quix, f"{prefix}-ceiling", f"{prefix}.ceiling.out")

    @property
    def topic_specs(self) -> list[TopicSpec]:
        """The contract topics of the worker, the naive baseline and the Quix peer, and the
        ceiling's
        output (compacted like `customer.updated`: every consumer writes to the same kind
        of topic)."""
        return [
            *contract_topics(self.worker.topics, PARTITIONS),
            *contract_topics(self.naive.topics, PARTITIONS),
            *contract_topics(self.quix.topics, PARTITIONS),
            TopicSpec(self.ceiling_output, PARTITIONS, {"cleanup.policy": "compact"}),
        ]

    @property
    def key_prefixes(self) -> list[str]:
        """Redis key prefixes the run writes under."""
        return [self.worker.key_prefix, self.naive.key_prefix]


@contextlib.asynccontextmanager
async def provisioned(sandbox: Sandbox, redis: "Redis") -> AsyncIterator[None]:
    """The run's topics for the block; its topics and Redis keys deleted after it.

    Consumer groups are left to expire: aiokafka's admin client cannot delete them, and an
    empty group holds nothing but a few committed offsets."""
    specs = sandbox.topic_specs
    foreign = [spec.name for spec in specs if not spec.name.startswith(sandbox.prefix + ".")]
    if foreign:  # never create, let alone delete, a topic that is not the run's own
        raise RuntimeError(f"topics outside the run's prefix: {foreign}")
    admin = AIOKafkaAdminClient(bootstrap_servers=sandbox.worker.kafka_bootstrap_servers)
    await admin.start()
    try:
        await ensure_topics(admin, specs, replication=1)
        yield
    finally:
        log(f"cleaning up {sandbox.prefix}")
        try:
            await admin.delete_topics([spec.name for spec in specs])
        finally:
            await admin.close()
            for prefix in sandbox.key_prefixes:
                await delete_keys(redis, prefix)


async def delete_keys(redis: "Redis", prefix: str) -> int:
    """UNLINK every key under `prefix` (SCAN, so Redis is never blocked); how many."""
    deleted = 0
    batch: list[str] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await redis.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted
