"""Security of the worker's connections, against services that refuse the unauthenticated:
SASL (SCRAM-SHA-512, PLAIN) to Kafka over plaintext and TLS, a least-privilege ACL user over
TLS to Redis, and neither secrets nor personal data in the worker's logs.

The broker and redis-server are this module's own (tests/support/secure_stack.py). A worker
that ignored a security setting could not get through them, and one that got through with
wrong credentials would not exit: either way a test here fails.
"""

import json
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from aiokafka import AIOKafkaProducer
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from tests.conftest import isolated_settings
from tests.support.cli import run_cli
from tests.support.events import event
from tests.support.secure_stack import (
    REPO,
    SCRIPT_COMMANDS,
    TOLERATED_DENIALS,
    KafkaUser,
    SecureStack,
    secure_stack,
)
from tests.support.services import Services
from tests.support.worker_process import WorkerProcess
from worker.connections import kafka_options
from worker.settings import Settings

Protocol = Literal["SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "PLAIN"]

#: How long a worker with wrong credentials may take to give up (it takes a few seconds).
FAIL_FAST_SECONDS = 45.0


@pytest.fixture(scope="module")
def secured() -> Iterator[SecureStack]:
    """The secured broker and Redis, started once for the module."""
    with secure_stack() as stack:
        yield stack


def kafka_user(stack: SecureStack, mechanism: Mechanism) -> KafkaUser:
    """The broker's user of `mechanism`."""
    return stack.kafka.scram if mechanism == "SCRAM-SHA-512" else stack.kafka.plain


async def secured_settings(
    stack: SecureStack,
    protocol: Protocol = "SASL_SSL",
    mechanism: Mechanism = "SCRAM-SHA-512",
    /,
    **overrides: object,
) -> Settings:
    """Isolated settings reaching both services as a legitimate worker does, with a Redis ACL
    user of its own for its own key prefix; `overrides` break something on purpose."""
    user = kafka_user(stack, mechanism)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    redis_user = await stack.redis.add_worker_user(prefix)
    values: dict[str, object] = {
        "key_prefix": prefix,
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": user.mechanism,
        "kafka_sasl_username": user.name,
        "kafka_sasl_password": user.password,
        "kafka_ssl_cafile": stack.kafka.ca if protocol == "SASL_SSL" else None,
        "redis_username": redis_user.name,
        "redis_password": redis_user.password,
        "redis_ssl_ca_certs": stack.redis.ca,
        **overrides,
    }
    services = Services(stack.kafka.bootstrap(protocol), stack.redis.url)
    return isolated_settings(services, **values)


def secret_values(settings: Settings) -> dict[str, str]:
    """The settings' passwords, by name, to look for in what the worker printed."""
    return {
        name: value.get_secret_value()
        for name in ("kafka_sasl_password", "redis_password")
        if (value := getattr(settings, name)) is not None
    }


async def ensure_topics(settings: Settings) -> None:
    """Create the settings' topics with the worker's own CLI, over the secured listener."""
    result = await run_cli(settings, "topics", "ensure", "--partitions", "2")
    assert result.code == 0, result.err
    assert settings.topics.customer_updated in result.out


async def read_updates(settings: Settings, count: int) -> list[dict[str, Any]]:
    """`customer.updated` values read back with `customer-worker tail` (secured listener)."""
    result = await run_cli(settings, "tail", "--count", str(count), "--timeout", "40")
    assert result.code == 0, result.err
    return [json.loads(line) for line in result.out.splitlines()]


async def acl_denials(stack: SecureStack, username: str) -> list[dict[str, Any]]:
    """Entries of Redis' ACL LOG about `username`: what it was refused."""
    admin = stack.redis.client(stack.redis.admin)
    try:
        entries = await admin.acl_log()
    finally:
        await admin.aclose()
    return [entry for entry in entries if entry["username"] == username]


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-512"),
    ],
)
async def test_worker_round_trip_over_a_secured_listener(
    secured: SecureStack, tmp_path: Path, protocol: Protocol, mechanism: Mechanism
) -> None:
    """The listener refuses unauthenticated clients, so an update read back proves the worker
    and every CLI command used (topics ensure, send, tail, get) sent working credentials; the
    Redis side runs as the least-privilege ACL user over TLS, and is never refused."""
    settings = await secured_settings(secured, protocol, mechanism)
    await ensure_topics(settings)
    created = event("customer.create", "sec-1", {"name": "Ann", "email": "ann@example.com"})
    async with WorkerProcess(settings, tmp_path) as worker:
        await worker.wait_ready()
        sent = await run_cli(settings, "send", "-", stdin=json.dumps(created).encode())
        assert sent.code == 0, sent.err
        (updated,) = await read_updates(settings, 1)
    assert updated["data"]["cause"]["id"] == created["id"]
    assert updated["data"]["customer"]["email"] == "ann@example.com"
    got = await run_cli(settings, "get", "sec-1")  # HGETALL as the ACL user, over TLS
    assert got.code == 0, got.err
    assert json.loads(got.out)["customer"] == updated["data"]["customer"]
    denials = await acl_denials(secured, str(settings.redis_username))
    assert [entry for entry in denials if entry["object"] not in TOLERATED_DENIALS] == []


@pytest.mark.parametrize(
    ("protocol", "mechanism", "broken", "failure"),
    [
        ("SASL_PLAINTEXT", "SCRAM-SHA-512", "password", "SaslAuthenticationFailed"),
        ("SASL_PLAINTEXT", "PLAIN", "password", "SaslAuthenticationFailed"),
        ("SASL_SSL", "SCRAM-SHA-512", "ca", "CERTIFICATE_VERIFY_FAILED"),
    ],
)
async def test_wrong_kafka_credentials_fail_fast_and_clearly_without_leaking(
    secured: SecureStack,
    tmp_path: Path,
    protocol: Protocol,
    mechanism: Mechanism,
    broken: str,
    failure: str,
) -> None:
    """A worker that got through anyway would not exit, one that ignored its SASL or TLS
    settings would fail for another reason: both fail here."""
    wrong: dict[str, object] = (
        {"kafka_sasl_password": f"wrong-{secrets.token_hex(12)}"}
        if broken == "password"
        else {"kafka_ssl_cafile": secured.foreign_ca}  # a CA that did not sign the broker's
    )
    settings = await secured_settings(secured, protocol, mechanism, **wrong)
    async with WorkerProcess(settings, tmp_path) as worker:
        code = await worker.wait_exit(within=FAIL_FAST_SECONDS)  # fails if it got through
    ensured = await run_cli(settings, "topics", "ensure")
    assert code != 0
    assert failure in worker.err
    assert ensured.code == 1
    assert failure in ensured.err
    outputs = (worker.out, worker.err, ensured.out, ensured.err)
    passwords = {kafka_user(secured, mechanism).password, *secret_values(settings).values()}
    assert [p for p in passwords if any(p in output for output in outputs)] == []


async def test_redis_user_is_confined_to_its_key_prefix(secured: SecureStack) -> None:
    """The recommended rules let the worker's user touch nothing but its own keys, and run
    nothing but the worker's commands, not even from a script."""
    # The rules allow exactly what the Lua step calls: a new call needs the README rule too.
    lua = (REPO / "worker" / "store" / "commit.lua").read_text()
    called = set(re.findall(r"""(?:redis\.p?call|call_range)\(\s*['"](\w+)['"]""", lua))
    assert called == {name.upper() for name in SCRIPT_COMMANDS}

    prefix = f"t{uuid.uuid4().hex[:10]}"
    user = await secured.redis.add_worker_user(prefix)
    own, foreign = f"{prefix}:{{c1}}:r", f"x{prefix}:{{c1}}:r"
    admin, client = secured.redis.client(secured.redis.admin), secured.redis.client(user)
    anonymous = secured.redis.client(None)
    try:
        await admin.hset(foreign, "name", "someone else")
        await admin.set("unrelated", "x")
        assert await client.ping()
        await client.hset(own, "name", "mine")
        assert await client.hgetall(own) == {"name": "mine"}
        for command in (
            ("GET", "unrelated"),
            ("HGETALL", foreign),
            ("HSET", foreign, "name", "overwritten"),
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "*"),
            ("ACL", "LIST"),
        ):
            with pytest.raises(NoPermissionError):
                await client.execute_command(*command)
        # A script runs with its caller's rights: its keys and every command it calls.
        sha = await client.script_load("return redis.call('GET', KEYS[1])")
        with pytest.raises(NoPermissionError):
            await client.evalsha(sha, 1, foreign)
        with pytest.raises(ResponseError, match="can't run this command"):
            await client.evalsha(sha, 1, own)
        with pytest.raises(AuthenticationError):
            await anonymous.ping()  # the default user is off: no way in without a password
        assert await admin.hget(foreign, "name") == "someone else"
        denied = {
            (entry["reason"], entry["object"]) for entry in await acl_denials(secured, user.name)
        }
        assert {("command", "get"), ("key", foreign), ("command", "flushall")} <= denied
    finally:
        await admin.delete(foreign, own, "unrelated")
        for client_ in (admin, client, anonymous):
            await client_.aclose()


@pytest.mark.parametrize(
    ("broken", "failure"),
    [("password", "invalid username-password pair"), ("ca", "certificate verify failed")],
)
async def test_wrong_redis_credentials_fail_clearly_without_leaking(
    secured: SecureStack, broken: str, failure: str
) -> None:
    """`customer-worker get` names why Redis refused it, and never prints the password."""
    wrong: dict[str, object] = (
        {"redis_password": f"wrong-{secrets.token_hex(12)}"}
        if broken == "password"
        else {"redis_ssl_ca_certs": secured.foreign_ca}  # a CA that did not sign Redis'
    )
    settings = await secured_settings(secured, **wrong)
    result = await run_cli(settings, "get", "c1")
    assert result.code == 1
    assert failure in result.err
    output = result.out + result.err
    assert [p for p in secret_values(settings).values() if p in output] == []


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
async def test_no_secrets_or_personal_data_in_the_worker_logs(
    secured: SecureStack, tmp_path: Path, mechanism: Mechanism
) -> None:
    """At the most verbose level, with bad input dead-lettered, the logs name events but carry
    no password and none of the customer's personal data (PLAIN sends its password as is)."""
    base = await secured_settings(
        secured, "SASL_SSL", mechanism, log_format="json", log_level="debug"
    )
    # The Redis credentials in the URL this time: a URL is what gets printed by mistake.
    user, password = base.redis_username, secret_values(base)["redis_password"]
    url = base.redis_url.replace("rediss://", f"rediss://{user}:{password}@")
    settings = base.model_copy(
        update={"redis_url": url, "redis_username": None, "redis_password": None}
    )
    tag = uuid.uuid4().hex[:8]
    personal = {
        "name": f"Quillon Vexmoor {tag}",
        "email": f"q.vexmoor.{tag}@pii-probe.example",
        "phone": f"+44 7700 9{int(tag, 16) % 100000:05d}",
    }
    customer = f"pii-{tag}"
    good = event("customer.create", customer, personal)
    typo = event("customer.update", customer, {"emial": personal["email"], **personal})
    wrong_type = event("customer.update", customer, {"dial_code": personal["phone"]})
    not_json = json.dumps(good).encode()[:-5]
    # Dead letters first: once the good event's update is out, the worker has handled them.
    values = [json.dumps(typo).encode(), json.dumps(wrong_type).encode(), not_json]
    values.append(json.dumps(good).encode())
    await ensure_topics(settings)
    async with WorkerProcess(settings, tmp_path) as worker:
        await worker.wait_ready()
        producer = AIOKafkaProducer(**kafka_options(settings), acks="all")
        await producer.start()
        try:
            for value in values:
                topic = settings.topics.customer_commands
                await producer.send_and_wait(topic, value, key=customer.encode())
        finally:
            await producer.stop()
        (updated,) = await read_updates(settings, 1)
    logs = worker.err + worker.out
    inspected = await run_cli(
        settings, "dlq", "inspect", settings.topics.customer_commands, "--json"
    )

    assert updated["data"]["customer"]["email"] == personal["email"]
    assert inspected.code == 0, inspected.err
    assert json.loads(inspected.out)["by_class"] == {"SchemaViolation": 2, "InvalidJson": 1}
    texts = [text for text in logs.splitlines() if text.strip()]
    lines = [json.loads(text) for text in texts]  # CW_LOG_FORMAT=json: every line
    assert any(line.get("event_id") == good["id"] for line in lines), "no line names the event"
    assert len([line for line in lines if "error_class" in line]) == 3, "dead letters not logged"
    sensitive = {
        "kafka password": kafka_user(secured, mechanism).password,
        "redis password": password,
        **personal,
    }
    leaks = {  # what leaked, and which loggers wrote it
        label: sorted({json.loads(text)["logger"] for text in texts if value in text})
        for label, value in sensitive.items()
        if value in logs
    }
    assert leaks == {}
