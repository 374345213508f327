"""`customer-worker`: run the worker and operate it (topics, records, schemas, a first event)."""

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts.events import TOPIC_OF_TYPE
from worker import logs
from worker.app import build_app
from worker.domain.record import render
from worker.intake import Intake, Rejection
from worker.schemas import export
from worker.settings import Settings
from worker.store.customer_store import CustomerStore
from worker.topics import contract_topics, ensure_topics

cli = typer.Typer(
    help="customer-worker: owns the customer profile (Kafka in, Redis record, "
    "customer.updated out). Configured through CW_* environment variables.",
    no_args_is_help=True,
)
topics_cli = typer.Typer(help="Kafka topics of the contract.", no_args_is_help=True)
cli.add_typer(topics_cli, name="topics")
schema_cli = typer.Typer(help="JSON Schemas and the AsyncAPI document.", no_args_is_help=True)
cli.add_typer(schema_cli, name="schema")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


@cli.command()
def run(
    host: Annotated[str, typer.Option(help="Address of the HTTP endpoints.")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option(help="Port of the HTTP endpoints.")] = 8080,
) -> None:
    """Run the worker in the foreground until SIGTERM/SIGINT (graceful stop)."""
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)
    config = uvicorn.Config(
        build_app(settings),
        host=host,
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
    )
    # uvicorn re-raises the signal it stopped on once shutdown is complete, which would end
    # the process with 143 although the stop was graceful; a no-op handler makes it exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.Server(config).run()


@topics_cli.command("ensure")
def topics_ensure(
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of each topic.")] = 6,
    replication: Annotated[int, typer.Option(min=1, help="Replication factor.")] = 1,
) -> None:
    """Create every topic of the contract that is missing (idempotent)."""
    settings = Settings()

    async def ensure() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            specs = contract_topics(settings.topics, partitions)
            return await ensure_topics(admin, specs, replication)
        finally:
            await admin.close()

    try:
        created = asyncio.run(ensure())
    except KafkaConnectionError as error:
        raise _fail(
            f"Kafka at {settings.kafka_bootstrap_servers} is unreachable: {error}"
        ) from None
    typer.echo(f"created: {', '.join(created)}" if created else "all topics already exist")


@cli.command()
def send(
    file: Annotated[
        typer.FileText, typer.Argument(help="A JSON event (CloudEvent of the contract), or -.")
    ] = sys.stdin,  # type: ignore[assignment]
) -> None:
    """Validate one event and produce it to its input topic, keyed by its subject."""
    settings = Settings()
    raw = file.read().encode()
    inputs = settings.topics.inputs
    try:
        event_type = json.loads(raw)["type"]
    except (ValueError, KeyError, TypeError):
        raise _fail("not a JSON object with a `type`") from None
    contract_topic = TOPIC_OF_TYPE.get(event_type)
    topic = next((t for t, c in inputs.items() if c == contract_topic), None)
    if topic is None:
        raise _fail(f"unknown event type {event_type!r}")
    decoded = Intake(inputs).decode(topic, raw)
    if isinstance(decoded, Rejection):
        raise _fail(f"{decoded.error_class}: {decoded.message}")

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, raw, key=decoded.subject.encode())
        finally:
            await producer.stop()

    try:
        asyncio.run(produce())
    except KafkaConnectionError as error:
        raise _fail(
            f"Kafka at {settings.kafka_bootstrap_servers} is unreachable: {error}"
        ) from None
    typer.echo(f"sent {decoded.type} {decoded.id} for {decoded.subject} to {topic}")


@cli.command()
def tail(
    count: Annotated[int, typer.Option(min=1, help="Stop after this many records.")] = 1,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 30.0,
    from_beginning: Annotated[bool, typer.Option(help="Read the topic from its start.")] = True,
) -> None:
    """Print `customer.updated` records as JSON lines (tombstones as `null`)."""
    settings = Settings()

    async def read() -> int:
        consumer = AIOKafkaConsumer(
            settings.topics.customer_updated,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest" if from_beginning else "latest",
        )
        await consumer.start()
        seen = 0
        try:
            async with asyncio.timeout(timeout):
                async for record in consumer:
                    value = record.value.decode() if record.value is not None else "null"
                    typer.echo(value)
                    seen += 1
                    if seen >= count:
                        break
        except TimeoutError:
            pass
        finally:
            await consumer.stop()
        return seen

    try:
        seen = asyncio.run(read())
    except KafkaConnectionError as error:
        raise _fail(
            f"Kafka at {settings.kafka_bootstrap_servers} is unreachable: {error}"
        ) from None
    if seen < count:
        raise _fail(f"only {seen} of {count} records within {timeout}s")


@cli.command()
def get(customer_id: Annotated[str, typer.Argument(help="The customer id.")]) -> None:
    """Print the stored record of a customer as JSON, with its version."""
    settings = Settings()

    async def read() -> tuple[int, dict[str, str]]:
        redis = Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            store = CustomerStore(redis, settings.key_prefix, settings.dedup_max_markers, False)
            state = await store.state(customer_id)
            return int(state.get("v", 0)), state
        finally:
            await redis.aclose()

    try:
        version, state = asyncio.run(read())
    except RedisConnectionError as error:
        raise _fail(f"Redis is unreachable: {error}") from None
    record = render(customer_id, state)
    if record is None:
        raise _fail(f"no record for {customer_id!r}" + (" (erased)" if version else ""))
    typer.echo(json.dumps({"version": version, "customer": record}, indent=2))


@schema_cli.command("export")
def schema_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the documents.")],
) -> None:
    """Write the JSON Schema of every message and the AsyncAPI document into DIRECTORY.

    The documents describe the contract's defaults (topic names, server), whatever the
    environment says, so that they are the same everywhere.
    """
    app = build_app(Settings.model_construct())
    for path in export(directory, app.schema.to_specification().to_jsonable()):
        typer.echo(path)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
