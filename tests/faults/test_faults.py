"""DESIGN.md §2 under real faults: processes are killed, paused and restarted while a
workload streams; every scenario ends with the full verdict (see `verdict.judge`)."""

from pathlib import Path

import pytest

from tests.faults.faults import (
    KillOneOfTwo,
    KillRedis,
    KillWorker,
    PauseRedis,
    RestartKafka,
    StopWorker,
)
from tests.faults.scenario import Fault, Plan, run_scenario
from tests.faults.stack import PrivateStack

pytestmark = pytest.mark.faults


async def test_worker_killed_repeatedly(fault_stack: PrivateStack, tmp_path: Path) -> None:
    await run_scenario(fault_stack, KillWorker(times=5), tmp_path, Plan(stream_seconds=45))


async def test_worker_killed_during_merges(fault_stack: PrivateStack, tmp_path: Path) -> None:
    """Few customers, four source_ids: claims, conflicts, merges and holder changes all
    the time (a quarter of the events name their customer by source_id alone)."""
    fault = KillWorker(times=4, name="worker kill -9 x4, merges")
    await run_scenario(fault_stack, fault, tmp_path, Plan(customers=40, stream_seconds=30))


async def test_worker_sigterm_mid_stream(fault_stack: PrivateStack, tmp_path: Path) -> None:
    await run_scenario(fault_stack, StopWorker(), tmp_path, Plan())


async def test_redis_killed_and_restarted_from_aof(
    fault_stack: PrivateStack, tmp_path: Path
) -> None:
    await run_scenario(fault_stack, KillRedis(times=2), tmp_path, Plan())


async def test_redis_paused(fault_stack: PrivateStack, tmp_path: Path) -> None:
    await run_scenario(fault_stack, PauseRedis(seconds=8), tmp_path, Plan())


async def test_kafka_restarted(fault_stack: PrivateStack, tmp_path: Path) -> None:
    await run_scenario(fault_stack, RestartKafka(), tmp_path, Plan())


async def test_one_of_two_workers_killed(fault_stack: PrivateStack, tmp_path: Path) -> None:
    await run_scenario(fault_stack, KillOneOfTwo(), tmp_path, Plan(workers=2))


class Poison(Fault):
    """No process fault: the workload itself carries many bad records on every topic."""

    name = "poison on every topic"


async def test_poison_interleaved(fault_stack: PrivateStack, tmp_path: Path) -> None:
    await run_scenario(fault_stack, Poison(), tmp_path, Plan(poison_per_topic=40))
