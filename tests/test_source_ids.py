"""Customers named by `source_id`: implicit creation, the source_id index (claims, releases,
erase, conflicts) and its repair after a crash between the record and the index (real
Redis; Kafka-free pipeline, and the worker end to end for the CLI)."""

import json
import random
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from contracts.identity import implicit_customer_id, is_implicit
from tests.reference import parse_time_us, reference_holders, reference_records
from tests.support.cli import run_cli
from tests.support.events import at, event
from tests.support.generate import Generator, delivery_order
from tests.support.pipeline_harness import FakeRecord, Harness
from tests.support.services import Services
from worker.domain.record import render
from worker.notices import erasure
from worker.settings import Settings, Topics
from worker.views import customer_view

CUSTOMERS = ["c1", "c2", "c3"]
SOURCE_IDS = ["crm-1", "ann@example.com"]


def _harness(redis: Redis, prefix: str) -> Harness:
    return Harness(redis, f"{prefix}-{uuid.uuid4().hex[:8]}")


def _by_source_id(e: dict[str, Any], source_id: str) -> dict[str, Any]:
    Generator.name_by_source_id(e, source_id)
    return e


async def _record(harness: Harness, customer_id: str) -> dict[str, Any] | None:
    return render(customer_id, await harness.store.state(customer_id))


async def _holder(harness: Harness, source_id: str) -> tuple[str | None, list[str]]:
    holding = await harness.store.index.holding(source_id)
    return holding.holder, holding.conflicting


# ----------------------------------------------------------------------------- contract


def test_the_implicit_id_is_derived_from_the_source_id_alone() -> None:
    assert implicit_customer_id("ann@example.com") == implicit_customer_id("ann@example.com")
    assert implicit_customer_id("a") != implicit_customer_id("b")
    assert is_implicit(implicit_customer_id("x" * 128))
    assert not is_implicit("c1")


async def test_an_event_naming_an_unknown_source_id_creates_its_implicit_customer(
    redis: Redis, scratch_prefix: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    order = event("order.paid", "-", {"order_id": "o1", "amount": 1200}, time=at(1))
    await harness.deliver([_by_source_id(order, "ann@example.com")])

    implicit = implicit_customer_id("ann@example.com")
    record = await _record(harness, implicit)
    assert record is not None
    assert record["id"] == implicit
    assert record["source_id"] == "ann@example.com"
    assert record["summary"]["orders"]["total_amount"] == 1200
    (update,) = harness.publisher.updates()[implicit]
    assert update.key == implicit.encode()
    assert json.loads(update.value or b"")["subject"] == implicit
    assert await _holder(harness, "ann@example.com") == (implicit, [])


async def test_with_both_the_id_wins_and_the_sourceid_attribute_is_ignored(
    redis: Redis, scratch_prefix: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    both = event("order.paid", "c1", {"order_id": "o1", "amount": 5}, time=at(1))
    both["sourceid"] = "crm-1"
    await harness.deliver([both])
    assert (await _record(harness, "c1")) is not None
    assert "source_id" not in (await _record(harness, "c1") or {})
    assert await harness.store.state(implicit_customer_id("crm-1")) == {}


@pytest.mark.parametrize(
    ("change", "error_class", "wording"),
    [
        ({"subject": None}, "InvalidEnvelope", "by `subject` or by `sourceid`"),
        ({"subject": None, "sourceid": ""}, "InvalidEnvelope", "sourceid"),
        ({"subject": None, "sourceid": "crm-1", "data": {"source_id": "crm-2"}}, "", "cannot"),
        ({"subject": None, "sourceid": "crm-1", "data": {"source_id": None}}, "", "cannot"),
    ],
)
async def test_an_event_that_names_no_customer_or_renames_its_implicit_one_is_dead_lettered(
    redis: Redis, scratch_prefix: str, change: dict[str, Any], error_class: str, wording: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    bad = event("customer.update", "c1", {"name": "Ann"}, time=at(1))
    for name, value in change.items():
        if value is None:
            del bad[name]
        else:
            bad[name] = value
    await harness.deliver([bad])
    (dead,) = [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["x-error-class"] == (error_class or "SchemaViolation")
    assert wording in headers["x-error-message"]
    assert dead.value == json.dumps(bad).encode()  # the original bytes
    assert harness.publisher.updates() == {}


# ----------------------------------------------------------------------------- the index


async def test_claims_follow_the_source_id_through_changes_and_erase(
    redis: Redis, scratch_prefix: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    index_key = harness.store.index._keys.source_index
    await harness.deliver([event("customer.create", "c1", {"source_id": "crm-1"}, time=at(1))])
    assert await _holder(harness, "crm-1") == ("c1", [])

    await harness.deliver([event("customer.update", "c1", {"source_id": "crm-2"}, time=at(2))])
    assert await _holder(harness, "crm-1") == (None, [])
    assert await _holder(harness, "crm-2") == ("c1", [])
    assert await redis.hgetall(index_key(implicit_customer_id("crm-1"))) == {}  # released

    await harness.deliver([event("customer.erase", "c1", None, time=at(3))])
    assert await _holder(harness, "crm-2") == (None, [])
    assert await redis.hgetall(index_key(implicit_customer_id("crm-2"))) == {}

    # A later event naming it starts a fresh implicit customer.
    points = {"campaign_id": "k", "points": 3}
    later = _by_source_id(event("loyalty.points.added", "-", points, time=at(4)), "crm-2")
    await harness.deliver([later])
    assert await _holder(harness, "crm-2") == (implicit_customer_id("crm-2"), [])


@pytest.mark.parametrize("first", ["c1", "c2"])
async def test_two_explicit_claims_are_a_conflict_the_earliest_wins_in_either_order(
    redis: Redis, scratch_prefix: str, first: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    claims = {
        "c1": event("customer.create", "c1", {"source_id": "crm-1"}, time=at(5)),
        "c2": event("customer.create", "c2", {"source_id": "crm-1"}, time=at(1)),
    }
    second = "c2" if first == "c1" else "c1"
    await harness.deliver([claims[first]])
    await harness.deliver([claims[second]])

    assert await _holder(harness, "crm-1") == ("c2", ["c1"])  # c2's claim is earlier
    assert harness.metrics.identity_conflicts._value.get() == 1
    for customer in ("c1", "c2"):  # both profiles keep what they were sent: never merged
        assert (await _record(harness, customer) or {})["source_id"] == "crm-1"

    # The holder lets go: the other claim holds it now.
    await harness.deliver([event("customer.update", "c2", {"source_id": None}, time=at(6))])
    assert await _holder(harness, "crm-1") == ("c1", [])


async def test_a_left_over_claim_is_ignored_and_purged_by_the_next_claim(
    redis: Redis, scratch_prefix: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    key = harness.store.index._keys.source_index(implicit_customer_id("crm-1"))
    await redis.hset(key, "ghost", "1|x")  # a claim whose record never held crm-1
    assert await _holder(harness, "crm-1") == (None, [])

    await harness.deliver([event("customer.create", "c1", {"source_id": "crm-1"}, time=at(1))])
    assert await _holder(harness, "crm-1") == ("c1", [])
    assert set(await redis.hgetall(key)) == {"c1"}
    assert harness.metrics.identity_conflicts._value.get() == 0


async def test_sending_the_same_source_id_again_does_not_move_it(
    redis: Redis, scratch_prefix: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    await harness.deliver([event("customer.create", "c1", {"source_id": "crm-1"}, time=at(1))])
    await harness.deliver([event("customer.create", "c2", {"source_id": "crm-1"}, time=at(2))])
    assert await _holder(harness, "crm-1") == ("c1", ["c2"])  # the older record
    again = event("customer.update", "c1", {"source_id": "crm-1", "name": "A"}, time=at(3))
    await harness.deliver([again])
    assert await _holder(harness, "crm-1") == ("c1", ["c2"])


async def test_a_record_written_before_claims_existed_claims_on_its_next_write(
    redis: Redis, scratch_prefix: str
) -> None:
    prefix = f"{scratch_prefix}-old"
    first = Harness(redis, prefix)
    await first.deliver([event("customer.create", "c1", {"source_id": "crm-1"}, time=at(1))])
    record = first.store.index._keys.record("c1")
    index = first.store.index._keys.source_index(implicit_customer_id("crm-1"))
    await redis.hdel(record, "ic")  # as the previous release wrote it
    await redis.delete(index)
    assert await _holder(first, "crm-1") == (None, [])

    later = Harness(redis, prefix)  # the new release, nothing cached
    await later.deliver([event("order.paid", "c1", {"order_id": "o", "amount": 1}, time=at(2))])
    assert await _holder(later, "crm-1") == ("c1", [])


@pytest.mark.parametrize("where", ["subject", "referrer_id"])
async def test_ids_of_implicit_customers_are_reserved(
    redis: Redis, scratch_prefix: str, where: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    implicit = implicit_customer_id("crm-1")
    data = {"campaign_id": "k", "related_object_id": "r", "related_object_type": "order"}
    if where == "subject":
        bad = event("referral.completed", implicit, {**data, "referrer_id": "c1"}, time=at(1))
    else:
        bad = event("referral.completed", "c1", {**data, "referrer_id": implicit}, time=at(1))
    await harness.deliver([bad])
    (dead,) = [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    headers = {k: v.decode() for k, v in dead.headers}
    expected = "InvalidEnvelope" if where == "subject" else "SchemaViolation"
    assert headers["x-error-class"] == expected
    assert "implicit customer" in headers["x-error-message"]


class _Killed(BaseException):
    """Stands for the worker dying (not an error the pipeline handles)."""


async def test_a_crash_between_the_record_and_the_index_is_repaired_by_redelivery(
    redis: Redis, scratch_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"{scratch_prefix}-crash"
    first = Harness(redis, prefix)
    await first.deliver([event("customer.create", "c1", {"source_id": "crm-1"}, time=at(1))])
    change = event("customer.update", "c1", {"source_id": "crm-2"}, time=at(2))
    records = first.records_of([change])

    async def die(*args: object) -> None:
        raise _Killed

    monkeypatch.setattr(first.store.index, "update", die)
    with pytest.raises(_Killed):
        await first.pipeline.process(records)
    # The record moved on, the index did not: crm-1 still claimed, crm-2 not yet.
    assert (await _record(first, "c1") or {})["source_id"] == "crm-2"
    key = first.store.index._keys.source_index
    assert set(await redis.hgetall(key(implicit_customer_id("crm-1")))) == {"c1"}
    assert await redis.hgetall(key(implicit_customer_id("crm-2"))) == {}
    assert await _holder(first, "crm-1") == (None, [])  # checked against the record

    # A new worker (nothing cached) gets the uncommitted batch again.
    second = Harness(redis, prefix)
    await second.pipeline.process(records)
    assert await redis.hgetall(key(implicit_customer_id("crm-1"))) == {}
    assert set(await redis.hgetall(key(implicit_customer_id("crm-2")))) == {"c1"}
    assert await _holder(second, "crm-2") == ("c1", [])


# ----------------------------------------------------------------------------- merge


def _merge_story() -> list[dict[str, Any]]:
    """Orders named by email before the customer.create that claims the email."""
    paid = event("order.paid", "-", {"order_id": "o1", "amount": 1000}, time=at(1))
    points = event("loyalty.points.added", "-", {"campaign_id": "k", "points": 7}, time=at(2))
    create = event(
        "customer.create", "c1", {"source_id": "ann@example.com", "name": "Ann"}, time=at(3)
    )
    own = event("order.paid", "c1", {"order_id": "o2", "amount": 500}, time=at(4))
    return [
        _by_source_id(paid, "ann@example.com"),
        _by_source_id(points, "ann@example.com"),
        create,
        own,
    ]


@pytest.mark.parametrize("order", ["implicit first", "explicit first"])
async def test_an_implicit_customer_is_merged_into_the_customer_claiming_its_source_id(
    redis: Redis, scratch_prefix: str, order: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    story = _merge_story()
    for item in story if order == "implicit first" else story[::-1]:
        await harness.deliver([item])
    implicit = implicit_customer_id("ann@example.com")

    survivor = await customer_view(harness.store, "c1")
    assert survivor.record is not None
    assert survivor.record["summary"]["orders"]["total_amount"] == 1500  # once each
    assert survivor.record["summary"]["orders"]["total_count"] == 2
    assert survivor.record["loyalty"]["points"] == 7
    assert survivor.record["name"] == "Ann"
    assert survivor.record == reference_records(story)["c1"]
    merged = await customer_view(harness.store, implicit)
    assert (merged.record, merged.merged_into) == (None, "c1")

    tombstone = harness.publisher.last(implicit)
    headers = {name: value.decode() for name, value in tombstone.headers}
    assert tombstone.value is None
    assert headers["ce_type"] == "customer.merged"
    assert headers["merged_into"] == "c1"
    last = harness.publisher.last("c1")
    assert json.loads(last.value or b"")["data"]["customer"] == survivor.record

    # Later references resolve to the survivor, and count there.
    later = event("order.paid", "-", {"order_id": "o3", "amount": 1}, time=at(5))
    await harness.deliver([_by_source_id(later, "ann@example.com")])
    after = await customer_view(harness.store, "c1")
    assert after.record is not None
    assert after.record["summary"]["orders"]["total_amount"] == 1501
    assert after.version > survivor.version


async def test_when_the_holder_lets_go_the_implicit_customer_shows_again(
    redis: Redis, scratch_prefix: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    story = _merge_story()
    await harness.deliver(story)
    implicit = implicit_customer_id("ann@example.com")
    assert (await customer_view(harness.store, implicit)).record is None

    await harness.deliver([event("customer.update", "c1", {"source_id": "other"}, time=at(9))])
    back = await customer_view(harness.store, implicit)
    assert back.record is not None
    assert back.record["summary"]["orders"]["total_amount"] == 1000
    survivor = await customer_view(harness.store, "c1")
    assert survivor.record is not None
    assert survivor.record["summary"]["orders"]["total_amount"] == 500
    for customer, view in ((implicit, back), ("c1", survivor)):
        last = harness.publisher.last(customer)
        assert json.loads(last.value or b"")["data"]["customer"] == view.record


async def test_erasing_a_merged_implicit_customer_publishes_its_erasure(
    redis: Redis, scratch_prefix: str
) -> None:
    harness = _harness(redis, scratch_prefix)
    await harness.deliver(_merge_story())
    implicit = implicit_customer_id("ann@example.com")
    erase = _by_source_id(event("customer.erase", "-", None, time=at(9)), "ann@example.com")
    await harness.deliver([erase])

    last = harness.publisher.last(implicit)
    assert last.value is None
    assert dict(last.headers)["ce_type"] == b"customer.erased"
    survivor = await customer_view(harness.store, "c1")
    assert survivor.record is not None
    assert survivor.record["summary"]["orders"]["total_amount"] == 500  # its own order only
    shown = harness.publisher.last("c1")
    assert json.loads(shown.value or b"")["data"]["customer"] == survivor.record


@pytest.mark.parametrize("order", ["as dated", "erase first"])
async def test_erasing_the_holder_erases_what_it_was_known_by(
    redis: Redis, scratch_prefix: str, order: str
) -> None:
    """The erase of c1 also erases the implicit customer of the source_id its erased
    events set (whether they arrive before or after the erase); an event dated after
    the erase that names the source_id starts a fresh implicit customer."""
    harness = _harness(redis, scratch_prefix)
    story = _merge_story()
    erase = event("customer.erase", "c1", None, time=at(9))
    for item in [*story, erase] if order == "as dated" else [erase, *story]:
        await harness.deliver([item])
    implicit = implicit_customer_id("ann@example.com")
    assert (await customer_view(harness.store, "c1")).record is None
    assert (await customer_view(harness.store, implicit)).record is None
    assert await _holder(harness, "ann@example.com") == (None, [])
    assert harness.publisher.last(implicit).value is None

    later = event("order.paid", "-", {"order_id": "o9", "amount": 3}, time=at(10))
    await harness.deliver([_by_source_id(later, "ann@example.com")])
    fresh = await customer_view(harness.store, implicit)
    assert fresh.record is not None
    assert fresh.record["summary"]["orders"]["total_amount"] == 3  # nothing from before
    assert fresh.record == reference_records([*story, erase, later])[implicit]
    assert await _holder(harness, "ann@example.com") == (implicit, [])


async def test_an_erasure_lost_in_a_crash_is_sent_again_by_the_redelivered_erase(
    redis: Redis, scratch_prefix: str
) -> None:
    prefix = f"{scratch_prefix}-erasure"
    first = Harness(redis, prefix)
    await first.deliver(_merge_story())
    erase = event("customer.erase", "c1", None, time=at(9))
    await first.pipeline.apply(first.records_of([erase]))  # the worker dies before publishing
    implicit = implicit_customer_id("ann@example.com")
    assert (await customer_view(first.store, implicit)).record is not None

    second = Harness(redis, prefix)
    await second.deliver([erase])  # the uncommitted erase again, now a duplicate
    assert (await customer_view(second.store, implicit)).record is None
    assert (await customer_view(second.store, "c1")).record is None


def _erasure(source_id: str, until: str, by: str, target: str | None = None) -> FakeRecord:
    """An erasure on the internal topic, as a worker (or a forger) would send it."""
    message = erasure(Topics().referrals, source_id, 0, by, "2026-01-01T00:00:00Z")
    value = json.loads(message.value or b"")
    value["data"]["erased_until"] = until
    if target is not None:
        value["subject"] = target
    return FakeRecord(
        message.topic, 0, 10_000, message.key, json.dumps(value).encode(), message.headers
    )


def _micros(seconds: float) -> str:
    return str(parse_time_us(at(seconds)))


@pytest.mark.parametrize(
    ("why", "source_id", "until", "by", "target"),
    [
        ("not erased", "ann@example.com", _micros(9), "c2", None),
        ("erased before that time", "ann@example.com", _micros(10), "c1", None),
        ("never named by it", "bob@example.com", _micros(9), "c1", None),
        ("beyond the contract's times", "ann@example.com", "9" * 19, "c1", None),
        ("an explicit target", "ann@example.com", _micros(9), "c1", "c2"),
    ],
)
async def test_an_erasure_the_erased_record_does_not_confirm_is_dead_lettered(
    redis: Redis,
    scratch_prefix: str,
    why: str,
    source_id: str,
    until: str,
    by: str,
    target: str | None,
) -> None:
    harness = _harness(redis, scratch_prefix)
    bob = event("order.paid", "-", {"order_id": "o7", "amount": 1}, time=at(1))
    create = event("customer.create", "c2", {"name": "B"}, time=at(5))
    await harness.deliver([*_merge_story(), _by_source_id(bob, "bob@example.com"), create])
    await harness.deliver([event("customer.erase", "c1", None, time=at(9))])
    victim = target or implicit_customer_id(source_id)
    before = await harness.store.state(victim)
    harness.publisher.messages.clear()
    forged = _erasure(source_id, until, by, target)
    await harness.pipeline.process([forged])

    (letter,) = harness.publisher.messages
    assert letter.topic == Topics().dlq(Topics().referrals), why
    assert dict(letter.headers)["x-error-class"] == b"InvalidNotice"
    assert letter.value == forged.value  # the original bytes
    assert await harness.store.state(victim) == before


# ----------------------------------------------------------------------------- any order


async def _fold(redis: Redis, prefix: str, seed: int, count: int) -> None:
    rng = random.Random(seed)
    events = Generator(rng, CUSTOMERS, source_ids=SOURCE_IDS).events(count)
    harness = _harness(redis, prefix)
    order = delivery_order(rng, events, duplicates=0.2, parse_us=parse_time_us)
    await harness.deliver_in_batches(order, rng)

    for customer, record in reference_records(events).items():
        view = await customer_view(harness.store, customer)
        assert view.record == record, f"record of {customer}, seed {seed}"
        if not view.version:
            continue
        last = harness.publisher.last(customer)
        assert int(dict(last.headers)["version"]) == view.version, f"{customer}, seed {seed}"
        shown = None if last.value is None else json.loads(last.value)["data"]["customer"]
        assert shown == record, f"last published record of {customer}, seed {seed}"
    for source_id, expected in reference_holders(events).items():
        assert await _holder(harness, source_id) == expected, f"{source_id}, seed {seed}"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 100))
async def test_any_order_with_duplicates_gives_the_reference_records_and_holders(
    redis: Redis, scratch_prefix: str, seed: int, count: int
) -> None:
    await _fold(redis, scratch_prefix, seed, count)


# ----------------------------------------------------------------------------- CLI


async def test_the_cli_reads_a_customer_by_source_id_and_shows_who_holds_it(
    redis: Redis, scratch_prefix: str, stack: Services
) -> None:
    prefix = f"{scratch_prefix}-cli"
    harness = Harness(redis, prefix)
    await harness.deliver(
        [
            event("customer.create", "c1", {"source_id": "crm-1", "name": "Ann"}, time=at(1)),
            event("customer.create", "c2", {"source_id": "crm-1"}, time=at(2)),
            _by_source_id(
                event("order.paid", "-", {"order_id": "o", "amount": 1}, time=at(3)), "crm-9"
            ),
        ]
    )
    settings = Settings(redis_url=stack.redis_url, key_prefix=prefix)

    got = await run_cli(settings, "get", "--source-id", "crm-1")
    assert got.code == 0, got.err
    assert json.loads(got.out)["customer"]["id"] == "c1"
    assert json.loads(got.out)["customer"]["name"] == "Ann"

    shown = await run_cli(settings, "identity", "show", "crm-1")
    assert shown.code == 0, shown.err
    identity = json.loads(shown.out)
    assert identity["holder"] == "c1"
    assert identity["conflict"] == ["c2"]
    assert [c["customer_id"] for c in identity["claims"]] == ["c1", "c2"]

    implicit = await run_cli(settings, "get", "--source-id", "crm-9")
    assert json.loads(implicit.out)["customer"]["id"] == implicit_customer_id("crm-9")

    missing = await run_cli(settings, "get", "--source-id", "nobody")
    assert missing.code == 1
    assert "no customer holds that source_id" in missing.err
    neither = await run_cli(settings, "get")
    assert neither.code == 1
