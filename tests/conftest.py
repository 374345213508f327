"""Fixtures: real services, per-test topics and key prefix, an in-process worker."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from tests.support.bus import Bus
from tests.support.services import Services, prefixed_topics, services
from worker.app import build_app
from worker.settings import Settings
from worker.store.customer_store import CustomerStore
from worker.topics import contract_topics, ensure_topics
from worker.tracing import Tracing

PARTITIONS = 3


@pytest.fixture(scope="session")
def stack() -> Iterator[Services]:
    """Kafka and Redis for the whole session (never skipped)."""
    with services() as found:
        yield found


def isolated_settings(stack: Services, **overrides: object) -> Settings:
    """Settings with topics, group and key prefix of their own, so tests never interfere."""
    run = uuid.uuid4().hex[:10]
    topics = prefixed_topics(run)
    values: dict[str, object] = {
        "kafka_bootstrap_servers": stack.kafka_bootstrap_servers,
        "redis_url": stack.redis_url,
        "group_id": f"test-{run}",
        "topics": topics,
        "key_prefix": f"t{run}",
        "batch_timeout_ms": 20,
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 1.0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@asynccontextmanager
async def topics_of(settings: Settings) -> AsyncIterator[None]:
    """The settings' topics, created for the block and deleted after it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    specs = contract_topics(settings.topics, PARTITIONS)
    try:
        await ensure_topics(admin, specs, replication=1)
        yield
    finally:
        await admin.delete_topics([spec.name for spec in specs])
        await admin.close()


async def delete_keys(redis_url: str, key_prefix: str) -> None:
    """Remove every Redis key starting with a test's prefix."""
    client = Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
            await client.unlink(key)
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def settings(stack: Services) -> AsyncIterator[Settings]:
    """Settings of one test, with its topics created (and everything removed after)."""
    settings = isolated_settings(stack)
    async with topics_of(settings):
        yield settings
    await delete_keys(settings.redis_url, settings.key_prefix)


@pytest_asyncio.fixture
async def redis(stack: Services) -> AsyncIterator["Redis"]:
    """A Redis client with decoded responses."""
    client = Redis.from_url(stack.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def scratch_prefix(stack: Services) -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"s{uuid.uuid4().hex[:10]}"
    yield prefix
    await delete_keys(stack.redis_url, prefix)


@pytest_asyncio.fixture
async def store(settings: Settings, redis: "Redis") -> CustomerStore:
    """Read access to the worker's stored state."""
    return CustomerStore(redis, settings.key_prefix)


@pytest_asyncio.fixture
async def bus(settings: Settings) -> AsyncIterator[Bus]:
    """Producer of input events and reader of the worker's output."""
    async with Bus(settings.kafka_bootstrap_servers, settings.topics) as bus:
        yield bus


@asynccontextmanager
async def running(settings: Settings, tracing: Tracing | None = None) -> AsyncIterator[None]:
    """Run the worker app in a task of its own (its task group must enter and exit in one
    task, while pytest may set a fixture up and tear it down in different ones)."""
    app = build_app(settings, tracing)
    started, stop = asyncio.Event(), asyncio.Event()

    async def serve() -> None:
        async with app.start_lifespan_context():
            started.set()
            await stop.wait()

    task = asyncio.create_task(serve())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task


@pytest_asyncio.fixture
async def worker(settings: Settings) -> AsyncIterator[None]:
    """The worker, running in this process against the test's topics."""
    async with running(settings):
        yield
