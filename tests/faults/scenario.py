"""One flow for every fault: stream a workload into a fresh set of topics while a fault is
injected, wait until the worker group has committed everything, then judge the outcome.

A fault is an object with `inject` (runs concurrently with the stream; the stream's last
chunk waits for it, so every fault lands mid-stream) and `check` (after quiescence).
"""

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from tests.faults.kafka_io import GroupProbe, InputProducer, OutputLog
from tests.faults.report import record, summary
from tests.faults.stack import PrivateStack
from tests.faults.verdict import DeadLetter, Published, Verdict, judge
from tests.faults.workload import Message, Workload, build_workload
from tests.reference import reference_holders, reference_records
from tests.support.bus import partitions
from tests.support.generate import customers_of
from tests.support.services import prefixed_topics
from tests.support.worker_process import WorkerProcess
from worker.settings import Settings, Topics
from worker.store.customer_store import CustomerStore
from worker.store.keys import KeyLayout
from worker.topics import contract_topics, ensure_topics
from worker.views import customer_view

PARTITIONS = 6
#: Generous bounds for waiting only; nothing asserts on speed.
QUIESCENCE_SECONDS = 240.0
FAULT_SECONDS = 300.0
#: Quiet time on the output before the worker counts as caught up.
SETTLE_SECONDS = 2.0


def default_seed() -> int:
    """`CW_FAULTS_SEED` to replay a run, else a fresh seed (printed and recorded)."""
    return int(os.environ.get("CW_FAULTS_SEED") or random.randrange(2**31))


@dataclass
class Plan:
    """The size and pace of a scenario."""

    customers: int = 300
    events: int = 4000
    duplicates: float = 0.1
    poison_per_topic: int = 2
    chunks: int = 40
    stream_seconds: float = 9.0
    workers: int = 1
    graceful_seconds: float = 10.0
    seed: int = field(default_factory=default_seed)


class Fault:
    """No fault: the base of every fault, and the plain run."""

    name = "none"

    async def inject(self, scene: "Scene") -> None:
        """Break things while the workload streams (must leave the services running)."""

    async def check(self, scene: "Scene") -> None:
        """Fault-specific checks once the worker has caught up."""


class Progress:
    """How many of the workload's records have been acknowledged by Kafka."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self._advanced = asyncio.Event()

    @property
    def fraction(self) -> float:
        """Share of the workload sent."""
        return self.sent / self.total

    def advance(self, count: int) -> None:
        """`count` more records were acknowledged."""
        self.sent += count
        self._advanced.set()

    async def reached(self, fraction: float) -> None:
        """Wait until at least `fraction` of the workload is sent."""
        while self.fraction < fraction:
            self._advanced.clear()
            await self._advanced.wait()


class Scene:
    """Everything a fault can reach: the stack, the worker processes and the observers."""

    def __init__(self, stack: PrivateStack, plan: Plan, workload: Workload, workdir: Path) -> None:
        run = uuid.uuid4().hex[:8]
        self.stack = stack
        self.plan = plan
        self.workload = workload
        self.rng = random.Random(plan.seed)
        self.topics = prefixed_topics(f"f{run}")
        self.group = f"faults-{run}"
        self.key_prefix = f"f{run}"
        self.inputs = partitions(self.topics.inputs, PARTITIONS)
        self.progress = Progress(workload.deliveries)
        self.notes: dict[str, Any] = {}
        self.probe = GroupProbe(stack.bootstrap)
        self.producer = InputProducer(stack.bootstrap, self.topics)
        self.output = OutputLog(stack.bootstrap, self.topics, PARTITIONS)
        self.redis = Redis.from_url(stack.redis_url, decode_responses=True)
        self.store = CustomerStore(self.redis, self.key_prefix)
        self.workers = [
            WorkerProcess(self._worker_settings(), workdir, f"worker-{n}")
            for n in range(plan.workers)
        ]

    def _worker_settings(self) -> Settings:
        return Settings(
            kafka_bootstrap_servers=self.stack.bootstrap,
            redis_url=self.stack.redis_url,
            group_id=self.group,
            key_prefix=self.key_prefix,
            topics=self.topics,
            batch_timeout_ms=20,
            batch_max_records=250,
            retry_initial_seconds=0.05,
            retry_max_seconds=1,
            graceful_timeout_seconds=self.plan.graceful_seconds,
        )

    @asynccontextmanager
    async def opened(self) -> AsyncIterator["Scene"]:
        """Topics created, clients connected, workers started; all torn down after."""
        async with AsyncExitStack() as stack:
            await self.probe.start()
            stack.push_async_callback(self.probe.stop)
            specs = contract_topics(self.topics, PARTITIONS)
            await ensure_topics(self.probe.admin, specs, replication=1)
            stack.push_async_callback(self._delete_topics, [spec.name for spec in specs])
            stack.push_async_callback(self.redis.aclose)
            for client in (self.producer, self.output):
                await client.start()
                stack.push_async_callback(client.stop)
            for worker in self.workers:
                stack.push_async_callback(worker.stop)
                await worker.start()
            for worker in self.workers:
                await worker.wait_ready()
            yield self

    async def _delete_topics(self, names: list[str]) -> None:
        try:
            await asyncio.wait_for(self.probe.admin.delete_topics(names), 10)
        except Exception as error:  # best effort: the stack is wiped at session end anyway
            print(f"could not delete topics: {error!r}")

    # -- waiting --------------------------------------------------------------------------
    async def committed_total(self) -> int:
        """Sum of the group's committed input offsets (retried while Kafka is away)."""
        while True:
            done = await self.probe.committed(self.group, self.inputs)
            if done is not None:
                return sum(done.values())
            await asyncio.sleep(0.2)

    async def busy(self, within: float = 120.0) -> None:
        """Wait until the group commits something new: a worker is processing right now."""
        before = await self.committed_total()
        deadline = time.monotonic() + within
        while await self.committed_total() <= before:
            if time.monotonic() > deadline:
                raise AssertionError(f"the group committed nothing for {within}s")
            await asyncio.sleep(0.1)

    async def output_caught_up(self, within: float = 60.0) -> None:
        """Wait until the reader has read everything the worker wrote so far."""
        deadline = time.monotonic() + within
        while True:
            ends = await self.probe.end_offsets(self.output.assigned)
            if ends is not None and await self.output.caught_up(ends):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"output not read to its end within {within}s")
            await asyncio.sleep(0.1)

    async def quiescent(self, within: float = QUIESCENCE_SECONDS) -> None:
        """Wait until every input record is committed by the group, all output is read and
        nothing new has been published for `SETTLE_SECONDS`."""
        deadline = time.monotonic() + within
        calm_since: float | None = None
        lag: int | None = None
        while True:
            lag = await self.probe.lag(self.group, self.inputs)
            ends = await self.probe.end_offsets(self.output.assigned)
            read = ends is not None and await self.output.caught_up(ends)
            now = time.monotonic()
            if lag == 0 and read:
                calm_since = calm_since or now
                if now - max(calm_since, self.output.last_read_at) >= SETTLE_SECONDS:
                    return
            else:
                calm_since = None
            if now > deadline:
                alive = [w.name for w in self.workers if w.alive]
                raise AssertionError(
                    f"not quiescent after {within}s: input lag {lag}, output read {read}, "
                    f"workers alive {alive}"
                )
            await asyncio.sleep(0.25)

    # -- state --------------------------------------------------------------------------
    async def stored(self) -> dict[str, tuple[int, dict[str, Any] | None]]:
        """Version and rendered record of every customer of the workload."""
        found = {}
        for customer in self.workload.customers:
            view = await customer_view(self.store, customer)
            found[customer] = (view.version, view.record)
        return found

    def published(self) -> dict[str, list[Published]]:
        """The `customer.updated` records read so far, per customer, in log order."""
        return {
            customer: [Published.of(dict(r.headers), r.value) for r in records]
            for customer, records in self.output.updates.items()
        }

    def expected_dead(self) -> list[DeadLetter]:
        """The poison as it must appear in the DLQ topics."""
        return [_dead_letter_of(self.topics, message) for message in self.workload.poison]

    async def judge(self) -> Verdict:
        """The scenario's verdict against the reference fold."""
        dead = [DeadLetter(r.topic, r.key, r.value, tuple(r.headers)) for r in self.output.dead]
        holders = {}
        for source_id in self.workload.source_ids:
            holding = await self.store.index.holding(source_id)
            holders[source_id] = (holding.holder, holding.conflicting)
        return judge(
            reference_records(self.workload.events),
            await self.stored(),
            self.published(),
            dead,
            self.expected_dead(),
            (reference_holders(self.workload.events), holders),
        )

    def logs(self) -> str:
        """Worker log tails and where the stack's logs are, for failure reports."""
        parts = [f"=== {w.name}:\n{w.log_tail()}" for w in self.workers]
        parts.append(f"--- stack logs: {self.stack.logs}")
        return "\n".join(parts)


def _dead_letter_of(topics: Topics, message: Message) -> DeadLetter:
    topic = str(getattr(topics, message.topic_field))
    return DeadLetter(
        topics.dlq(topic),
        message.key,
        message.value,
        message.headers,
        message.error_class,
        topic,
    )


async def _stream(scene: Scene, injector: "asyncio.Task[None]") -> None:
    """Send the workload in `plan.chunks` chunks over about `plan.stream_seconds`; the last
    chunk waits for the fault to be fully injected."""
    messages = scene.workload.messages
    size = -(-len(messages) // scene.plan.chunks)
    chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
    pause = scene.plan.stream_seconds / len(chunks)
    for index, chunk in enumerate(chunks):
        if index == len(chunks) - 1:
            await asyncio.wait_for(asyncio.shield(injector), FAULT_SECONDS)
        if injector.done():
            injector.result()  # a fault that failed its own checks stops the scenario
        await scene.producer.send(chunk)
        scene.progress.advance(len(chunk))
        await asyncio.sleep(pause)
    await injector


async def play(
    stack: PrivateStack,
    fault: Fault,
    workdir: Path,
    plan: Plan,
    workload: Workload | None = None,
) -> Verdict:
    """Stream the workload (`plan`'s, unless given) under `fault`, wait for quiescence and
    judge; records the fault-matrix row and returns the verdict."""
    started = time.monotonic()
    workload = workload or build_workload(
        plan.seed, plan.customers, plan.events, plan.duplicates, plan.poison_per_topic
    )
    scene = Scene(stack, plan, workload, workdir)
    print(f"{fault.name}: seed {plan.seed} (replay with CW_FAULTS_SEED={plan.seed})")
    async with scene.opened():
        injector = asyncio.create_task(fault.inject(scene))
        try:
            await _stream(scene, injector)
            await scene.quiescent()
            await fault.check(scene)
            verdict = await scene.judge()
        except BaseException:
            injector.cancel()
            print(scene.logs())
            raise
        row = {
            "fault": fault.name,
            "events_sent": workload.deliveries,
            "resent": scene.producer.resent,
            "producer_renewed": scene.producer.renewed,
            "distinct_events": len(workload.events),
            "customers": len(workload.customers),
            "mismatched_customers": len(verdict.mismatched),
            "lost": verdict.lost,
            "double_counted": verdict.double_counted,
            "dlq": verdict.dlq,
            "expected_dlq": verdict.expected_dlq,
            "republished_versions": verdict.republished,
            "seconds": round(time.monotonic() - started, 1),
            "seed": plan.seed,
            "ok": verdict.ok,
            **scene.notes,
        }
        record(row)
        print(summary(row))
        if not verdict.ok:
            print(scene.logs())
            for line in verdict.publication[:3]:
                customer = line.split(":", 1)[0]
                keys = KeyLayout(scene.key_prefix)
                state = await scene.redis.hgetall(keys.record(customer))
                print(f"{customer}: v={state.get('v')} pv={state.get('pv')}")
                print("  state:", {k: v for k, v in state.items() if k[0] not in "@#"})
                log = await scene.redis.zrange(keys.replay_log(customer), 0, -1, withscores=True)
                print("  log:", [(json.loads(m)["m"], t) for m, t in log])
                mine = [
                    (e["id"], e["source"], e["type"], e["time"])
                    for e in scene.workload.events
                    if customer in customers_of(e)
                ]
                print("  events:", mine)
    return verdict


async def run_scenario(stack: PrivateStack, fault: Fault, workdir: Path, plan: Plan) -> None:
    """`play`, failing with the findings (the worker logs are printed) if a promise broke."""
    verdict = await play(stack, fault, workdir, plan)
    assert verdict.ok, verdict.report()
