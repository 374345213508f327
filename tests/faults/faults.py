"""The faults: each breaks one real process mid-stream and says what it observed."""

import asyncio
import os
import signal
import time

from tests.faults.scenario import Fault, Scene
from tests.support.worker_process import WorkerProcess

#: Slack on top of the graceful timeout for the interpreter to exit after the app stopped.
EXIT_MARGIN_SECONDS = 5.0


async def sample_readiness(worker: WorkerProcess, seconds: float) -> list[int | None]:
    """`/readyz` statuses polled for `seconds` (None: no answer)."""
    statuses = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses.append(await worker.readiness())
        await asyncio.sleep(0.2)
    return statuses


class KillWorker(Fault):
    """`kill -9` of the worker while it is processing, restarted at once, `times` times."""

    def __init__(self, times: int, name: str = "") -> None:
        self.times = times
        self.name = name or f"worker kill -9 x{times}"

    async def inject(self, scene: Scene) -> None:
        worker = scene.workers[0]
        kills = []
        for n in range(self.times):
            await scene.progress.reached(0.05 + 0.8 * n / self.times)
            await scene.busy()
            await asyncio.sleep(scene.rng.uniform(0.0, 0.5))
            code = await worker.kill()
            assert code == -signal.SIGKILL, f"worker ended with {code} before the kill"
            kills.append(round(scene.progress.fraction, 2))
            await worker.start()
        scene.notes["kills_at_progress"] = kills


class StopWorker(Fault):
    """SIGTERM mid-stream, with a batch surely in flight (Redis frozen for a moment under it,
    well within the socket and graceful timeouts): exit 0 within the graceful timeout,
    having published every version it stored; then a restart finishes the stream."""

    name = "worker SIGTERM"
    HOLD_SECONDS = 1.0

    async def inject(self, scene: Scene) -> None:
        worker = scene.workers[0]
        await scene.progress.reached(0.4)
        await scene.busy()
        redis = scene.stack.signal_redis(signal.SIGSTOP)
        try:
            await asyncio.sleep(self.HOLD_SECONDS)  # the next batch is now waiting on Redis
            started = time.monotonic()
            worker.send(signal.SIGTERM)
            await asyncio.sleep(self.HOLD_SECONDS)
        finally:
            os.kill(redis, signal.SIGCONT)
        code = await worker.wait_exit(scene.plan.graceful_seconds + 60.0)
        took = time.monotonic() - started
        scene.notes.update(sigterm_exit=code, sigterm_seconds=round(took, 1))
        assert code == 0, f"exit status {code} after SIGTERM"
        limit = scene.plan.graceful_seconds + EXIT_MARGIN_SECONDS
        assert took <= limit, f"took {took:.1f}s to exit after SIGTERM (limit {limit}s)"
        await scene.output_caught_up()
        published = scene.published()
        behind = {}
        for customer, (version, _) in (await scene.stored()).items():
            latest = max((p.version for p in published.get(customer, [])), default=0)
            if latest != version:
                behind[customer] = f"stored v{version}, published v{latest}"
        assert not behind, f"after SIGTERM, {len(behind)} customers: {list(behind.items())[:5]}"
        await worker.start()


class KillRedis(Fault):
    """`kill -9` of Redis while the worker writes, restarted from its AOF, `times` times."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.name = f"redis kill -9 x{times}"

    async def inject(self, scene: Scene) -> None:
        outage = []
        for n in range(self.times):
            await scene.progress.reached(0.3 + 0.4 * n / self.times)
            await scene.busy()
            await asyncio.sleep(scene.rng.uniform(0.0, 0.3))
            pid = scene.stack.signal_redis(signal.SIGKILL)
            await scene.stack.wait_gone(pid)
            started = time.monotonic()
            await asyncio.sleep(2.0)
            await scene.stack.arun("redis-start")
            outage.append(round(time.monotonic() - started, 1))
        scene.notes["redis_down_seconds"] = outage


class PauseRedis(Fault):
    """Redis frozen with SIGSTOP: `/readyz` must say 503 meanwhile and 200 after SIGCONT."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.name = f"redis SIGSTOP {seconds:g}s"

    async def inject(self, scene: Scene) -> None:
        worker = scene.workers[0]
        await scene.progress.reached(0.4)
        await scene.busy()
        pid = scene.stack.signal_redis(signal.SIGSTOP)
        try:
            statuses = await sample_readiness(worker, self.seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        recovered = await worker.wait_ready()
        scene.notes.update(
            readyz_503_while_paused=statuses.count(503),
            readyz_polls_while_paused=len(statuses),
            ready_again_seconds=round(recovered, 1),
        )
        assert 503 in statuses, f"/readyz never said 503 while Redis was paused: {statuses}"


class RestartKafka(Fault):
    """The broker stopped and started again mid-stream; nobody intervenes."""

    name = "kafka stop/start"

    async def inject(self, scene: Scene) -> None:
        await scene.progress.reached(0.35)
        await scene.busy()
        started = time.monotonic()
        await scene.stack.arun("kafka-stop")
        stopped = time.monotonic()
        await asyncio.sleep(2.0)
        await scene.stack.arun("kafka-start")
        scene.notes.update(
            kafka_stop_seconds=round(stopped - started, 1),
            kafka_down_seconds=round(time.monotonic() - stopped, 1),
        )


class KillOneOfTwo(Fault):
    """Two workers in one group; one is `kill -9`ed for good: the survivor takes over every
    partition (checked from the group's assignment and its commits past the kill)."""

    name = "2 workers, one kill -9"

    def __init__(self) -> None:
        self._ends_at_kill: dict[object, int] = {}

    async def _members(self, scene: Scene, count: int, within: float = 60.0) -> list[set[object]]:
        deadline = time.monotonic() + within
        while True:
            members = await scene.probe.members(scene.group)
            if members is not None and len(members) == count and all(members):
                return list(members)
            if time.monotonic() > deadline:
                raise AssertionError(f"group never had {count} assigned members: {members}")
            await asyncio.sleep(0.2)

    async def inject(self, scene: Scene) -> None:
        assert len(scene.workers) == 2
        await scene.progress.reached(0.35)
        before = await self._members(scene, 2)
        await scene.busy()
        await scene.workers[1].kill()
        ends = await scene.probe.end_offsets(scene.inputs)
        assert ends is not None
        self._ends_at_kill = dict(ends)
        scene.notes["assignment_before_kill"] = sorted(len(m) for m in before)

    async def check(self, scene: Scene) -> None:
        (survivor,) = await self._members(scene, 1)
        assert set(scene.inputs) <= survivor, "the survivor is not assigned every partition"
        ends = await scene.probe.end_offsets(scene.inputs)
        assert ends is not None
        idle = [tp for tp in scene.inputs if ends[tp] <= self._ends_at_kill[tp]]
        assert not idle, f"no records after the kill on {idle}: the takeover is unproven"
        scene.notes["survivor_partitions"] = len(survivor)
