"""The customer record, rendered from a customer's stored state (pure, no I/O).

Stored state is a flat mapping of field names (see `fields`) to strings; the record is the
public shape of DESIGN.md §4. The record is assembled from sections, each rendered from the
fields that feed it alone, so that the record *before* a change only needs the sections the
change touched: the `changed` paths are the diff of the two, derived fields included.
"""

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import orjson

from worker.domain import fields as f
from worker.domain.clock import format_micros
from worker.domain.merge import JoinedView

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
            address[key[len("address.") :]] = orjson.loads(raw)
        elif key == "tags":
            part["tags"] = [{"id": tag} for tag in orjson.loads(raw)]
        else:
            part[key] = orjson.loads(raw)
    if address:
        part["address"] = dict(sorted(address.items()))
    return part


def _metadata(fields: Fields) -> JsonDict:
    entries = {name[len(f.METADATA) :]: orjson.loads(raw) for name, raw in fields.items()}
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
            campaign(name[len(f.TIER) :])["loyalty_tier"] = orjson.loads(raw)
    points = _int(fields, f.LOYALTY_POINTS)
    loyalty = {
        "points": points,
        "referred_customers": _int(fields, f.LOYALTY_REFERRED),
        "campaigns": dict(sorted(campaigns.items())),
    }
    return {"loyalty": loyalty, "loyalty_balance": points}


def _referrals(fields: Fields) -> JsonDict:
    entries = [orjson.loads(raw) for name, raw in fields.items() if name.startswith(f.REFERRAL)]
    entries.sort(key=lambda entry: (entry["t"], entry["campaign_id"]))
    referrals = {
        "total": _int(fields, f.REFERRALS_TOTAL),
        "campaigns": [{k: v for k, v in entry.items() if k != "t"} for entry in entries],
    }
    return {"referrals": referrals}


def _times(fields: Fields) -> JsonDict:
    if f.CREATED_AT not in fields:  # no state (yet, or any more): never assembled
        return {}
    part: JsonDict = {
        "created_at": format_micros(int(fields[f.CREATED_AT])),
        "updated_at": format_micros(int(fields[f.UPDATED_AT])),
    }
    if f.DELETED_AT in fields:
        part["deleted_at"] = orjson.loads(fields[f.DELETED_AT])
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


#: The section that renders each `summary.*` part of the record, in output order.
_SUMMARY_PARTS = (("summary.redemptions", REDEMPTIONS), ("summary.orders", ORDERS))
_SUMMARY_OF = {section: key for key, section in _SUMMARY_PARTS}


class _Fragments:
    """One rendered section as JSON bytes: its top-level keys (without the braces) and its
    `summary.*` part if it has one, so that a record is assembled by concatenation."""

    __slots__ = ("summary", "top")

    def __init__(self, section: str, part: JsonDict) -> None:
        """(Takes `part` apart.) Both are kept without their braces: slicing copies them to
        their size, where orjson's own output keeps a buffer of 4 KiB or more."""
        key = _SUMMARY_OF.get(section)
        self.summary = b"" if key is None else orjson.dumps(part.pop(key))[1:-1]
        self.top = orjson.dumps(part)[1:-1]

    def part(self, section: str) -> JsonDict:
        """The section as rendered (for a diff)."""
        part: JsonDict = orjson.loads(b"{" + self.top + b"}")
        key = _SUMMARY_OF.get(section)
        if key is not None:
            part[key] = orjson.loads(b"{" + self.summary + b"}")
        return part


class RenderedRecord:
    """One customer's visible fields, by section, with each section rendered to JSON bytes,
    kept between batches: a change re-renders only the sections its fields feed, the
    `changed` paths are the diff of those sections alone (derived fields included), and the
    record's JSON is assembled from the sections' bytes."""

    __slots__ = ("_fragments", "_head", "_parts", "joined", "view")

    def __init__(self, customer_id: str, state: Fields) -> None:
        self._head = b'{"id":' + orjson.dumps(customer_id) + b',"object":"customer"'
        self._parts = split(state)
        #: Whether it shows another customer's fields joined to its own (`show`), and
        #: the join it shows, while that is known (else joined again).
        self.joined = False
        self.view: JoinedView | None = None
        self._fragments = {
            name: _Fragments(name, render_part(self._parts.get(name, {})))
            for name, render_part in _RENDERERS.items()
        }

    @property
    def exists(self) -> bool:
        """False until the first event, and once erased."""
        return f.CREATED_AT in self._parts.get(TIMES, ())

    def record_json(self) -> bytes | None:
        """The record as JSON (None: no state)."""
        if not self.exists:
            return None
        fragments = self._fragments
        tops = b",".join([fragment.top for fragment in fragments.values() if fragment.top])
        redemptions, orders = fragments[REDEMPTIONS].summary, fragments[ORDERS].summary
        return b'%s,%s,"summary":{"redemptions":{%s},"orders":{%s}}}' % (
            self._head,
            tops,
            redemptions,
            orders,
        )

    def apply(
        self, changes: Mapping[str, str | None], wiped: bool = False
    ) -> tuple[bytes | None, list[str]]:
        """Fold in the changed fields (None: removed), after emptying the
        state if `wiped`; returns the record's JSON (None once erased) and the dotted paths
        that differ from the record before."""
        existed = self.exists and not wiped
        if wiped:
            self._parts = {}
        touched = set(_RENDERERS) if wiped else set()
        for name, value in changes.items():
            section = section_of(name)
            if section is None:
                continue
            touched.add(section)
            part = self._parts.setdefault(section, {})
            if value is None:
                part.pop(name, None)
            else:
                part[name] = value
        paths: list[str] = []
        for section in touched:
            rendered = _RENDERERS[section](self._parts.get(section, {}))
            if existed:
                _diff(self._fragments[section].part(section), rendered, "", paths)
            self._fragments[section] = _Fragments(section, rendered)
        record = self.record_json()
        if record is None:
            return None, []  # a tombstone carries no record and no paths
        if not existed:  # created by this change: every leaf is new
            return record, changed_paths(None, orjson.loads(record))
        return record, sorted(paths)

    def show(self, visible: Fields) -> tuple[bytes | None, list[str]]:
        """Become the record of exactly these visible fields (as `apply` returns it)."""
        shown = {name: value for part in self._parts.values() for name, value in part.items()}
        changes = {name: visible.get(name) for name in shown.keys() | visible.keys()}
        return self.apply({k: v for k, v in changes.items() if v != shown.get(k)})


def changed_paths(before: JsonDict | None, after: JsonDict | None) -> list[str]:
    """Dotted paths of the leaves that differ; a list counts as one leaf."""
    paths: list[str] = []
    _diff(before or {}, after or {}, "", paths)
    return sorted(paths)


def _diff(before: JsonDict, after: JsonDict, prefix: str, paths: list[str]) -> None:
    """Append the paths that differ (a key absent on one side counts as null there).
    (Appending, not yielding: a compiled generator costs more than the comparisons.)"""
    for key, old in before.items():
        new = after.get(key)
        if old is new or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            _diff(old, new, f"{prefix}{key}.", paths)
        else:
            paths.append(prefix + key)
    for key, new in after.items():
        if new is not None and key not in before:
            paths.append(prefix + key)
