"""`customer-worker`: run the worker and operate it (topics, records, schemas, a first event)."""

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from redis.exceptions import ConnectionError as RedisConnectionError

from contracts.events import TOPIC_OF_TYPE
from worker import logs
from worker.app import build_app
from worker.connections import connect_redis, kafka_options
from worker.dead_letters import ReplayReport, TopicSnapshot, inspect, replay
from worker.domain.clock import format_micros
from worker.intake import Intake
from worker.rejection import Rejection
from worker.schemas import export
from worker.settings import Settings
from worker.store.customer_store import CustomerStore
from worker.store.source_index import Holding
from worker.topics import contract_topics, ensure_topics
from worker.views import View, customer_view

T = TypeVar("T")

cli = typer.Typer(
    help="customer-worker: owns the customer profile (Kafka in, Redis record, "
    "customer.updated out). Configured through CW_* environment variables.",
    no_args_is_help=True,
)
topics_cli = typer.Typer(help="Kafka topics of the contract.", no_args_is_help=True)
cli.add_typer(topics_cli, name="topics")
schema_cli = typer.Typer(help="JSON Schemas and the AsyncAPI document.", no_args_is_help=True)
cli.add_typer(schema_cli, name="schema")
dlq_cli = typer.Typer(help="Dead-letter topics: inspect and replay.", no_args_is_help=True)
cli.add_typer(dlq_cli, name="dlq")
identity_cli = typer.Typer(help="Who holds a source_id.", no_args_is_help=True)
cli.add_typer(identity_cli, name="identity")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def _run_kafka(settings: Settings, action: Coroutine[Any, Any, T]) -> T:
    """Run a Kafka action, turning an unreachable broker or a missing topic into a clear exit."""
    try:
        return asyncio.run(action)
    except KafkaConnectionError as error:
        broker = settings.kafka_bootstrap_servers
        raise _fail(f"Kafka at {broker} is unreachable: {error}") from None
    except LookupError as error:
        raise _fail(str(error)) from None


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
        admin = AIOKafkaAdminClient(**kafka_options(settings))
        await admin.start()
        try:
            specs = contract_topics(settings.topics, partitions)
            return await ensure_topics(admin, specs, replication)
        finally:
            await admin.close()

    created = _run_kafka(settings, ensure())
    typer.echo(f"created: {', '.join(created)}" if created else "all topics already exist")


@cli.command()
def send(
    file: Annotated[
        typer.FileText, typer.Argument(help="A JSON event (CloudEvent of the contract), or -.")
    ] = sys.stdin,  # type: ignore[assignment]
) -> None:
    """Validate one event and produce it to its input topic, keyed by its subject (by its
    `sourceid` when it has none)."""
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
    decoded = Intake(inputs, settings.limits).decode(topic, raw)
    if isinstance(decoded, Rejection):
        raise _fail(f"{decoded.error_class}: {decoded.message}")

    async def produce() -> None:
        producer = AIOKafkaProducer(**kafka_options(settings), acks="all")
        await producer.start()
        try:
            key = decoded.subject if decoded.subject is not None else decoded.sourceid
            assert key is not None
            await producer.send_and_wait(topic, raw, key=key.encode())
        finally:
            await producer.stop()

    _run_kafka(settings, produce())
    typer.echo(f"sent {decoded.type} {decoded.id} for {decoded.customer_id} to {topic}")


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
            **kafka_options(settings),
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

    seen = _run_kafka(settings, read())
    if seen < count:
        raise _fail(f"only {seen} of {count} records within {timeout}s")


@cli.command()
def get(
    customer_id: Annotated[
        str | None, typer.Argument(help="The customer id (or give --source-id).")
    ] = None,
    source_id: Annotated[
        str | None, typer.Option(help="Name the customer by its source_id instead.")
    ] = None,
) -> None:
    """Print the stored record of a customer as JSON, with its version (as published: the
    holder of a source_id shows the events of its implicit customer too)."""
    settings = Settings()
    if (customer_id is None) == (source_id is None):
        raise _fail("name the customer by its id or by --source-id (one of the two)")

    async def read(store: CustomerStore) -> tuple[str | None, View]:
        wanted = customer_id
        if source_id is not None:
            wanted = (await store.index.holding(source_id)).holder
            if wanted is None:
                return None, View(0, None)
        assert wanted is not None
        return wanted, await customer_view(store, wanted)

    found, view = _run_redis(settings, read)
    if found is None:
        raise _fail("no customer holds that source_id")
    if view.merged_into is not None:
        raise _fail(f"{found!r} was merged into {view.merged_into!r} (its source_id's holder)")
    if view.record is None:
        raise _fail(f"no record for {found!r}" + (" (erased)" if view.version else ""))
    typer.echo(json.dumps({"version": view.version, "customer": view.record}, indent=2))


@identity_cli.command("show")
def identity_show(source_id: Annotated[str, typer.Argument(help="The source_id.")]) -> None:
    """Print who holds a source_id, every claim on it and any conflict, as JSON."""
    settings = Settings()

    async def read(store: CustomerStore) -> Holding:
        return await store.index.holding(source_id)

    holding = _run_redis(settings, read)
    shown = {
        "source_id": holding.source_id,
        "holder": holding.holder,
        "implicit_id": holding.implicit_id,
        "implicit_record": holding.implicit_exists,
        "claims": [
            {
                "customer_id": c.customer_id,
                "created_at": format_micros(int(c.stamp)),
                "valid": c.valid,
            }
            for c in holding.claims
        ],
        "conflict": holding.conflicting,
    }
    typer.echo(json.dumps(shown, indent=2))


def _run_redis(settings: Settings, action: Callable[[CustomerStore], Awaitable[T]]) -> T:
    """Run a read against the store, turning an unreachable Redis into a clear exit."""

    async def run() -> T:
        redis = connect_redis(settings)
        try:
            return await action(CustomerStore(redis, settings.key_prefix))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except RedisConnectionError as error:
        raise _fail(f"Redis is unreachable: {error}") from None


def _dlq_topic(settings: Settings, topic: str) -> str:
    """The dead-letter topic named, or the one of the input topic named."""
    suffix = settings.topics.dlq_suffix
    return topic if topic.endswith(suffix) else settings.topics.dlq(topic)


@dlq_cli.command("inspect")
def dlq_inspect(
    topic: Annotated[str, typer.Argument(help="A dead-letter topic, or its input topic.")],
    samples: Annotated[int, typer.Option(min=0, help="Samples shown per error class.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Count the dead letters of TOPIC by error class and show samples (no values)."""
    settings = Settings()
    dlq = _dlq_topic(settings, topic)
    report = _run_kafka(settings, inspect(kafka_options(settings), dlq, samples))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "topic": dlq,
                    "total": report.total,
                    "by_class": report.by_class,
                    "samples": report.samples,
                },
                indent=2,
            )
        )
        return
    typer.echo(f"{dlq}: {report.total} dead letter(s)")
    for error_class, count in report.by_class.most_common():
        typer.echo(f"  {count:>8}  {error_class}")
        for sample in report.samples[error_class]:
            where, when = sample["original"], sample["failed_at"]
            typer.echo(f"            {where} failed {when}: {sample['message']}")


@dlq_cli.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="A dead-letter topic, or its input topic.")],
) -> None:
    """Re-publish the dead letters of TOPIC to their original topic, after a fix.

    Each is validated first; the ones that still fail are skipped and listed. Replaying
    twice is harmless: the worker deduplicates events by (source, id).
    """
    settings = Settings()
    dlq = _dlq_topic(settings, topic)

    async def run() -> ReplayReport:
        async with TopicSnapshot(kafka_options(settings), dlq) as snapshot:
            producer = AIOKafkaProducer(
                **kafka_options(settings), acks="all", enable_idempotence=True
            )
            await producer.start()
            try:
                with typer.progressbar(length=snapshot.total, label=f"replaying {dlq}") as bar:
                    intake = Intake(settings.topics.inputs, settings.limits)
                    return await replay(snapshot, producer, intake, settings.topics, bar.update)
            finally:
                await producer.stop()

    report = _run_kafka(settings, run())
    typer.echo(f"replayed {report.replayed}, skipped {len(report.still_invalid)} still invalid")
    for partition, offset, why in report.still_invalid:
        typer.echo(f"  skipped {dlq}/{partition}/{offset}: {why.error_class}: {why.message}")


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
