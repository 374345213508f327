"""Hand-computed sanity checks for the reference oracle in tests/reference.py."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.reference import format_time, parse_time_us, reference_records
from tests.support.records import blank_record

SCHEMA_PATH = Path(__file__).parent / "samples" / "voucherify_customer_schema.json"
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

_ids = itertools.count()
_BASE = datetime(2024, 1, 1, tzinfo=UTC)


def T(sec: int) -> str:
    """Input time: 2024-01-01T00:00:00Z + sec seconds (RFC 3339, 'Z')."""
    return (_BASE + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%SZ")


def F(sec: int) -> str:
    """Expected rendering of T(sec)."""
    return (_BASE + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def ev(
    type_: str,
    subject: str,
    when: str,
    data: dict[str, Any] | None = None,
    *,
    id: str | None = None,
    source: str = "test",
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": id if id is not None else f"ev-{next(_ids):06d}",
        "source": source,
        "type": type_,
        "time": when,
        "subject": subject,
        "data": data if data is not None else {},
    }


def one(events: list[dict[str, Any]], cid: str) -> dict[str, Any]:
    rec = reference_records(events)[cid]
    assert rec is not None
    return rec


def redemption(
    type_: str,
    cid: str,
    when: str,
    rid: str,
    vtype: str,
    *,
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    voucher: dict[str, Any] = {"type": vtype, "campaign_id": "camp"}
    if "code" in extra:
        voucher["code"] = extra.pop("code")
    return ev(
        f"redemption.{type_}",
        cid,
        when,
        {"redemption_id": rid, "voucher": voucher, **extra},
        id=id,
    )


# --------------------------------------------------------------------------- time


def test_time_parsing_and_ms_formatting() -> None:
    assert parse_time_us("1970-01-01T00:00:00Z") == 0
    assert parse_time_us("1970-01-01T01:00:00+01:00") == 0
    assert parse_time_us("1969-12-31T21:30:00-02:30") == 0
    assert parse_time_us("1970-01-01T00:00:01") == 1_000_000  # naive => UTC
    assert parse_time_us("1970-01-01T00:00:00.000001Z") == 1
    assert parse_time_us("1970-01-01T00:00:00.5Z") == 500_000
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_time(999) == "1970-01-01T00:00:00.000Z"
    assert format_time(1_999_999) == "1970-01-01T00:00:01.999Z"  # truncated, not rounded
    assert (
        format_time(parse_time_us("2024-03-01T10:00:00.123999-02:30")) == "2024-03-01T12:30:00.123Z"
    )

    rec = one(
        [
            ev("customer.update", "c", "2024-01-01T00:00:00.999999Z"),
            ev("customer.update", "c", "2024-01-02T01:00:00.0005+01:00"),
        ],
        "c",
    )
    assert rec["created_at"] == "2024-01-01T00:00:00.999Z"
    assert rec["updated_at"] == "2024-01-02T00:00:00.000Z"


def test_minimal_record_shape() -> None:
    assert reference_records([ev("customer.create", "c1", T(5), {"name": "Ann"})]) == {
        "c1": {**blank_record("c1", F(5), F(5)), "name": "Ann"}
    }


# --------------------------------------------------------------------------- profile


def test_profile_lww_with_ties() -> None:
    events = [
        # later time wins even with a smaller id
        ev("customer.update", "c", T(1), {"name": "old"}, id="zzz"),
        ev("customer.update", "c", T(2), {"name": "new"}, id="aaa"),
        # same time: larger id wins
        ev("customer.update", "c", T(3), {"email": "b@x"}, id="e2"),
        ev("customer.update", "c", T(3), {"email": "a@x"}, id="e1"),
        # same time and id: larger source wins
        ev("customer.update", "c", T(4), {"phone": "2"}, id="same", source="svc-b"),
        ev("customer.update", "c", T(4), {"phone": "1"}, id="same", source="svc-a"),
        # create is an upsert too and writes only what it carries
        ev(
            "customer.create",
            "c",
            T(5),
            {"gender": 2, "dial_code": 966, "is_blacklisted": False},
        ),
        ev("customer.update", "c", T(0), {"gender": 1, "house_account_limit": 1000}),
    ]
    rec = one(events, "c")
    assert rec["name"] == "new"
    assert rec["email"] == "b@x"
    assert rec["phone"] == "2"
    assert rec["gender"] == 2
    assert rec["dial_code"] == 966
    assert rec["is_blacklisted"] is False
    assert rec["house_account_limit"] == 1000
    assert rec["created_at"] == F(0)
    assert rec["updated_at"] == F(5)
    assert one(list(reversed(events)), "c") == rec


def test_null_clears_field() -> None:
    events = [
        ev("customer.update", "c", T(1), {"name": "Ann", "description": None}),
        ev("customer.update", "c", T(2), {"name": None, "description": "vip"}),
    ]
    rec = one(events, "c")
    assert "name" not in rec
    assert rec["description"] == "vip"


def test_birthday_alias() -> None:
    rec = one([ev("customer.update", "a", T(1), {"birthday": "1990-05-06"})], "a")
    assert rec["birthdate"] == "1990-05-06"
    assert "birthday" not in rec
    rec = one(
        [
            ev(
                "customer.update",
                "b",
                T(1),
                {"birthday": "1990-05-06", "birthdate": "1991-01-02"},
            )
        ],
        "b",
    )
    assert rec["birthdate"] == "1991-01-02"
    # the alias and the canonical name are one register
    rec = one(
        [
            ev("customer.update", "c", T(1), {"birthdate": "1991-01-02"}),
            ev("customer.update", "c", T(2), {"birthday": "1980-12-31"}),
        ],
        "c",
    )
    assert rec["birthdate"] == "1980-12-31"


def test_address_subfield_registers_and_null() -> None:
    full = {
        "line_1": "L1",
        "line_2": "L2",
        "city": "C1",
        "state": "S1",
        "postal_code": "P1",
        "country": "X",
    }
    rec = one(
        [
            ev("customer.update", "a", T(1), {"address": full}),
            ev("customer.update", "a", T(2), {"address": None}),
            ev("customer.update", "a", T(3), {"address": {"city": "C3"}}),
        ],
        "a",
    )
    assert rec["address"] == {"city": "C3"}

    rec = one(
        [
            ev("customer.update", "b", T(1), {"address": full}),
            ev("customer.update", "b", T(2), {"address": {"city": None, "state": "S2"}}),
            # older null loses against newer sub-field writes
            ev("customer.update", "b", T(0), {"address": None}),
        ],
        "b",
    )
    assert rec["address"] == {
        "line_1": "L1",
        "line_2": "L2",
        "state": "S2",
        "postal_code": "P1",
        "country": "X",
    }

    rec = one(
        [
            ev("customer.update", "c", T(1), {"address": {"city": "C"}}),
            ev("customer.update", "c", T(2), {"address": None}),
        ],
        "c",
    )
    assert "address" not in rec


def test_metadata_per_key_and_clear() -> None:
    rec = one(
        [
            ev("customer.update", "a", T(1), {"metadata": {"x": 1, "y": 2}}),
            ev(
                "customer.update",
                "a",
                T(2),
                {"metadata": {"y": None, "z": [1, {"k": None}]}},
            ),
            ev("customer.update", "a", T(0), {"metadata": {"y": 0}}),
        ],
        "a",
    )
    assert rec["metadata"] == {"x": 1, "z": [1, {"k": None}]}

    events = [
        ev("customer.update", "b", T(1), {"metadata": {"old": True, "again": 1}}),
        ev("customer.update", "b", T(3), {"metadata": {"new": "v"}}),
        ev("customer.update", "b", T(4), {"metadata": {"again": 2}}),
        ev("customer.update", "b", T(2), {"metadata": None}),  # clear-all at T(2)
    ]
    assert one(events, "b")["metadata"] == {"new": "v", "again": 2}

    # a write tied on time but with a smaller id than the clear is older than it
    events = [
        ev("customer.update", "c", T(5), {"metadata": {"k": 1}}, id="a"),
        ev("customer.update", "c", T(5), {"metadata": None}, id="b"),
    ]
    assert one(events, "c")["metadata"] == {}


def test_tags_normalised_and_whole_list_register() -> None:
    rec = one(
        [
            ev("customer.update", "a", T(1), {"tags": ["zz"]}),
            ev(
                "customer.update",
                "a",
                T(2),
                {"tags": ["t1", {"id": "t2"}, "t1", {"id": "t3"}, {"id": "t2"}]},
            ),
        ],
        "a",
    )
    assert rec["tags"] == [{"id": "t1"}, {"id": "t2"}, {"id": "t3"}]

    rec = one(
        [
            ev("customer.update", "b", T(1), {"tags": ["t1"]}),
            ev("customer.update", "b", T(2), {"tags": None}),
        ],
        "b",
    )
    assert "tags" not in rec
    assert one([ev("customer.update", "c", T(1), {"tags": []})], "c")["tags"] == []


def test_addresses_whole_list() -> None:
    old = [
        {"id": "a1", "delivery_zone": {"id": "z1"}},
        {"id": "a2", "delivery_zone": {"id": "z2"}},
    ]
    new = [{"id": "a3", "delivery_zone": {"id": "z3"}}]
    rec = one(
        [
            ev("customer.update", "c", T(2), {"addresses": new}),
            ev("customer.update", "c", T(1), {"addresses": old}),
        ],
        "c",
    )
    assert rec["addresses"] == new


def test_delete_and_restore() -> None:
    rec = one(
        [
            ev("customer.delete", "a", "2024-01-01T00:00:02.123456Z"),
            ev("customer.restore", "a", T(1)),  # older restore loses
        ],
        "a",
    )
    assert rec["deleted_at"] == "2024-01-01T00:00:02.123Z"
    rec = one(
        [
            ev("customer.delete", "b", T(2)),
            ev("customer.restore", "b", T(3)),
        ],
        "b",
    )
    assert "deleted_at" not in rec
    # tie on time: larger id wins
    rec = one(
        [
            ev("customer.restore", "c", T(2), id="x2"),
            ev("customer.delete", "c", T(2), id="x1"),
        ],
        "c",
    )
    assert "deleted_at" not in rec


# --------------------------------------------------------------------------- orders


def order(
    type_: str,
    cid: str,
    when: str,
    oid: str,
    amount: int,
    *,
    id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return ev(f"order.{type_}", cid, when, {"order_id": oid, "amount": amount, **extra}, id=id)


def test_orders_summary() -> None:
    events = [
        # o1: created then paid; no created_at anywhere => date = earliest event time of o1
        order("created", "c", T(10), "o1", 100),
        order("paid", "c", T(30), "o1", 120),
        # o2: paid then canceled => not counted
        order("paid", "c", T(20), "o2", 200),
        order("canceled", "c", T(50), "o2", 200),
        # o3: date = created_at of the latest event carrying one (not of the latest event)
        order("created", "c", T(5), "o3", 40, created_at="2023-12-01T00:00:00Z"),
        order(
            "paid",
            "c",
            T(40),
            "o3",
            50,
            created_at="2024-02-01T10:00:00.5+02:00",
            currency="EUR",
        ),
        order("fulfilled", "c", T(60), "o3", 50),
        # o4: created only => not counted
        order("created", "c", T(70), "o4", 999),
    ]
    rec = one(events, "c")
    assert rec["summary"]["orders"] == {
        "total_amount": 170,
        "total_count": 2,
        "average_amount": 85,
        "last_order_amount": 50,
        "last_order_date": "2024-02-01T08:00:00.500Z",
    }
    assert rec["status"] == "repeat"
    assert rec["total_orders_count"] == 2
    assert rec["order_count"] == 2
    assert rec["last_order_at"] == "2024-02-01T08:00:00.500Z"
    assert rec["created_at"] == F(5)
    assert rec["updated_at"] == F(70)

    # without o3, the last order is o1, dated by its earliest event
    rec = one([e for e in events if e["data"]["order_id"] != "o3"], "c")
    assert rec["summary"]["orders"]["last_order_date"] == F(10)
    assert rec["summary"]["orders"]["last_order_amount"] == 120
    assert rec["status"] == "acquired"


def test_last_order_tie_by_order_id_and_status_tie_by_id() -> None:
    events = [
        order("paid", "c", T(1), "o-a", 10, created_at=T(100)),
        order("paid", "c", T(2), "o-b", 20, created_at=T(100)),
        order("paid", "c", T(3), "o-0", 99, created_at=T(99)),
        # same time: the event with the larger id decides the status (canceled)
        order("paid", "c", T(4), "o-x", 1000, id="k1"),
        order("canceled", "c", T(4), "o-x", 1000, id="k2"),
    ]
    orders = one(events, "c")["summary"]["orders"]
    assert orders["last_order_amount"] == 20
    assert orders["last_order_date"] == F(100)
    assert orders["total_count"] == 3
    assert orders["total_amount"] == 129
    assert orders["average_amount"] == 43


@pytest.mark.parametrize(
    ("amounts", "average"),
    [
        ([2, 3], 3),
        ([1, 1, 2], 1),
        ([1, 2, 2], 2),
        ([0, 1], 1),
        ([0, 0, 1], 0),
        ([7], 7),
    ],
)
def test_average_rounds_half_up(amounts: list[int], average: int) -> None:
    events = [order("paid", "c", T(i), f"o{i}", a) for i, a in enumerate(amounts)]
    assert one(events, "c")["summary"]["orders"]["average_amount"] == average


# --------------------------------------------------------------------------- redemptions


def test_redemption_natural_key_first_wins() -> None:
    events = [
        redemption("succeeded", "c", T(2), "r1", "GIFT_VOUCHER", amount=500),
        redemption(
            "succeeded", "c", T(3), "r1", "GIFT_VOUCHER", amount=999
        ),  # same key, later: ignored
        redemption("succeeded", "c", T(4), "r2", "GIFT_VOUCHER", id="b", amount=100),
        redemption(
            "succeeded", "c", T(4), "r2", "GIFT_VOUCHER", id="a", amount=300
        ),  # tie: smaller id first
        redemption("rollback.succeeded", "c", T(5), "r1", "GIFT_VOUCHER", amount=500),
        redemption("failed", "c", T(6), "r3", "LOYALTY_CARD", points=40),
        redemption("succeeded", "c", T(7), "r4", "LOYALTY_CARD", points=70),
        redemption("rollback.failed", "c", T(8), "r4", "LOYALTY_CARD", points=70),
        redemption("rollback.failed", "c", T(9), "r4", "LOYALTY_CARD", points=70),  # same key again
        redemption("succeeded", "c", T(10), "r5", "DISCOUNT_VOUCHER", amount=1000),
        redemption("succeeded", "c", T(11), "r6", "GIFT_VOUCHER"),  # no amount => 0
        redemption("rollback.succeeded", "c", T(12), "r7", "LOYALTY_CARD", points=15),
    ]
    assert one(events, "c")["summary"]["redemptions"] == {
        "total_redeemed": 6,
        "total_failed": 1,
        "total_succeeded": 5,
        "total_rolled_back": 3,
        "total_rollback_failed": 1,
        "total_rollback_succeeded": 2,
        "gift": {"redeemed_amount": 500 + 300 - 500, "amount_to_go": 0},
        "loyalty_card": {"redeemed_points": 70 - 15, "points_to_go": 0},
    }


def test_card_balances() -> None:
    events = [
        # gift G1: latest balance-carrying event wins, even a natural-key duplicate
        redemption(
            "succeeded",
            "c",
            T(1),
            "r1",
            "GIFT_VOUCHER",
            code="G1",
            amount=100,
            balance=1000,
        ),
        redemption(
            "succeeded",
            "c",
            T(3),
            "r1",
            "GIFT_VOUCHER",
            code="G1",
            amount=300,
            balance=700,
        ),
        redemption("rollback.failed", "c", T(4), "r1", "GIFT_VOUCHER", code="G1"),  # no balance
        redemption("succeeded", "c", T(2), "r2", "GIFT_VOUCHER", code="G2", balance=300),
        redemption("succeeded", "c", T(9), "r3", "GIFT_VOUCHER", balance=5000),  # no code
        redemption("succeeded", "c", T(9), "r4", "DISCOUNT_VOUCHER", code="D1", balance=9999),
        # loyalty L1: points event then a later redemption of the same card
        ev(
            "loyalty.points.added",
            "c",
            T(1),
            {"campaign_id": "lc", "points": 100, "card_code": "L1", "balance": 100},
        ),
        redemption(
            "succeeded",
            "c",
            T(6),
            "r5",
            "LOYALTY_CARD",
            code="L1",
            points=40,
            balance=60,
        ),
        # same code as a gift card, but a different (loyalty) card
        ev(
            "loyalty.points.added",
            "c",
            T(2),
            {"campaign_id": "lc", "points": 11, "card_code": "G1", "balance": 11},
        ),
        ev(
            "loyalty.points.subtracted",
            "c",
            T(3),
            {"campaign_id": "lc", "points": 1, "card_code": "L2"},
        ),
        ev(
            "loyalty.points.added",
            "c",
            T(4),
            {"campaign_id": "lc", "points": 1, "card_code": "L3", "balance": 2},
            id="b",
        ),
        ev(
            "loyalty.points.added",
            "c",
            T(4),
            {"campaign_id": "lc", "points": 1, "card_code": "L3", "balance": 1},
            id="a",
        ),
        ev(
            "loyalty.points.added",
            "c",
            T(5),
            {"campaign_id": "lc", "points": 7, "balance": 777},
        ),  # no card
    ]
    red = one(events, "c")["summary"]["redemptions"]
    assert red["gift"] == {"redeemed_amount": 100, "amount_to_go": 700 + 300}
    assert red["loyalty_card"] == {"redeemed_points": 40, "points_to_go": 60 + 11 + 2}


# --------------------------------------------------------------------------- loyalty


def test_loyalty_campaigns_and_tiers() -> None:
    events = [
        ev("loyalty.tier.changed", "c", T(5), {"campaign_id": "c1", "tier": "gold"}),
        ev("loyalty.tier.changed", "c", T(4), {"campaign_id": "c1", "tier": "silver"}),
        ev(
            "loyalty.points.added",
            "c",
            T(1),
            {"campaign_id": "c1", "points": 100, "reason": "x"},
        ),
        ev("loyalty.points.subtracted", "c", T(2), {"campaign_id": "c1", "points": 30}),
        ev("loyalty.points.added", "c", T(3), {"campaign_id": "c2", "points": 5}),
        ev("loyalty.points.subtracted", "c", T(3), {"campaign_id": "c2", "points": 10}),
        ev(
            "loyalty.tier.changed",
            "c",
            T(6),
            {"campaign_id": "c3", "tier": "bronze"},
            id="y",
        ),
        ev(
            "loyalty.tier.changed",
            "c",
            T(6),
            {"campaign_id": "c3", "tier": "copper"},
            id="x",
        ),
    ]
    rec = one(events, "c")
    assert rec["loyalty"] == {
        "points": 65,
        "referred_customers": 0,
        "campaigns": {
            "c1": {"points": 70, "referred_customers": 0, "loyalty_tier": "gold"},
            "c2": {"points": -5, "referred_customers": 0},
            "c3": {"points": 0, "referred_customers": 0, "loyalty_tier": "bronze"},
        },
    }
    assert rec["loyalty_balance"] == 65


def test_referrals_both_sides() -> None:
    def referral(referee: str, referrer: str, campaign: str, when: str, obj: str) -> dict[str, Any]:
        return ev(
            "referral.completed",
            referee,
            when,
            {
                "campaign_id": campaign,
                "referrer_id": referrer,
                "related_object_id": obj,
                "related_object_type": "redemption",
            },
        )

    events = [
        referral("bob", "alice", "camp-b", T(2), "r1"),
        referral(
            "bob", "alice", "camp-b", T(3), "r2"
        ),  # same (campaign, referee): once, first wins
        referral("carol", "alice", "camp-b", T(4), "r3"),
        referral("bob", "dave", "camp-a", T(2), "r4"),  # same date as camp-b: campaign_id order
        referral("bob", "alice", "camp-c", T(1), "r5"),
        ev(
            "loyalty.points.added",
            "alice",
            T(0),
            {"campaign_id": "camp-x", "points": 3},
        ),
    ]
    recs = reference_records(events)
    assert set(recs) == {"alice", "bob", "carol", "dave"}

    alice = recs["alice"]
    assert alice is not None
    assert alice["loyalty"] == {
        "points": 3,
        "referred_customers": 3,
        "campaigns": {
            "camp-b": {"points": 0, "referred_customers": 2},
            "camp-c": {"points": 0, "referred_customers": 1},
            "camp-x": {"points": 3, "referred_customers": 0},
        },
    }
    assert alice["referrals"] == {"total": 0, "campaigns": []}
    assert (alice["created_at"], alice["updated_at"]) == (F(0), F(4))

    bob = recs["bob"]
    assert bob is not None
    assert bob["loyalty"] == {"points": 0, "referred_customers": 0, "campaigns": {}}
    assert bob["referrals"] == {
        "total": 3,
        "campaigns": [
            {
                "campaign_id": "camp-c",
                "referrer_id": "alice",
                "related_object_id": "r5",
                "related_object_type": "redemption",
                "date": F(1),
            },
            {
                "campaign_id": "camp-a",
                "referrer_id": "dave",
                "related_object_id": "r4",
                "related_object_type": "redemption",
                "date": F(2),
            },
            {
                "campaign_id": "camp-b",
                "referrer_id": "alice",
                "related_object_id": "r1",
                "related_object_type": "redemption",
                "date": F(2),
            },
        ],
    }
    assert (bob["created_at"], bob["updated_at"]) == (F(1), F(3))

    dave = recs["dave"]
    assert dave is not None
    assert dave["loyalty"]["referred_customers"] == 1
    assert dave["loyalty"]["campaigns"] == {"camp-a": {"points": 0, "referred_customers": 1}}
    assert (dave["created_at"], dave["updated_at"]) == (F(2), F(2))
    assert dave["metadata"] == {}


# --------------------------------------------------------------------------- erase


def test_erase() -> None:
    def referral(referee: str, referrer: str, when: str) -> dict[str, Any]:
        return ev(
            "referral.completed",
            referee,
            when,
            {
                "campaign_id": "rc",
                "referrer_id": referrer,
                "related_object_id": "o",
                "related_object_type": "order",
            },
        )

    events = [
        # c1: everything up to and including the erase time is ignored; a fresh record after
        ev(
            "customer.create",
            "c1",
            T(1),
            {"name": "Ann", "metadata": {"a": 1}, "tags": ["t"]},
        ),
        ev("loyalty.points.added", "c1", T(2), {"campaign_id": "lc", "points": 10}),
        order("paid", "c1", T(2), "o1", 100),
        ev("customer.erase", "c1", T(0)),
        ev("customer.erase", "c1", T(3)),
        ev("customer.update", "c1", T(3), {"email": "at@erase"}),  # time == W: ignored
        ev("customer.update", "c1", T(5), {"phone": "555"}),
        # c2: nothing after the erase => None
        ev("customer.create", "c2", T(1), {"name": "Bob"}),
        ev("customer.erase", "c2", T(2)),
        # c3: only an erase => None
        ev("customer.erase", "c3", T(2)),
        # c4: two erases, the later one is the watermark
        ev("customer.erase", "c4", T(2)),
        ev("customer.update", "c4", T(4), {"name": "between"}),
        ev("customer.erase", "c4", T(6)),
        ev("customer.update", "c4", T(7), {"email": "after"}),
        # referrals: each side checks its own watermark
        referral("e1", "e2", T(4)),
        ev("customer.erase", "e1", T(5)),
        referral("e4", "e3", T(4)),
        ev("customer.erase", "e3", T(5)),
    ]
    recs = reference_records(events)
    c1 = recs["c1"]
    assert c1 is not None
    assert c1["phone"] == "555"
    for gone in ("name", "email", "tags"):
        assert gone not in c1
    assert c1["metadata"] == {}
    assert c1["loyalty"]["points"] == 0
    assert c1["summary"]["orders"]["total_count"] == 0
    assert (c1["created_at"], c1["updated_at"]) == (F(5), F(5))

    assert recs["c2"] is None
    assert recs["c3"] is None

    c4 = recs["c4"]
    assert c4 is not None
    assert "name" not in c4
    assert c4["email"] == "after"
    assert c4["created_at"] == F(7)

    assert recs["e1"] is None
    e2 = recs["e2"]
    assert e2 is not None
    assert e2["loyalty"]["referred_customers"] == 1
    assert recs["e3"] is None
    e4 = recs["e4"]
    assert e4 is not None
    assert e4["referrals"]["total"] == 1
    assert e4["referrals"]["campaigns"][0]["referrer_id"] == "e3"


# --------------------------------------------------------------------------- set semantics


def test_dedupe_by_source_and_id() -> None:
    e = ev(
        "loyalty.points.added",
        "c",
        T(1),
        {"campaign_id": "lc", "points": 10},
        id="same",
        source="a",
    )
    other_source = dict(e, source="b")
    assert one([e, e, dict(e)], "c")["loyalty"]["points"] == 10
    assert one([e, e, other_source], "c")["loyalty"]["points"] == 20
    with pytest.raises(ValueError, match="different content"):
        reference_records([e, dict(e, data={"campaign_id": "lc", "points": 11})])


def rich_events() -> list[dict[str, Any]]:
    return [
        ev(
            "customer.create",
            "rich",
            "2022-08-09T09:50:53.620Z",
            {
                "source_id": "jane.smith@email.com",
                "name": "Jane Smith",
                "description": "A nice customer",
                "email": "jane.smith@email.com",
                "phone": "+1 933 222 3333",
                "dial_code": 1,
                "gender": 2,
                "birthday": "2022-01-02",
                "address": {
                    "line_1": "123 Main St.",
                    "city": "New York",
                    "state": "NY",
                    "postal_code": "10001",
                    "country": "United States",
                },
                "metadata": {"lang": "en", "test": False, "nested": {"a": [1, 2]}},
                "reference": "ext-1",
                "reference_origin": "crm",
                "customer_group": "grp-1",
                "tags": ["vip", {"id": "b2b"}],
                "addresses": [{"id": "a1", "delivery_zone": {"id": "z1"}}],
                "is_blacklisted": False,
                "is_loyalty_enabled": True,
                "is_house_account_enabled": True,
                "house_account_limit": 1000,
                "house_account_balance": 0,
            },
        ),
        ev("customer.delete", "rich", "2022-08-10T00:00:00Z"),
        order("created", "rich", "2022-08-20T10:00:00+02:00", "o1", 70000, currency="USD"),
        order("paid", "rich", "2022-08-20T09:00:00Z", "o1", 70000),
        order(
            "fulfilled",
            "rich",
            "2022-08-30T11:51:08.029Z",
            "o2",
            140000,
            created_at="2022-08-30T11:51:08.029Z",
        ),
        redemption(
            "succeeded",
            "rich",
            "2022-08-21T00:00:00Z",
            "r1",
            "GIFT_VOUCHER",
            code="G",
            amount=500,
            balance=1500,
        ),
        redemption(
            "succeeded",
            "rich",
            "2022-08-22T00:00:00Z",
            "r2",
            "LOYALTY_CARD",
            code="L",
            points=20,
            balance=80,
        ),
        redemption(
            "rollback.succeeded",
            "rich",
            "2022-08-23T00:00:00Z",
            "r2",
            "LOYALTY_CARD",
            code="L",
            points=20,
            balance=100,
        ),
        ev(
            "loyalty.points.added",
            "rich",
            "2022-08-24T00:00:00Z",
            {
                "campaign_id": "Fall Campaign",
                "points": 100,
                "card_code": "L",
                "balance": 200,
            },
        ),
        ev(
            "loyalty.tier.changed",
            "rich",
            "2022-08-25T00:00:00Z",
            {"campaign_id": "Fall Campaign", "tier": "gold"},
        ),
        ev(
            "referral.completed",
            "friend",
            "2022-08-26T00:00:00Z",
            {
                "campaign_id": "Fall Campaign",
                "referrer_id": "rich",
                "related_object_id": "r_1",
                "related_object_type": "redemption",
            },
        ),
        ev(
            "referral.completed",
            "rich",
            "2022-08-30T10:19:39.196Z",
            {
                "campaign_id": "camp_1",
                "referrer_id": "someone",
                "related_object_id": "r_2",
                "related_object_type": "redemption",
            },
        ),
    ]


def test_rich_record_and_schema() -> None:
    recs = reference_records(rich_events())
    assert set(recs) == {"rich", "friend", "someone"}
    rec = recs["rich"]
    assert rec is not None
    assert rec["tags"] == [{"id": "vip"}, {"id": "b2b"}]
    assert rec["birthdate"] == "2022-01-02"
    assert rec["deleted_at"] == "2022-08-10T00:00:00.000Z"
    assert rec["summary"]["orders"] == {
        "total_amount": 210000,
        "total_count": 2,
        "average_amount": 105000,
        "last_order_amount": 140000,
        "last_order_date": "2022-08-30T11:51:08.029Z",
    }
    assert rec["summary"]["redemptions"]["gift"] == {
        "redeemed_amount": 500,
        "amount_to_go": 1500,
    }
    assert rec["summary"]["redemptions"]["loyalty_card"] == {
        "redeemed_points": 0,
        "points_to_go": 200,
    }
    assert rec["loyalty"] == {
        "points": 100,
        "referred_customers": 1,
        "campaigns": {
            "Fall Campaign": {
                "points": 100,
                "referred_customers": 1,
                "loyalty_tier": "gold",
            }
        },
    }
    assert rec["referrals"]["total"] == 1
    assert rec["created_at"] == "2022-08-09T09:50:53.620Z"
    assert rec["updated_at"] == "2022-08-30T11:51:08.029Z"
    assert rec["last_order_at"] == "2022-08-30T11:51:08.029Z"

    schema = json.loads(SCHEMA_PATH.read_text())["resolved_flattened_jsonschema"]
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for cid, r in recs.items():
        assert r is not None
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(r)]
        assert errors == [], (cid, errors)
        json.dumps(r)  # plain JSON-compatible
        for key in ("created_at", "updated_at", "deleted_at", "last_order_at"):
            if key in r:
                assert TS_RE.match(r[key]), (key, r[key])


def test_order_independence() -> None:
    events = rich_events()
    expected = reference_records(events)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = events + events[:3]
        rng.shuffle(shuffled)
        assert reference_records(shuffled) == expected


def test_ten_thousand_events_is_fast() -> None:
    rng = random.Random(1)
    events: list[dict[str, Any]] = []
    for i in range(10_000):
        cid = f"c{rng.randrange(100)}"
        when = T(rng.randrange(100_000))
        kind = rng.randrange(6)
        if kind == 0:
            events.append(
                ev(
                    "customer.update",
                    cid,
                    when,
                    {"name": f"n{i}", "metadata": {f"k{i % 7}": i}},
                )
            )
        elif kind == 1:
            events.append(
                order(
                    rng.choice(["created", "paid", "fulfilled", "canceled"]),
                    cid,
                    when,
                    f"o{rng.randrange(50)}",
                    rng.randrange(1000),
                )
            )
        elif kind == 2:
            events.append(
                redemption(
                    rng.choice(["succeeded", "failed", "rollback.succeeded"]),
                    cid,
                    when,
                    f"r{rng.randrange(50)}",
                    "GIFT_VOUCHER",
                    code=f"g{rng.randrange(5)}",
                    amount=rng.randrange(100),
                    balance=rng.randrange(1000),
                )
            )
        elif kind == 3:
            events.append(
                ev(
                    "loyalty.points.added",
                    cid,
                    when,
                    {
                        "campaign_id": f"lc{rng.randrange(3)}",
                        "points": 1 + rng.randrange(10),
                    },
                )
            )
        elif kind == 4:
            events.append(
                ev(
                    "referral.completed",
                    cid,
                    when,
                    {
                        "campaign_id": "rc",
                        "referrer_id": f"c{rng.randrange(100)}",
                        "related_object_id": "x",
                        "related_object_type": "order",
                    },
                )
            )
        else:
            events.append(
                ev(
                    rng.choice(["customer.erase", "customer.delete", "customer.restore"]),
                    cid,
                    when,
                )
            )
    started = time.perf_counter()
    recs = reference_records(events)
    assert time.perf_counter() - started < 3.0
    assert len(recs) == 100
