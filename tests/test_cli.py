"""The `customer-worker` command, run as users run it (a subprocess with CW_* settings)."""

import json

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import isolated_settings
from tests.support.bus import Bus
from tests.support.cli import run_cli
from tests.support.events import at, event
from tests.support.services import Services
from worker.settings import Settings
from worker.topics import contract_topics


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["send"],
        ["tail"],
        ["get"],
        ["topics", "ensure"],
        ["dlq", "inspect"],
        ["dlq", "replay"],
        ["schema", "export"],
    ],
)
async def test_every_command_has_help(stack: Services, command: list[str]) -> None:
    result = await run_cli(isolated_settings(stack), *command, "--help")
    assert result.code == 0, result.err
    assert "Usage" in result.out


async def test_topics_ensure_is_idempotent(stack: Services) -> None:
    settings = isolated_settings(stack)
    first = await run_cli(settings, "topics", "ensure", "--partitions", "2")
    second = await run_cli(settings, "topics", "ensure", "--partitions", "2")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = [spec.name for spec in contract_topics(settings.topics, 2)]
        described = await admin.describe_topics(names)
        await admin.delete_topics(names)
    finally:
        await admin.close()
    assert first.code == 0, first.err
    assert all(name in first.out for name in names)
    assert second.code == 0
    assert "already exist" in second.out
    assert all(len(topic["partitions"]) == 2 for topic in described)


async def test_send_then_get(settings: Settings, bus: Bus, worker: None) -> None:
    created = event("customer.create", "cli-1", {"name": "Ann"}, time=at(1))
    sent = await run_cli(settings, "send", "-", stdin=json.dumps(created).encode())
    assert sent.code == 0, sent.err
    await bus.wait_for(lambda: bus.updates.last_or_none("cli-1") is not None, what="update")
    got = await run_cli(settings, "get", "cli-1")
    assert got.code == 0, got.err
    assert json.loads(got.out) == {
        "version": 1,
        "customer": bus.updates.last("cli-1")["data"]["customer"],  # type: ignore[index]
    }
    bad = event("customer.create", "cli-1", {"emial": "x"})
    refused = await run_cli(settings, "send", "-", stdin=json.dumps(bad).encode())
    assert refused.code == 1
    assert "SchemaViolation" in refused.err
    missing = await run_cli(settings, "get", "nobody")
    assert missing.code == 1
    assert "no record" in missing.err


async def test_dlq_inspect_and_replay(settings: Settings, bus: Bus, worker: None) -> None:
    topic = settings.topics.customer_commands
    await bus.send_raw(topic, b"{broken", key=b"k1", headers=[("trace", b"t1")])
    await bus.wait_for(lambda: len(bus.dead[settings.topics.dlq(topic)]) == 1, what="DLQ")
    # A record an older worker rejected and that is valid now, as a dead letter.
    fixed = event("customer.create", "cli-2", {"name": "Replayed"}, time=at(2))
    await bus.send_raw(
        settings.topics.dlq(topic),
        json.dumps(fixed).encode(),
        key=b"cli-2",
        headers=[
            ("trace", b"t2"),
            ("x-error-class", b"SchemaViolation"),
            ("x-original-topic", topic.encode()),
        ],
    )

    inspected = await run_cli(settings, "dlq", "inspect", topic, "--json")
    assert inspected.code == 0, inspected.err
    report = json.loads(inspected.out)
    assert report["total"] == 2
    assert report["by_class"] == {"InvalidJson": 1, "SchemaViolation": 1}

    replayed = await run_cli(settings, "dlq", "replay", topic)
    assert replayed.code == 0, replayed.err
    assert "replayed 1, skipped 1" in replayed.out
    assert "InvalidJson" in replayed.out
    await bus.wait_for(lambda: bus.updates.last_or_none("cli-2") is not None, what="replayed")
    assert bus.updates.last("cli-2")["data"]["customer"]["name"] == "Replayed"  # type: ignore[index]


async def test_unreachable_services_and_bad_arguments_fail_clearly(stack: Services) -> None:
    settings = isolated_settings(
        stack, kafka_bootstrap_servers="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0"
    )
    for args in (["topics", "ensure"], ["dlq", "inspect", "order.events"], ["tail"]):
        result = await run_cli(settings, *args)
        assert result.code == 1, args
        assert "Kafka at 127.0.0.1:1 is unreachable" in result.err, args
        assert "Traceback" not in result.err, args
    result = await run_cli(settings, "get", "x")
    assert result.code == 1
    assert "Redis is unreachable" in result.err
    result = await run_cli(settings, "topics", "ensure", "--partitions", "0")
    assert result.code == 2
    assert "Invalid value" in result.err
