"""The verdict must fail on each kind of defect it exists to catch (pure: no services)."""

import copy
import random
from typing import Any

import pytest

from tests.faults.verdict import DeadLetter, Published, Record, Verdict, judge
from tests.reference import reference_records
from tests.support.generate import Generator

pytestmark = pytest.mark.faults

Stored = dict[str, tuple[int, Record | None]]


def _published(customer: str, version: int, record: Record | None) -> Published:
    value = None
    if record is not None:
        value = {"id": f"{customer}:{version}", "data": {"customer": record, "version": version}}
    return Published(version, f"{customer}:{version}", value)


class World:
    """An honest outcome: every customer stored and published as the reference says."""

    def __init__(self) -> None:
        events = Generator(random.Random(7), [f"c{n}" for n in range(12)]).events(150)
        self.expected = reference_records(events)
        self.stored: Stored = {c: (3, copy.deepcopy(r)) for c, r in self.expected.items()}
        self.published = {
            c: [_published(c, 1, {"id": c}), _published(c, 3, r)] for c, r in self.expected.items()
        }
        poison = DeadLetter("t.dlq", b"k", b"\xff", (("h", b"1"),), "UndecodableMessage", "t")
        self.expected_dead = [poison]
        self.dead = [self.arrived(poison)]

    @staticmethod
    def arrived(
        letter: DeadLetter,
        *,
        value: bytes | None = None,
        original_headers: tuple[tuple[str, bytes], ...] | None = None,
        error_class: str | None = None,
        original_topic: str | None = None,
    ) -> DeadLetter:
        """`letter` as the worker writes it (original headers plus error headers), with the
        given parts changed."""
        headers = (
            *(letter.original_headers() if original_headers is None else original_headers),
            ("x-error-class", (error_class or letter.error_class or "").encode()),
            ("x-original-topic", (original_topic or letter.original_topic or "").encode()),
        )
        return DeadLetter(letter.topic, letter.key, value or letter.value, headers)

    def customer(self) -> str:
        """A customer with a live record and loyalty points."""
        return next(c for c, r in self.expected.items() if r and r["loyalty"]["points"])

    def judge(self) -> Verdict:
        return judge(self.expected, self.stored, self.published, self.dead, self.expected_dead)


def test_an_honest_outcome_passes() -> None:
    verdict = World().judge()
    assert verdict.ok, verdict.report()
    assert (verdict.lost, verdict.double_counted, verdict.dlq) == (0, 0, 1)


@pytest.mark.parametrize(("delta", "lost", "double"), [(-40, 40, 0), (5, 0, 5)])
def test_a_lost_or_double_counted_event_is_caught(delta: int, lost: int, double: int) -> None:
    world = World()
    customer = world.customer()
    _, record = world.stored[customer]
    assert record is not None
    record["loyalty"]["points"] += delta
    verdict = world.judge()
    assert list(verdict.mismatched) == [customer]
    assert (verdict.lost, verdict.double_counted) == (lost, double)
    assert "loyalty.points: expected" in verdict.report()


def test_a_customer_missing_from_the_store_is_caught() -> None:
    world = World()
    customer = world.customer()
    world.stored[customer] = (0, None)
    world.published.pop(customer)
    assert list(world.judge().mismatched) == [customer]


def test_stale_or_wrong_last_publication_is_caught() -> None:
    world = World()
    first, second, third = [c for c, r in world.expected.items() if r][:3]
    world.stored[first] = (4, world.stored[first][1])  # v4 stored, v3 published last
    world.published[second][-1] = _published(second, 3, {"id": second, "name": "wrong"})
    world.published[third][-1] = _published(third, 3, None)  # tombstone for a live record
    problems = world.judge().publication
    assert len(problems) == 3, problems


def test_versions_going_backwards_or_reused_are_caught() -> None:
    world = World()
    first, second = [c for c, r in world.expected.items() if r][:2]
    world.published[first].append(_published(first, 2, {"id": first}))
    world.published[second].append(_published(second, 3, {"id": second, "other": 1}))
    problems = world.judge().ordering
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{first}: v2 (")
    assert "published after v3 (" in problems[0]
    assert problems[1].startswith(f"{first}: the log ends with v2")
    assert problems[2] == f"{second}: v3 published twice with different content"


def test_a_republication_of_the_same_version_is_allowed() -> None:
    world = World()
    customer = world.customer()
    world.published[customer].append(world.published[customer][-1])
    verdict = world.judge()
    assert verdict.ok
    assert verdict.republished == 1


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        ({"value": b"a good event"}, ["unexpected on t.dlq", "missing on t.dlq"]),
        ({"original_headers": ()}, ["headers () != (('h', b'1'),)"]),
        ({"error_class": "SchemaViolation"}, ["class SchemaViolation != UndecodableMessage"]),
        ({"original_topic": "u"}, ["x-original-topic u"]),
    ],
)
def test_a_wrong_dead_letter_is_caught(damage: dict[str, Any], found: list[str]) -> None:
    world = World()
    (letter,) = world.expected_dead
    world.dead = [World.arrived(letter, **damage)]
    problems = world.judge().dead_letters
    assert len(problems) == len(found), problems
    for problem, expected in zip(problems, found, strict=True):
        assert expected in problem


def test_a_missing_or_stray_dead_letter_is_caught() -> None:
    world = World()
    (letter,) = world.expected_dead
    world.dead = []
    assert world.judge().dead_letters == [f"missing on t.dlq: {letter.value!r:.80}"]
    world.dead = [World.arrived(letter), World.arrived(letter, value=b"good")]
    (problem,) = world.judge().dead_letters
    assert problem.startswith("unexpected on t.dlq")


def test_a_dead_letter_delivered_twice_is_tolerated() -> None:
    world = World()
    world.dead = world.dead * 2  # redelivered after a crash: at least once, same record
    verdict = world.judge()
    assert verdict.ok
    assert verdict.dlq == 2


@pytest.mark.parametrize(
    "found",
    [{"crm-1": ("c2", ["c1"])}, {"crm-1": ("c1", [])}, {}],
    ids=["wrong holder", "conflict unseen", "nobody"],
)
def test_a_wrong_source_id_holder_is_caught(found: dict[str, Any]) -> None:
    world = World()
    holders = ({"crm-1": ("c1", ["c2"])}, found)
    verdict = judge(
        world.expected, world.stored, world.published, world.dead, world.expected_dead, holders
    )
    assert not verdict.ok
    assert verdict.identity == [f"crm-1: held by {found.get('crm-1')}, expected ('c1', ['c2'])"]
    right = ({"crm-1": ("c1", ["c2"])}, {"crm-1": ("c1", ["c2"])})
    assert judge(
        world.expected, world.stored, world.published, world.dead, world.expected_dead, right
    ).ok
