"""Dedup markers are bounded per customer; the trade-off is the documented one."""

from redis.asyncio import Redis

from tests.support.events import at, event
from tests.support.pipeline_harness import Harness
from worker.domain import fields


def _markers(state: dict[str, str]) -> dict[str, int]:
    """A customer's dedup markers: marker -> the version it was applied at."""
    return {
        name[len(fields.MARKER) :]: int(value.partition("|")[0])
        for name, value in state.items()
        if name.startswith(fields.MARKER)
    }


async def test_markers_are_bounded_and_old_redeliveries_are_guarded_by_natural_keys(
    redis: "Redis", scratch_prefix: str
) -> None:
    harness = Harness(redis, scratch_prefix, max_markers=5)
    points = [
        event("loyalty.points.added", "c1", {"campaign_id": "k", "points": 1}, time=at(n))
        for n in range(20)
    ]
    order = event("order.paid", "c1", {"order_id": "o1", "amount": 700}, time=at(0.5))
    redemption = event(
        "redemption.succeeded",
        "c1",
        {"redemption_id": "r1", "voucher": {"type": "GIFT_VOUCHER"}, "amount": 30},
        time=at(0.7),
    )
    await harness.deliver([order, redemption])
    for item in points:
        await harness.deliver([item])
    # The bound holds: at least 5 kept, at most a quarter more (evicted in chunks).
    assert 5 <= len(_markers(await harness.store.state("c1"))) <= 6

    await harness.deliver([points[-1]])  # a recent redelivery: still recognised
    state = await harness.store.state("c1")
    assert state["loyalty.points"] == "20"

    # Redeliveries older than the kept markers: the order and the redemption are guarded
    # by their natural keys (per-order state, once per redemption outcome) ...
    await harness.deliver([order, redemption])
    state = await harness.store.state("c1")
    assert state["orders.total_amount"] == "700"
    assert state["redemptions.succeeded"] == "1"
    assert state["gift.redeemed_amount"] == "30"
    # ... while a plain points movement has no natural key and counts again: the price of
    # the bound, which is why it should exceed any customer's events per redelivery window.
    await harness.deliver([points[0]])
    assert (await harness.store.state("c1"))["loyalty.points"] == "21"


async def test_a_late_erase_refolds_later_events_while_they_are_in_the_replay_log(
    redis: "Redis", scratch_prefix: str
) -> None:
    later = event("customer.update", "c2", {"name": "After"}, time=at(10))
    erase = event("customer.erase", "c2", time=at(5))

    kept = Harness(redis, f"{scratch_prefix}-kept")  # default window: one day
    await kept.deliver([later])
    await kept.deliver([erase])  # arrives after an event dated later than itself
    state = await kept.store.state("c2")
    assert state["p:name"] == '"After"'  # folded again: same record as in time order
    assert int(state["er"]) < int(state["ca"])  # erased, then the later event folded again

    # With no replay window the log keeps nothing: the erase errs on forgetting.
    forgetful = Harness(redis, f"{scratch_prefix}-none", replay_window_seconds=0)
    await forgetful.deliver([later])
    await forgetful.deliver([erase])
    assert "p:name" not in await forgetful.store.state("c2")


async def test_late_events_older_than_the_replay_window_do_not_break_the_step(
    redis: "Redis", scratch_prefix: str
) -> None:
    """Regression: a late event dated before the window is logged and evicted at once; the
    log's bookkeeping must follow, or the next eviction reads an entry that is gone."""
    harness = Harness(redis, scratch_prefix)
    day = 86_400
    for seconds in (0, 2 * day, -day, 2 * day + 60, -2 * day, 3 * day):
        tier = {"campaign_id": "k", "tier": f"t{seconds}"}
        await harness.deliver([event("loyalty.tier.changed", "c3", tier, time=at(seconds))])
    assert not [m for m in harness.publisher.messages if m.topic.endswith(".dlq")]
    assert (await harness.store.state("c3"))["lct:k"] == f'"t{3 * day}"'


async def test_an_erase_that_refolds_is_marked_and_republished_after_a_crash(
    redis: "Redis", scratch_prefix: str
) -> None:
    """Regression: the erase's own dedup marker must be written (not the last refolded
    event's), or its redelivery after a crash is ignored and its versions never published."""
    later = event("customer.update", "c4", {"name": "After"}, time=at(10))
    erase = event("customer.erase", "c4", time=at(5))
    first = Harness(redis, scratch_prefix)
    await first.deliver([later])
    records = first.records_of([erase])
    await first.pipeline.apply(records)  # applied in Redis, then the process dies unpublished
    markers = _markers(await first.store.state("c4"))
    assert markers == {f"{later['id']}\ntests": 1, f"{erase['id']}\ntests": 3}

    restarted = Harness(redis, scratch_prefix)
    await restarted.deliver([erase])  # redelivered: recognised, and its version published
    (update,) = restarted.publisher.updates()["c4"]
    assert dict(update.headers)["version"] == b"3"
