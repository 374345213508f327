"""The customer record, rendered from a customer's stored state (pure, no I/O).

Stored state is a flat mapping of field names (see `fields`) to strings; the record is the
public shape of DESIGN.md §4. Rendering the state before and after a change and diffing the
two gives the exact `changed` paths, derived fields included.
"""

import json
from collections.abc import Iterator, Mapping
from typing import Any

from worker.domain import fields as f
from worker.domain.clock import format_micros

JsonDict = dict[str, Any]


def _int(state: Mapping[str, str], name: str) -> int:
    return int(state.get(name, 0))


def _campaign(campaigns: JsonDict, campaign_id: str) -> JsonDict:
    entry: JsonDict = campaigns.setdefault(campaign_id, {"points": 0, "referred_customers": 0})
    return entry


def _half_up(total: int, count: int) -> int:
    """Average rounded half up; amounts are non-negative so this is exact integer math."""
    return (2 * total + count) // (2 * count) if count else 0


def render(customer_id: str, state: Mapping[str, str]) -> JsonDict | None:
    """The record for `state`, or None when the customer has no state (never seen, erased)."""
    if f.CREATED_AT not in state:
        return None
    record: JsonDict = {"id": customer_id, "object": "customer"}
    address: JsonDict = {}
    metadata: JsonDict = {}
    campaigns: JsonDict = {}
    referrals: list[JsonDict] = []
    for name, raw in state.items():
        if name.startswith(f.PROFILE):
            key = name[len(f.PROFILE) :]
            if key.startswith("address."):
                address[key[len("address.") :]] = json.loads(raw)
            elif key == "tags":
                record["tags"] = [{"id": tag} for tag in json.loads(raw)]
            else:
                record[key] = json.loads(raw)
        elif name.startswith(f.METADATA):
            metadata[name[len(f.METADATA) :]] = json.loads(raw)
        elif name.startswith(f.CAMPAIGN_POINTS):
            _campaign(campaigns, name[len(f.CAMPAIGN_POINTS) :])["points"] = int(raw)
        elif name.startswith(f.CAMPAIGN_REFERRED):
            entry = _campaign(campaigns, name[len(f.CAMPAIGN_REFERRED) :])
            entry["referred_customers"] = int(raw)
        elif name.startswith(f.TIER):
            _campaign(campaigns, name[len(f.TIER) :])["loyalty_tier"] = json.loads(raw)
        elif name.startswith(f.REFERRAL):
            referrals.append(json.loads(raw))
    if address:
        record["address"] = dict(sorted(address.items()))
    record["metadata"] = dict(sorted(metadata.items()))
    record["system_metadata"] = {}

    total_amount, total_count = (
        _int(state, f.ORDERS_TOTAL_AMOUNT),
        _int(state, f.ORDERS_TOTAL_COUNT),
    )
    orders: JsonDict = {
        "total_amount": total_amount,
        "total_count": total_count,
        "average_amount": _half_up(total_amount, total_count),
        "last_order_amount": _int(state, f.ORDERS_LAST_AMOUNT),
    }
    last_order_at = None
    if f.ORDERS_LAST_DATE in state:
        last_order_at = orders["last_order_date"] = format_micros(int(state[f.ORDERS_LAST_DATE]))
    succeeded, failed = _int(state, f.REDEMPTIONS_SUCCEEDED), _int(state, f.REDEMPTIONS_FAILED)
    rb_ok, rb_failed = _int(state, f.ROLLBACKS_SUCCEEDED), _int(state, f.ROLLBACKS_FAILED)
    record["summary"] = {
        "redemptions": {
            "total_redeemed": succeeded + failed,
            "total_failed": failed,
            "total_succeeded": succeeded,
            "total_rolled_back": rb_ok + rb_failed,
            "total_rollback_failed": rb_failed,
            "total_rollback_succeeded": rb_ok,
            "gift": {
                "redeemed_amount": _int(state, f.GIFT_REDEEMED),
                "amount_to_go": _int(state, f.GIFT_TO_GO),
            },
            "loyalty_card": {
                "redeemed_points": _int(state, f.CARD_REDEEMED),
                "points_to_go": _int(state, f.CARD_TO_GO),
            },
        },
        "orders": orders,
    }
    points = _int(state, f.LOYALTY_POINTS)
    record["loyalty"] = {
        "points": points,
        "referred_customers": _int(state, f.LOYALTY_REFERRED),
        "campaigns": dict(sorted(campaigns.items())),
    }
    referrals.sort(key=lambda entry: (entry["t"], entry["campaign_id"]))
    record["referrals"] = {
        "total": _int(state, f.REFERRALS_TOTAL),
        "campaigns": [{k: v for k, v in entry.items() if k != "t"} for entry in referrals],
    }
    record["created_at"] = format_micros(int(state[f.CREATED_AT]))
    record["updated_at"] = format_micros(int(state[f.UPDATED_AT]))
    if f.DELETED_AT in state:
        record["deleted_at"] = json.loads(state[f.DELETED_AT])
    record["status"] = ("prospect", "acquired", "repeat")[min(total_count, 2)]
    record["total_orders_count"] = record["order_count"] = total_count
    if last_order_at is not None:
        record["last_order_at"] = last_order_at
    record["loyalty_balance"] = points
    return record


def changed_paths(before: JsonDict | None, after: JsonDict | None) -> list[str]:
    """Dotted paths of the leaves that differ; a list counts as one leaf."""
    return sorted(_diff(before or {}, after or {}, ""))


def _diff(before: JsonDict, after: JsonDict, prefix: str) -> Iterator[str]:
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            yield from _diff(old, new, f"{prefix}{key}.")
        else:
            yield prefix + key
