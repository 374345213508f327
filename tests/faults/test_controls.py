"""Negative control with the real worker: a workload with planted defects (an event the
reference expects but that is never sent, an event counted twice under a new id, a stray and
a missing dead letter) must come out of the harness as exactly those findings."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.scenario import Fault, Plan, play
from tests.faults.stack import PrivateStack
from tests.faults.workload import Message, Workload, build_workload, good
from tests.support.generate import Event, customer_of

pytestmark = pytest.mark.faults


@dataclass(frozen=True)
class Planted:
    """What was planted, and so what the verdict must report."""

    lost: Event
    doubled: Event
    stray: Message
    missing: Message


class Control(Fault):
    """No process fault; the defects are in the workload."""

    name = "control: planted loss, double count, stray+missing DLQ"


def _points_events(workload: Workload) -> list[Event]:
    """Points of customers named by id and never erased: a defect planted there shows
    on that customer (one named by source_id may show on the holder it is merged into)."""
    erased = {customer_of(e) for e in workload.events if e["type"] == "customer.erase"}
    return [
        e
        for e in workload.events
        if e["type"] == "loyalty.points.added" and "subject" in e and e["subject"] not in erased
    ]


def plant(workload: Workload) -> tuple[Workload, Planted]:
    """The workload with the defects planted in what is sent, but not in the expectation."""
    candidates = _points_events(workload)
    lost = candidates[0]
    doubled = next(e for e in candidates if customer_of(e) != customer_of(lost))
    twin = dict(doubled, id=doubled["id"] + "-twin")
    poison = workload.poison[0]
    stray = Message(poison.topic_field, b"stray", b"\xffstray", (), poison.error_class)
    missing = Message(poison.topic_field, b"never-sent", b"\xffnever", (), poison.error_class)
    dropped = good(lost).value
    sent = Workload(
        workload.customers,
        workload.events,
        [*(m for m in workload.messages if m.value != dropped), good(twin), stray],
        [*workload.poison, missing],
        workload.source_ids,
    )
    return sent, Planted(lost, doubled, stray, missing)


async def test_checks_catch_planted_defects(fault_stack: PrivateStack, tmp_path: Path) -> None:
    plan = Plan(customers=60, events=600, chunks=10, stream_seconds=3)
    honest = build_workload(plan.seed, plan.customers, plan.events, 0.1, 2)
    workload, planted = plant(honest)
    never_sent = good(planted.lost).value
    assert all(m.value != never_sent for m in workload.messages)

    verdict = await play(fault_stack, Control(), tmp_path, plan, workload)

    lost_points = planted.lost["data"]["points"]
    doubled_points = planted.doubled["data"]["points"]
    assert set(verdict.mismatched) == {customer_of(planted.lost), customer_of(planted.doubled)}
    assert verdict.counters["loyalty.points"] == [lost_points, doubled_points]
    assert (verdict.lost, verdict.double_counted) == (lost_points, doubled_points)
    assert len(verdict.dead_letters) == 2, verdict.dead_letters
    assert verdict.dead_letters[0].startswith("unexpected on ")
    assert verdict.dead_letters[1].startswith("missing on ")
    assert not verdict.publication, verdict.report()
    assert not verdict.ordering, verdict.report()
