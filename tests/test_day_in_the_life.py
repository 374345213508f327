"""A scripted day of three customers across all four input topics, end to end: the final
`customer.updated` of each customer is checked field by field (computed by hand)."""

from typing import Any

from tests.support.bus import Bus
from tests.support.events import at, event
from tests.support.records import blank_record
from worker.store.customer_store import CustomerStore


def iso(seconds: float) -> str:
    """The output form of `at(seconds)`."""
    whole, frac = divmod(seconds, 1)
    minutes, secs = divmod(int(whole), 60)
    return f"2025-03-01T09:{minutes:02d}:{secs:02d}.{round(frac * 1000):03d}Z"


def blank(customer_id: str, created: float, updated: float) -> dict[str, Any]:
    """A record with nothing but its identity and timestamps."""
    return blank_record(customer_id, iso(created), iso(updated))


GIFT = {"type": "GIFT_VOUCHER", "code": "GIFT-1"}
POINTS_GAINED = event(
    "loyalty.points.added",
    "alice",
    {"campaign_id": "L1", "points": 120, "card_code": "LC-1", "balance": 120},
    time=at(6),
)

DAY = [
    event(
        "customer.create",
        "alice",
        {
            "name": "Alice",
            "email": "alice@example.com",
            "metadata": {"lang": "en"},
            "tags": ["vip"],
        },
        time=at(1),
    ),
    event("customer.create", "bob", {"name": "Bob"}, time=at(2)),
    event("order.created", "alice", {"order_id": "A1", "amount": 5000}, time=at(3)),
    event("order.paid", "alice", {"order_id": "A1", "amount": 5000}, time=at(4)),
    event(
        "redemption.succeeded",
        "alice",
        {"redemption_id": "R1", "voucher": GIFT, "amount": 1500, "balance": 3500},
        time=at(5),
    ),
    POINTS_GAINED,
    event(
        "referral.completed",
        "bob",
        {
            "campaign_id": "REF",
            "referrer_id": "alice",
            "related_object_id": "R-ref",
            "related_object_type": "redemption",
        },
        time=at(7),
    ),
    event("order.paid", "carol", {"order_id": "C1", "amount": 2000}, time=at(8)),
    event("order.paid", "carol", {"order_id": "C2", "amount": 3001}, time=at(9)),
    event("order.canceled", "carol", {"order_id": "C2", "amount": 3001}, time=at(10)),
    event("order.fulfilled", "alice", {"order_id": "A2", "amount": 1000}, time=at(11)),
    event(
        "loyalty.points.subtracted",
        "alice",
        {"campaign_id": "L1", "points": 20, "card_code": "LC-1", "balance": 100},
        time=at(12),
    ),
    event(
        "redemption.rollback.succeeded",
        "alice",
        {"redemption_id": "R1", "voucher": GIFT, "amount": 1500, "balance": 5000},
        time=at(13),
    ),
    event(
        "customer.update",
        "bob",
        {"email": "bob@example.com", "metadata": {"lang": "de"}},
        time=at(14),
    ),
    event("loyalty.tier.changed", "alice", {"campaign_id": "L1", "tier": "gold"}, time=at(15)),
    event("customer.delete", "bob", time=at(16)),
    event("customer.update", "carol", {"name": "Carol"}, time=at(17)),
    event("customer.erase", "carol", time=at(18)),
    event("customer.create", "carol", {"name": "Carol again"}, time=at(19)),
    POINTS_GAINED,  # redelivered: must not count twice
    event("customer.update", "alice", {"name": "Old Alice"}, time=at(0.5)),  # late and stale
]


def expected() -> dict[str, dict[str, Any]]:
    alice = blank("alice", 0.5, 15)
    alice.update(
        name="Alice",
        email="alice@example.com",
        metadata={"lang": "en"},
        tags=[{"id": "vip"}],
        status="repeat",
        total_orders_count=2,
        order_count=2,
        last_order_at=iso(11),
        loyalty_balance=100,
    )
    alice["summary"]["orders"] = {
        "total_amount": 6000,
        "total_count": 2,
        "average_amount": 3000,
        "last_order_amount": 1000,
        "last_order_date": iso(11),
    }
    alice["summary"]["redemptions"].update(
        total_redeemed=1,
        total_succeeded=1,
        total_rolled_back=1,
        total_rollback_succeeded=1,
        gift={"redeemed_amount": 0, "amount_to_go": 5000},
        loyalty_card={"redeemed_points": 0, "points_to_go": 100},
    )
    alice["loyalty"] = {
        "points": 100,
        "referred_customers": 1,
        "campaigns": {
            "L1": {"points": 100, "referred_customers": 0, "loyalty_tier": "gold"},
            "REF": {"points": 0, "referred_customers": 1},
        },
    }
    bob = blank("bob", 2, 16)
    bob.update(
        name="Bob",
        email="bob@example.com",
        metadata={"lang": "de"},
        deleted_at=iso(16),
        referrals={
            "total": 1,
            "campaigns": [
                {
                    "campaign_id": "REF",
                    "referrer_id": "alice",
                    "related_object_id": "R-ref",
                    "related_object_type": "redemption",
                    "date": iso(7),
                }
            ],
        },
    )
    carol = blank("carol", 19, 19)
    carol["name"] = "Carol again"
    return {"alice": alice, "bob": bob, "carol": carol}


async def test_a_day_in_the_life_of_three_customers(
    bus: Bus, worker: None, store: CustomerStore
) -> None:
    for item in DAY:
        await bus.send(item)
    final = expected()

    def settled() -> bool:
        return all(
            (last := bus.updates.last_or_none(c)) is not None and last["data"]["customer"] == record
            for c, record in final.items()
        )

    try:
        await bus.wait_for(settled, within=30, what="the expected final records")
    finally:
        for customer, record in final.items():
            last = bus.updates.last_or_none(customer)
            assert last is not None, customer
            assert last["data"]["customer"] == record, customer

    for customer in final:
        versions = bus.updates.versions(customer)
        assert versions == sorted(versions), f"{customer}: versions out of order {versions}"
        assert versions[-1] == await store.version(customer)
    carol = bus.updates.events("carol")
    tombstone = carol.index(None)  # the erase was published as a tombstone ...
    erased_version = bus.updates.versions("carol")[tombstone]
    assert (
        dict(bus.updates.by_customer["carol"][tombstone].headers)["ce_type"] == b"customer.erased"
    )
    assert all(v > erased_version for v in bus.updates.versions("carol")[tombstone + 1 :])
    cause = bus.updates.last("alice")["data"]["cause"]  # type: ignore[index]
    alices = {
        (e["id"], e["source"], e["type"])
        for e in DAY
        if "alice" in (e["subject"], e.get("data", {}).get("referrer_id"))
    }
    assert (cause["id"], cause["source"], cause["type"]) in alices  # topics interleave freely
