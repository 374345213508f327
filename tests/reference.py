"""A deliberately simple, from-scratch oracle for the customer record.

`reference_records(events)` takes every input CloudEvent (as published on the input topics),
treats them as a SET (deduplicated by ``(source, id)``) and computes each customer's final
record field by field with plain max / min / sum / filter over that set. There is no
incremental state, no Redis and no shared code with ``worker/`` or ``contracts/``: the
production worker is checked against this module, so it must stay independent and obvious.

Semantics (DESIGN.md sections 3 and 4, plus the project's decisions where it is silent):

* stamp of an event = ``(time_us, id, source)``; "latest" = max stamp, "earliest" = min stamp.
* erase: W = max time of the customer's ``customer.erase`` events; its events with
  ``time_us <= W`` are ignored entirely; nothing after W => ``None``.
* every other field is a register (max stamp wins), a natural-key first-wins count (min stamp
  wins), or a sum over the events applied to the customer.
* an event with no ``subject`` names its customer by ``sourceid``: it belongs to the implicit
  customer ``src_`` + the first 32 hex digits of SHA-256(sourceid), and sets that record's
  ``source_id`` like a profile write. The holder of a source_id is the customer with an
  explicit id whose own final record has it, the oldest: earliest time of its applied
  events (its ``created_at``, to the microsecond), then the smaller id; the other such
  customers are in conflict; with none, the implicit
  customer holds it if it has a record. An implicit customer with a record whose
  source_id an explicit customer holds is merged into it: its record is ``None`` and its
  events (after its own erases; the holder's erase reaches them only as below) count for
  the holder as if they were the holder's.
* erasing a customer with an explicit id at time T also erases, at T, the implicit customer
  of every source_id its own profile events dated up to T set: a later event naming that
  source_id starts a fresh implicit customer.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["format_time", "parse_time_us", "reference_records"]

Stamp = tuple[int, str, str]
Record = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

_RFC3339 = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[Tt ]"
    r"(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>[Zz]|[+-]\d{2}:?\d{2})?$"
)

PROFILE_EVENT_TYPES = frozenset({"customer.create", "customer.update"})
DELETE_EVENT_TYPES = frozenset({"customer.delete", "customer.restore"})
ERASE = "customer.erase"
ORDER_STATUS = {
    "order.created": "CREATED",
    "order.paid": "PAID",
    "order.fulfilled": "FULFILLED",
    "order.canceled": "CANCELED",
}
COUNTED_ORDER_STATUSES = frozenset({"PAID", "FULFILLED"})
REDEMPTION_EVENT_TYPES = frozenset(
    {
        "redemption.succeeded",
        "redemption.failed",
        "redemption.rollback.succeeded",
        "redemption.rollback.failed",
    }
)
POINTS_SIGN = {"loyalty.points.added": 1, "loyalty.points.subtracted": -1}
TIER = "loyalty.tier.changed"
REFERRAL = "referral.completed"
KNOWN_TYPES = (
    PROFILE_EVENT_TYPES
    | DELETE_EVENT_TYPES
    | {ERASE, TIER, REFERRAL}
    | set(ORDER_STATUS)
    | REDEMPTION_EVENT_TYPES
    | set(POINTS_SIGN)
)

# Plain last-writer-wins profile fields, in output order. `birthdate` (alias `birthday`),
# `address`, `metadata`, `tags` and `addresses` have their own rules below.
SIMPLE_PROFILE_FIELDS = (
    "source_id",
    "name",
    "description",
    "email",
    "phone",
    "dial_code",
    "gender",
    "birthdate",
    "reference",
    "reference_origin",
    "customer_group",
    "is_blacklisted",
    "is_loyalty_enabled",
    "is_house_account_enabled",
    "house_account_limit",
    "house_account_balance",
)
ADDRESS_FIELDS = ("line_1", "line_2", "city", "state", "postal_code", "country")


# --------------------------------------------------------------------------- time


def parse_time_us(value: str) -> int:
    """RFC 3339 timestamp -> UTC microseconds since the epoch (naive => UTC).

    Fractional digits beyond microseconds are truncated.
    """
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    base = datetime(
        int(m["y"]),
        int(m["mo"]),
        int(m["d"]),
        int(m["h"]),
        int(m["mi"]),
        int(m["s"]),
        tzinfo=UTC,
    )
    us = (base - _EPOCH) // _US
    frac = m["frac"]
    if frac:
        us += int(frac[:6].ljust(6, "0"))
    tz = m["tz"]
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset_minutes = int(digits[:2]) * 60 + int(digits[2:])
        us -= sign * offset_minutes * 60 * 1_000_000
    return us


def format_time(us: int) -> str:
    """UTC microseconds -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (milliseconds truncated)."""
    dt = _EPOCH + timedelta(microseconds=us)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T"
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class _Event:
    time_us: int
    id: str
    source: str
    type: str
    subject: str
    data: dict[str, Any]
    #: The `sourceid` of an event that names its customer by it alone (else None).
    named_by: str | None = None

    @property
    def stamp(self) -> Stamp:
        return (self.time_us, self.id, self.source)

    @staticmethod
    def from_raw(raw: dict[str, Any]) -> _Event:
        if raw["type"] not in KNOWN_TYPES:
            raise ValueError(f"unknown event type {raw['type']!r}")
        data = raw.get("data")
        return _Event(
            time_us=parse_time_us(raw["time"]),
            id=str(raw["id"]),
            source=str(raw["source"]),
            type=raw["type"],
            # Named by `sourceid` alone: the implicit customer derived from it.
            subject=raw.get("subject") or _implicit_id(raw["sourceid"]),
            data=data if isinstance(data, dict) else {},
            named_by=None if raw.get("subject") else raw["sourceid"],
        )


def _implicit_id(source_id: str) -> str:
    """The implicit customer of a `source_id`, as the contract spells it out (README)."""
    return "src_" + hashlib.sha256(source_id.encode()).hexdigest()[:32]


def _latest(events: Iterable[_Event]) -> _Event | None:
    return max(events, key=lambda e: e.stamp, default=None)


def _earliest(events: Iterable[_Event]) -> _Event | None:
    return min(events, key=lambda e: e.stamp, default=None)


def _winner(writes: Iterable[tuple[Stamp, Any]]) -> tuple[Stamp, Any] | None:
    """The max-stamp write of a register (stamps of distinct events are unique)."""
    return max(writes, key=lambda w: w[0], default=None)


# --------------------------------------------------------------------------- public


def _by_customer(events: Iterable[dict[str, Any]]) -> dict[str, list[_Event]]:
    """The distinct events (by (source, id)) of each customer they change."""
    distinct: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in events:
        key = (str(raw["source"]), str(raw["id"]))
        seen = distinct.get(key)
        if seen is None:
            distinct[key] = raw
        elif seen != raw:
            raise ValueError(f"same (source, id) {key} with different content")

    by_customer: dict[str, list[_Event]] = defaultdict(list)
    for raw in distinct.values():
        ev = _Event.from_raw(raw)
        by_customer[ev.subject].append(ev)
        if ev.type == REFERRAL:
            referrer = ev.data["referrer_id"]
            if referrer != ev.subject:  # a self-referral is still one event for that customer
                by_customer[referrer].append(ev)
    for cid, evs in list(by_customer.items()):
        for erase in [e for e in evs if e.type == ERASE and e.subject == cid]:
            for source_id in _named_before(cid, evs, erase.time_us):
                implicit = _implicit_id(source_id)
                if implicit != cid:
                    by_customer[implicit].append(
                        _Event(erase.time_us, f"erase:{cid}", "reference", ERASE, implicit, {})
                    )
    return by_customer


def _named_before(cid: str, events: list[_Event], time_us: int) -> set[str]:
    """The source_ids that `cid`'s own profile events dated up to `time_us` set: erasing
    the customer also erases, up to then, the implicit customers of those."""
    return {
        e.data["source_id"]
        for e in events
        if e.subject == cid
        and e.type in PROFILE_EVENT_TYPES
        and e.time_us <= time_us
        and isinstance(e.data.get("source_id"), str)
    }


def reference_records(
    events: Iterable[dict[str, Any]],
) -> dict[str, dict[str, Any] | None]:
    """Final record per customer id (``None`` = erased and not re-created, or an implicit
    customer merged into the holder of its source_id)."""
    events = list(events)
    by_customer = _by_customer(events)
    records = {cid: _record(cid, evs) for cid, evs in by_customer.items()}
    for source_id, (holder, _) in _holders(by_customer, records).items():
        implicit = _implicit_id(source_id)
        if holder is not None and holder != implicit and records.get(implicit) is not None:
            joined = _applied(implicit, by_customer[implicit])
            records[holder] = _record(holder, by_customer[holder], joined)
            records[implicit] = None
    return records


def reference_holders(
    events: Iterable[dict[str, Any]],
) -> dict[str, tuple[str | None, list[str]]]:
    """Per source_id named or claimed: (its holder or None, the customers in conflict)."""
    by_customer = _by_customer(events)
    records = {cid: _record(cid, evs) for cid, evs in by_customer.items()}
    return _holders(by_customer, records)


def _holders(
    by_customer: dict[str, list[_Event]], records: dict[str, Record | None]
) -> dict[str, tuple[str | None, list[str]]]:
    """Who holds each source_id, from the customers' own records."""
    named = {e.named_by for evs in by_customer.values() for e in evs if e.named_by is not None}
    claims: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for cid, evs in by_customer.items():
        record = records.get(cid)
        if record is None or "source_id" not in record or re.match(r"^src_[0-9a-f]{32}$", cid):
            continue
        applied = _applied(cid, evs)
        claims[record["source_id"]].append((min(e.time_us for e in applied), cid))
    holders: dict[str, tuple[str | None, list[str]]] = {}
    for source_id in named | set(claims):
        ranked = [cid for _, cid in sorted(claims[source_id])]
        if ranked:
            holders[source_id] = (ranked[0], sorted(ranked[1:]))
        else:
            implicit = records.get(_implicit_id(source_id))
            holders[source_id] = (None if implicit is None else _implicit_id(source_id), [])
    return holders


# --------------------------------------------------------------------------- record


def _applied(cid: str, events: list[_Event]) -> list[_Event]:
    """The customer's events that count: not erases, dated after its latest erase."""
    erase_times = [e.time_us for e in events if e.type == ERASE and e.subject == cid]
    watermark = max(erase_times, default=None)
    return [e for e in events if e.type != ERASE and (watermark is None or e.time_us > watermark)]


def _record(cid: str, events: list[_Event], joined: list[_Event] | None = None) -> Record | None:
    """The record of `cid`'s events, and of the `joined` ones of an implicit customer it
    holds the source_id of (those count as its own; its erases do not touch them)."""
    applied = _applied(cid, events)
    referrer_side = [e for e in applied if e.type == REFERRAL and e.data["referrer_id"] == cid]
    # The events about this customer itself (not as a referrer): its own and the joined.
    own = {e.stamp for e in applied if e.subject == cid} | {e.stamp for e in joined or ()}
    applied += [e for e in joined or () if e not in applied]
    if not applied:
        return None

    rec: Record = {"id": cid, "object": "customer"}
    rec.update(_profile(own, applied))
    rec["system_metadata"] = {}

    orders = _orders(applied)
    rec["summary"] = {"redemptions": _redemptions(applied), "orders": orders}
    rec["loyalty"] = _loyalty(applied, referrer_side)
    rec["referrals"] = _referrals(own, applied)

    rec["created_at"] = format_time(min(e.time_us for e in applied))
    rec["updated_at"] = format_time(max(e.time_us for e in applied))
    deleted_at = _deleted_at(applied)
    if deleted_at is not None:
        rec["deleted_at"] = deleted_at

    count = orders["total_count"]
    rec["status"] = "prospect" if count == 0 else "acquired" if count == 1 else "repeat"
    rec["total_orders_count"] = count
    rec["order_count"] = count
    if "last_order_date" in orders:
        rec["last_order_at"] = orders["last_order_date"]
    rec["loyalty_balance"] = rec["loyalty"]["points"]
    return rec


# --------------------------------------------------------------------------- profile


def _carried(data: dict[str, Any], field: str) -> tuple[bool, Any]:
    """Whether a profile event writes `field`, and the value it writes."""
    if field == "birthdate":
        if "birthdate" in data:
            return True, data["birthdate"]
        if "birthday" in data:
            return True, data["birthday"]
        return False, None
    if field in data:
        return True, data[field]
    return False, None


def _profile_writes(profile: list[_Event], field: str) -> Iterator[tuple[Stamp, Any]]:
    for e in profile:
        present, value = _carried(e.data, field)
        if present:
            yield e.stamp, value


def _profile(own: set[Stamp], applied: list[_Event]) -> Record:
    profile = [e for e in applied if e.type in PROFILE_EVENT_TYPES]
    out: Record = {}

    for field in SIMPLE_PROFILE_FIELDS:
        writes = list(_profile_writes(profile, field))
        if field == "source_id":  # an event naming the customer by it alone sets it too
            writes += [(e.stamp, e.named_by) for e in applied if e.named_by and e.stamp in own]
        win = _winner(writes)
        if win is not None and win[1] is not None:
            out[field] = win[1]

    win = _winner(_profile_writes(profile, "tags"))
    if win is not None and win[1] is not None:
        out["tags"] = _normalise_tags(win[1])

    win = _winner(_profile_writes(profile, "addresses"))
    if win is not None and win[1] is not None:
        out["addresses"] = win[1]

    address = _address(profile)
    if address:
        out["address"] = address
    out["metadata"] = _metadata(profile)
    return out


def _normalise_tags(items: list[Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for item in items:
        tag_id = item["id"] if isinstance(item, dict) else item
        if tag_id not in seen:
            seen.add(tag_id)
            result.append({"id": tag_id})
    return result


def _address(profile: list[_Event]) -> dict[str, Any]:
    writes: dict[str, list[tuple[Stamp, Any]]] = defaultdict(list)
    for e in profile:
        if "address" not in e.data:
            continue
        value = e.data["address"]
        if value is None:
            for sub in ADDRESS_FIELDS:
                writes[sub].append((e.stamp, None))
        else:
            for sub in ADDRESS_FIELDS:
                if sub in value:
                    writes[sub].append((e.stamp, value[sub]))
    out: dict[str, Any] = {}
    for sub in ADDRESS_FIELDS:
        win = _winner(writes[sub])
        if win is not None and win[1] is not None:
            out[sub] = win[1]
    return out


def _metadata(profile: list[_Event]) -> dict[str, Any]:
    clears = [e.stamp for e in profile if "metadata" in e.data and e.data["metadata"] is None]
    last_clear = max(clears, default=None)
    writes: dict[str, list[tuple[Stamp, Any]]] = defaultdict(list)
    for e in profile:
        value = e.data.get("metadata")
        if isinstance(value, dict):
            for key, v in value.items():
                writes[key].append((e.stamp, v))
    out: dict[str, Any] = {}
    for key in sorted(writes):
        win = _winner(writes[key])
        assert win is not None
        stamp, value = win
        if value is not None and (last_clear is None or stamp > last_clear):
            out[key] = value
    return out


def _deleted_at(applied: list[_Event]) -> str | None:
    last = _latest(e for e in applied if e.type in DELETE_EVENT_TYPES)
    if last is None or last.type == "customer.restore":
        return None
    return format_time(last.time_us)


# --------------------------------------------------------------------------- orders


def _orders(applied: list[_Event]) -> Record:
    by_order: dict[str, list[_Event]] = defaultdict(list)
    for e in applied:
        if e.type in ORDER_STATUS:
            by_order[e.data["order_id"]].append(e)

    counted: list[tuple[int, str, int]] = []  # (order date us, order_id, amount)
    for order_id, evs in by_order.items():
        last = _latest(evs)
        assert last is not None
        if ORDER_STATUS[last.type] not in COUNTED_ORDER_STATUSES:
            continue
        amount = int(last.data.get("amount", 0))
        dated = _latest(e for e in evs if e.data.get("created_at") is not None)
        if dated is not None:
            order_date = parse_time_us(dated.data["created_at"])
        else:
            order_date = min(e.time_us for e in evs)
        counted.append((order_date, order_id, amount))

    total_amount = sum(amount for _, _, amount in counted)
    total_count = len(counted)
    out: Record = {
        "total_amount": total_amount,
        "total_count": total_count,
        # round half up of total_amount / total_count, in integers (amounts are >= 0)
        "average_amount": (2 * total_amount + total_count) // (2 * total_count)
        if total_count
        else 0,
        "last_order_amount": 0,
    }
    if counted:
        order_date, _, amount = max(counted, key=lambda c: (c[0], c[1]))
        out["last_order_amount"] = amount
        out["last_order_date"] = format_time(order_date)
    return out


# --------------------------------------------------------------------------- redemptions


def _card_of(e: _Event) -> tuple[str, str] | None:
    """(kind, code) of the card whose balance this event may report, if any."""
    if e.type in REDEMPTION_EVENT_TYPES:
        voucher = e.data.get("voucher") or {}
        code = voucher.get("code")
        if code is None:
            return None
        if voucher.get("type") == "GIFT_VOUCHER":
            return ("gift", code)
        if voucher.get("type") == "LOYALTY_CARD":
            return ("loyalty", code)
        return None
    if e.type in POINTS_SIGN:
        code = e.data.get("card_code")
        return None if code is None else ("loyalty", code)
    return None


def _redemptions(applied: list[_Event]) -> Record:
    by_key: dict[tuple[str, str], list[_Event]] = defaultdict(list)
    for e in applied:
        if e.type in REDEMPTION_EVENT_TYPES:
            by_key[(e.data["redemption_id"], e.type)].append(e)
    firsts = [_earliest(evs) for evs in by_key.values()]
    counted = [e for e in firsts if e is not None]

    def count(event_type: str) -> int:
        return sum(1 for e in counted if e.type == event_type)

    def redeemed(voucher_type: str, field: str) -> int:
        total = 0
        for e in counted:
            if (e.data.get("voucher") or {}).get("type") != voucher_type:
                continue
            if e.type == "redemption.succeeded":
                total += int(e.data.get(field) or 0)
            elif e.type == "redemption.rollback.succeeded":
                total -= int(e.data.get(field) or 0)
        return total

    cards: dict[tuple[str, str], list[_Event]] = defaultdict(list)
    for e in applied:
        card = _card_of(e)
        if card is not None and e.data.get("balance") is not None:
            cards[card].append(e)
    balances: dict[str, int] = {"gift": 0, "loyalty": 0}
    for (kind, _code), evs in cards.items():
        last = _latest(evs)
        assert last is not None
        balances[kind] += int(last.data["balance"])

    succeeded = count("redemption.succeeded")
    failed = count("redemption.failed")
    rb_succeeded = count("redemption.rollback.succeeded")
    rb_failed = count("redemption.rollback.failed")
    return {
        "total_redeemed": succeeded + failed,
        "total_failed": failed,
        "total_succeeded": succeeded,
        "total_rolled_back": rb_succeeded + rb_failed,
        "total_rollback_failed": rb_failed,
        "total_rollback_succeeded": rb_succeeded,
        "gift": {
            "redeemed_amount": redeemed("GIFT_VOUCHER", "amount"),
            "amount_to_go": balances["gift"],
        },
        "loyalty_card": {
            "redeemed_points": redeemed("LOYALTY_CARD", "points"),
            "points_to_go": balances["loyalty"],
        },
    }


# --------------------------------------------------------------------------- loyalty


def _loyalty(applied: list[_Event], referrer_side: list[_Event]) -> Record:
    points_events = [e for e in applied if e.type in POINTS_SIGN]
    tier_events = [e for e in applied if e.type == TIER]
    # referrer side: one per (campaign_id, referee)
    referred = {(e.data["campaign_id"], e.subject) for e in referrer_side}

    campaign_ids = (
        {e.data["campaign_id"] for e in points_events}
        | {e.data["campaign_id"] for e in tier_events}
        | {campaign for campaign, _ in referred}
    )
    campaigns: dict[str, Any] = {}
    for campaign in sorted(campaign_ids):
        entry: Record = {
            "points": sum(
                POINTS_SIGN[e.type] * int(e.data["points"])
                for e in points_events
                if e.data["campaign_id"] == campaign
            ),
            "referred_customers": sum(1 for c, _ in referred if c == campaign),
        }
        tier = _latest(e for e in tier_events if e.data["campaign_id"] == campaign)
        if tier is not None and tier.data.get("tier") is not None:
            entry["loyalty_tier"] = tier.data["tier"]
        campaigns[campaign] = entry

    return {
        "points": sum(POINTS_SIGN[e.type] * int(e.data["points"]) for e in points_events),
        "referred_customers": len(referred),
        "campaigns": campaigns,
    }


def _referrals(own: set[Stamp], applied: list[_Event]) -> Record:
    by_campaign: dict[str, list[_Event]] = defaultdict(list)
    for e in applied:
        if e.type == REFERRAL and e.stamp in own:
            by_campaign[e.data["campaign_id"]].append(e)
    entries: list[tuple[int, str, Record]] = []
    for campaign, evs in by_campaign.items():
        first = _earliest(evs)
        assert first is not None
        entries.append(
            (
                first.time_us,
                campaign,
                {
                    "campaign_id": campaign,
                    "referrer_id": first.data["referrer_id"],
                    "related_object_id": first.data["related_object_id"],
                    "related_object_type": first.data["related_object_type"],
                    "date": format_time(first.time_us),
                },
            )
        )
    entries.sort(key=lambda t: (t[0], t[1]))
    return {"total": len(entries), "campaigns": [entry for _, _, entry in entries]}
