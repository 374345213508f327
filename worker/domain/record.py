"""The customer record, rendered from a customer's stored state (pure, no I/O).

Stored state is a flat mapping of field names (see `fields`) to strings; the record is the
public shape of DESIGN.md §4. The record is assembled from sections, each rendered from the
fields that feed it alone, so that the record *before* a change only needs the sections the
change touched: the `changed` paths are the diff of the two, derived fields included.
"""

import json
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from worker.domain import fields as f
from worker.domain.clock import format_micros

JsonDict = dict[str, Any]
Fields = Mapping[str, str]

PROFILE, METADATA, ORDERS, REDEMPTIONS, LOYALTY, REFERRALS, TIMES = (
    "profile", "metadata", "orders", "redemptions", "loyalty", "referrals", "times"
)  # fmt: skip
_BY_PREFIX = (
    (f.PROFILE, PROFILE),
    (f.METADATA, METADATA),
    (f.CAMPAIGN_POINTS, LOYALTY),
    (f.CAMPAIGN_REFERRED, LOYALTY),
    (f.TIER, LOYALTY),
    (f.REFERRAL, REFERRALS),
    ("orders.", ORDERS),
    ("redemptions.", REDEMPTIONS),
    ("gift.", REDEMPTIONS),
    ("loyalty_card.", REDEMPTIONS),
)
_BY_NAME = {
    f.LOYALTY_POINTS: LOYALTY,
    f.LOYALTY_REFERRED: LOYALTY,
    f.REFERRALS_TOTAL: REFERRALS,
    f.CREATED_AT: TIMES,
    f.UPDATED_AT: TIMES,
    f.DELETED_AT: TIMES,
}


@lru_cache(maxsize=16_384)
def section_of(name: str) -> str | None:
    """The section a stored field feeds (None: bookkeeping and stamps, never rendered)."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    for prefix, section in _BY_PREFIX:
        if name.startswith(prefix):
            return section
    return None


def split(state: Fields) -> dict[str, dict[str, str]]:
    """The state's fields, by section."""
    parts: dict[str, dict[str, str]] = {}
    for name, raw in state.items():
        section = section_of(name)
        if section is not None:
            parts.setdefault(section, {})[name] = raw
    return parts


def _int(fields: Fields, name: str) -> int:
    return int(fields.get(name, 0))


def _half_up(total: int, count: int) -> int:
    """Average rounded half up; amounts are non-negative so this is exact integer math."""
    return (2 * total + count) // (2 * count) if count else 0


def _profile(fields: Fields) -> JsonDict:
    part: JsonDict = {}
    address: JsonDict = {}
    for name, raw in fields.items():
        key = name[len(f.PROFILE) :]
        if key.startswith("address."):
            address[key[len("address.") :]] = json.loads(raw)
        elif key == "tags":
            part["tags"] = [{"id": tag} for tag in json.loads(raw)]
        else:
            part[key] = json.loads(raw)
    if address:
        part["address"] = dict(sorted(address.items()))
    return part


def _metadata(fields: Fields) -> JsonDict:
    entries = {name[len(f.METADATA) :]: json.loads(raw) for name, raw in fields.items()}
    return {"metadata": dict(sorted(entries.items())), "system_metadata": {}}


def _orders(fields: Fields) -> JsonDict:
    total_amount = _int(fields, f.ORDERS_TOTAL_AMOUNT)
    total_count = _int(fields, f.ORDERS_TOTAL_COUNT)
    orders: JsonDict = {
        "total_amount": total_amount,
        "total_count": total_count,
        "average_amount": _half_up(total_amount, total_count),
        "last_order_amount": _int(fields, f.ORDERS_LAST_AMOUNT),
    }
    part: JsonDict = {
        "status": ("prospect", "acquired", "repeat")[min(total_count, 2)],
        "total_orders_count": total_count,
        "order_count": total_count,
    }
    if f.ORDERS_LAST_DATE in fields:
        orders["last_order_date"] = part["last_order_at"] = format_micros(
            int(fields[f.ORDERS_LAST_DATE])
        )
    part["summary.orders"] = orders
    return part


def _redemptions(fields: Fields) -> JsonDict:
    succeeded, failed = _int(fields, f.REDEMPTIONS_SUCCEEDED), _int(fields, f.REDEMPTIONS_FAILED)
    rb_ok, rb_failed = _int(fields, f.ROLLBACKS_SUCCEEDED), _int(fields, f.ROLLBACKS_FAILED)
    redemptions = {
        "total_redeemed": succeeded + failed,
        "total_failed": failed,
        "total_succeeded": succeeded,
        "total_rolled_back": rb_ok + rb_failed,
        "total_rollback_failed": rb_failed,
        "total_rollback_succeeded": rb_ok,
        "gift": {
            "redeemed_amount": _int(fields, f.GIFT_REDEEMED),
            "amount_to_go": _int(fields, f.GIFT_TO_GO),
        },
        "loyalty_card": {
            "redeemed_points": _int(fields, f.CARD_REDEEMED),
            "points_to_go": _int(fields, f.CARD_TO_GO),
        },
    }
    return {"summary.redemptions": redemptions}


def _loyalty(fields: Fields) -> JsonDict:
    campaigns: JsonDict = {}

    def campaign(campaign_id: str) -> JsonDict:
        entry: JsonDict = campaigns.setdefault(campaign_id, {"points": 0, "referred_customers": 0})
        return entry

    for name, raw in fields.items():
        if name.startswith(f.CAMPAIGN_POINTS):
            campaign(name[len(f.CAMPAIGN_POINTS) :])["points"] = int(raw)
        elif name.startswith(f.CAMPAIGN_REFERRED):
            campaign(name[len(f.CAMPAIGN_REFERRED) :])["referred_customers"] = int(raw)
        elif name.startswith(f.TIER):
            campaign(name[len(f.TIER) :])["loyalty_tier"] = json.loads(raw)
    points = _int(fields, f.LOYALTY_POINTS)
    loyalty = {
        "points": points,
        "referred_customers": _int(fields, f.LOYALTY_REFERRED),
        "campaigns": dict(sorted(campaigns.items())),
    }
    return {"loyalty": loyalty, "loyalty_balance": points}


def _referrals(fields: Fields) -> JsonDict:
    entries = [json.loads(raw) for name, raw in fields.items() if name.startswith(f.REFERRAL)]
    entries.sort(key=lambda entry: (entry["t"], entry["campaign_id"]))
    referrals = {
        "total": _int(fields, f.REFERRALS_TOTAL),
        "campaigns": [{k: v for k, v in entry.items() if k != "t"} for entry in entries],
    }
    return {"referrals": referrals}


def _times(fields: Fields) -> JsonDict:
    part: JsonDict = {
        "created_at": format_micros(int(fields[f.CREATED_AT])),
        "updated_at": format_micros(int(fields[f.UPDATED_AT])),
    }
    if f.DELETED_AT in fields:
        part["deleted_at"] = json.loads(fields[f.DELETED_AT])
    return part


_RENDERERS: dict[str, Callable[[Fields], JsonDict]] = {
    PROFILE: _profile,
    METADATA: _metadata,
    ORDERS: _orders,
    REDEMPTIONS: _redemptions,
    LOYALTY: _loyalty,
    REFERRALS: _referrals,
    TIMES: _times,
}


def _assemble(customer_id: str, sections: dict[str, JsonDict]) -> JsonDict:
    """The record from its rendered sections (`summary.*` parts nest under `summary`)."""
    record: JsonDict = {"id": customer_id, "object": "customer"}
    summary: JsonDict = {}
    for part in sections.values():
        for key, value in part.items():
            if key.startswith("summary."):
                summary[key[len("summary.") :]] = value
            else:
                record[key] = value
    record["summary"] = {"redemptions": summary["redemptions"], "orders": summary["orders"]}
    return record


def _render_sections(parts: dict[str, dict[str, str]]) -> dict[str, JsonDict]:
    return {name: render_part(parts.get(name, {})) for name, render_part in _RENDERERS.items()}


def render(customer_id: str, state: Fields) -> JsonDict | None:
    """The record for `state`, or None when the customer has no state (never seen, erased)."""
    if f.CREATED_AT not in state:
        return None
    return _assemble(customer_id, _render_sections(split(state)))


def render_change(
    customer_id: str, state: Fields, before: Mapping[str, str | None]
) -> tuple[JsonDict | None, list[str]]:
    """The record for `state` (None once erased) and the dotted paths that differ from the
    record before the change; `before` holds the old value (None: absent) of every field
    that changed. Only the sections those fields feed are rendered a second time."""
    if f.CREATED_AT not in state:
        return None, []  # a tombstone carries no record and no paths
    parts = split(state)
    after = _render_sections(parts)
    after_record = _assemble(customer_id, after)
    if f.CREATED_AT in before and before[f.CREATED_AT] is None:  # created by this change
        return after_record, changed_paths(None, after_record)
    earlier = dict(after)
    touched = {section for name in before if (section := section_of(name)) is not None}
    for section in touched:
        fields = dict(parts.get(section, {}))
        for name, old in before.items():
            if section_of(name) != section:
                continue
            if old is None:
                fields.pop(name, None)
            else:
                fields[name] = old
        earlier[section] = _RENDERERS[section](fields)
    return after_record, changed_paths(_assemble(customer_id, earlier), after_record)


def changed_paths(before: JsonDict | None, after: JsonDict | None) -> list[str]:
    """Dotted paths of the leaves that differ; a list counts as one leaf."""
    return sorted(_diff(before or {}, after or {}, ""))


def _diff(before: JsonDict, after: JsonDict, prefix: str) -> Iterator[str]:
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old is new or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            yield from _diff(old, new, f"{prefix}{key}.")
        else:
            yield prefix + key
