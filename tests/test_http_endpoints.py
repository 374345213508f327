"""The worker's HTTP endpoints, over real HTTP (uvicorn serving the ASGI app)."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn

from tests.conftest import isolated_settings, topics_of
from tests.support.bus import Bus
from tests.support.events import at, event
from tests.support.services import Services, free_ports
from worker.app import build_app
from worker.settings import Settings


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The worker app behind uvicorn on a free port, and a client for it."""
    (port,) = free_ports(1)
    config = uvicorn.Config(
        build_app(settings), host="127.0.0.1", port=port, lifespan="on", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def _eventually(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    for _ in range(200):
        response = await client.get(path)
        if response.status_code == status:
            return response
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}: {response.status_code} {response.text}")


async def test_health_readiness_metrics_and_docs(settings: Settings, bus: Bus) -> None:
    async with serving(settings) as client:
        assert (await client.get("/healthz")).status_code == 200
        await _eventually(client, "/readyz", 200)  # once partitions are assigned

        await bus.send(
            event("customer.create", "http-1", {"name": "Ann"}, time=at(1)),
            event("order.paid", "http-1", {"order_id": "o", "amount": 100}, time=at(2)),
        )
        await bus.send_raw(bus.topics.order_events, b"not json", key=b"http-1")
        await bus.wait_for(lambda: 2 in bus.updates.versions("http-1"), what="version 2")
        await bus.wait_for(lambda: bool(bus.dead[bus.topics.dlq(bus.topics.order_events)]))

        metrics = (await _eventually(client, "/metrics", 200)).text
        commands, orders = settings.topics.customer_commands, settings.topics.order_events
        for line in (
            f'customer_worker_events_total{{outcome="applied",topic="{commands}",'
            'type="customer.create"} 1.0',
            f'customer_worker_events_total{{outcome="applied",topic="{orders}",'
            'type="order.paid"} 1.0',
            f'customer_worker_dlq_total{{error_class="InvalidJson",topic="{orders}"}} 1.0',
            "customer_worker_ready 1.0",
        ):
            assert line in metrics, line
        for name in (
            "customer_worker_batch_size_bucket",
            "customer_worker_batch_seconds_bucket",
            "customer_worker_redis_seconds_bucket",
            "customer_worker_publish_seconds_bucket",
            "customer_worker_consumer_lag{",
            "faststream_received_messages_total",  # FastStream's own Prometheus middleware
        ):
            assert name in metrics, name

        docs = await client.get("/docs/asyncapi")
        assert docs.status_code == 200
        assert "asyncapi" in docs.text.lower()


async def test_not_ready_when_redis_is_unreachable(stack: Services) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    settings = isolated_settings(
        stack, redis_url=f"redis://127.0.0.1:{dead_port}/0", redis_timeout_seconds=0.5
    )
    async with topics_of(settings), serving(settings) as client:
        response = await _eventually(client, "/readyz", 503)
        assert "redis unreachable" in response.text
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
