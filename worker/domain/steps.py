"""What each event type does to a customer, as a list of primitive operations.

The fold (`worker/domain/fold.py`) knows a handful of conflict-free primitives and no event
types; this module is the one place that maps the contract onto them:

- `S field value guard`: last-writer-wins register (value is JSON text, null deletes);
  loses also to a newer stamp on the optional `guard` register (metadata cleared).
- `C prefix register`: clear every register under `prefix` older than this event.
- `B register balance sum_field`: last-writer-wins card balance, summed into `sum_field`.
- `A field delta …`: counters.
- `K key value_field value delta_field delta …`: a contribution counted once per natural key;
  the earliest event (by stamp) for the key is the one that counts, so the outcome does
  not depend on which of two events with the same key arrived first.
- `O order_id status amount order_date`: per-order last-writer-wins state, feeding the
  order summary.
- `E`: erase.

Stamps order events by (`time`, `id`, `source`), which is total: equal stamps mean the same
event. Every number is sent as a decimal string so no float formatting ever touches it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from contracts.customers import (
    ADDRESS_FIELDS,
    CustomerCreate,
    CustomerDelete,
    CustomerErase,
    CustomerProfile,
    CustomerRestore,
    CustomerUpdate,
)
from contracts.events import AnyInputEvent
from contracts.loyalty import PointsAdded, ReferralCompleted, TierChanged
from contracts.orders import OrderCreated
from contracts.redemptions import (
    RedemptionData,
    RedemptionSucceeded,
)
from worker.domain import fields as f
from worker.domain.clock import format_time, to_micros

Op = list[str | None]


@dataclass(frozen=True, slots=True)
class Step:
    """The change one event makes to one customer, as the fold applies it (and the replay
    log keeps it)."""

    customer_id: str
    marker: str
    micros: int
    ops: tuple[Op, ...]

    @property
    def erases(self) -> bool:
        """An erase is a step of its own (one `E` operation)."""
        return self.ops[0][0] == "E"

    @property
    def notice(self) -> bool:
        """A notice is a step of its own (one `N` operation, see `notice_step`)."""
        return self.ops[0][0] == "N"

    def encode(self) -> bytes:
        """The step as the replay log keeps it (JSON)."""
        return orjson.dumps({"m": self.marker, "t": str(self.micros), "o": self.ops})


def notice_step(
    customer_id: str, marker: str, field: str, value: str | None, before: str | None = None
) -> Step:
    """Set a bookkeeping field that decides what the record shows (`N field value
    before`): a new version if the record exists and the value changed, the value it had
    kept in field `before` (if any). Not an event: no time, not ignored after an erase,
    not logged for replay."""
    return Step(customer_id, marker, 0, (["N", field, value, before],))


def erasure_step(customer_id: str, marker: str, micros: int) -> Step:
    """Erase the customer up to `micros`: an implicit customer, for an explicit customer
    erased then whose erased events named its `source_id`."""
    return Step(customer_id, marker, micros, (["E"],))


def marker_of(event: AnyInputEvent) -> str:
    """Dedup key and stamp tie-breaker: id, then source (ids hold no control characters)."""
    return f"{event.id}\n{event.source}"


def _json(value: Any) -> str:
    """Canonical JSON text of a register's value (sorted keys: equal values, equal text)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _set(field: str, value: Any, guard: str | None = None) -> Op:
    return ["S", field, None if value is None else _json(value), guard]


def _date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _profile_ops(profile: CustomerProfile) -> list[Op]:
    ops: list[Op] = []
    present = profile.model_fields_set
    if "birthday" in present and "birthdate" not in present:  # the deprecated alias
        ops.append(_set(f.PROFILE + "birthdate", _date(profile.birthday)))
    for name in sorted(present - {"birthday"}):
        value = getattr(profile, name)
        if name == "address":
            subfields = ADDRESS_FIELDS if value is None else sorted(value.model_fields_set)
            for sub in subfields:
                sub_value = None if value is None else getattr(value, sub)
                ops.append(_set(f"{f.PROFILE}address.{sub}", sub_value))
        elif name == "metadata":
            if value is None:
                ops.append(["C", f.METADATA, f.METADATA_CLEARED])
            else:
                ops.extend(
                    _set(f.METADATA + key, item, f.METADATA_CLEARED)
                    for key, item in sorted(value.items())
                )
        elif name == "tags":
            ops.append(_set(f.PROFILE + name, profile.tag_ids))
        elif name == "addresses":
            ops.append(
                _set(
                    f.PROFILE + name,
                    None if value is None else [a.model_dump(exclude_none=True) for a in value],
                )
            )
        elif name == "birthdate":
            ops.append(_set(f.PROFILE + name, _date(value)))
        else:
            ops.append(_set(f.PROFILE + name, value))
    return ops


def _profile(event: CustomerCreate | CustomerUpdate) -> list[Op]:
    return _profile_ops(event.data)


def _delete(event: CustomerDelete) -> list[Op]:
    return [_set(f.DELETED_AT, format_time(event.time))]


def _restore(event: CustomerRestore) -> list[Op]:
    return [_set(f.DELETED_AT, None)]


def _erase(event: CustomerErase) -> list[Op]:
    return [["E"]]


def _order(status: str) -> Callable[[OrderCreated], list[Op]]:
    def ops(event: OrderCreated) -> list[Op]:
        data = event.data
        order_date = None if data.created_at is None else str(to_micros(data.created_at))
        return [["O", data.order_id, status, str(data.amount), order_date]]

    return ops


# Counters moved by each redemption outcome, and the sign it applies to credits/points used.
_REDEMPTION_OUTCOMES: dict[str, tuple[str, int]] = {
    "redemption.succeeded": (f.REDEMPTIONS_SUCCEEDED, 1),
    "redemption.failed": (f.REDEMPTIONS_FAILED, 0),
    "redemption.rollback.succeeded": (f.ROLLBACKS_SUCCEEDED, -1),
    "redemption.rollback.failed": (f.ROLLBACKS_FAILED, 0),
}


#: The sum of each kind of card's balances, by the prefix of its registers.
CARD_TOTALS = {f.GIFT_CARD: f.GIFT_TO_GO, f.LOYALTY_CARD: f.CARD_TO_GO}
#: Counters moved by `A` operations only (names, or prefixes ending in ':').
SUMMED = (f.LOYALTY_POINTS, f.CAMPAIGN_POINTS)


def _balance_op(kind: str, code: str | None, balance: int | None) -> list[Op]:
    """A card's balance, when the event names the card and carries its balance."""
    if code is None or balance is None:
        return []
    register = f.GIFT_CARD if kind == "gift" else f.LOYALTY_CARD
    return [["B", register + code, str(balance), CARD_TOTALS[register]]]


def _redemption(event: RedemptionSucceeded) -> list[Op]:
    data: RedemptionData = event.data
    counter, sign = _REDEMPTION_OUTCOMES[event.type]
    deltas: list[str | None] = [counter, "1"]
    voucher_type = data.voucher.type
    if sign and voucher_type == "GIFT_VOUCHER" and data.amount:
        deltas += [f.GIFT_REDEEMED, str(sign * data.amount)]
    if sign and voucher_type == "LOYALTY_CARD" and data.points:
        deltas += [f.CARD_REDEEMED, str(sign * data.points)]
    key = f"redemption\n{data.redemption_id}\n{event.type}"
    ops: list[Op] = [["K", key, None, None, *deltas]]
    if voucher_type == "GIFT_VOUCHER":
        ops += _balance_op("gift", data.voucher.code, data.balance)
    elif voucher_type == "LOYALTY_CARD":
        ops += _balance_op("loyalty", data.voucher.code, data.balance)
    return ops


def _points(sign: int) -> Callable[[PointsAdded], list[Op]]:
    def ops(event: PointsAdded) -> list[Op]:
        data = event.data
        delta = str(sign * data.points)
        return [
            ["A", f.LOYALTY_POINTS, delta, f.CAMPAIGN_POINTS + data.campaign_id, delta],
            *_balance_op("loyalty", data.card_code, data.balance),
        ]

    return ops


def _tier(event: TierChanged) -> list[Op]:
    return [_set(f.TIER + event.data.campaign_id, event.data.tier)]


def _referee(event: ReferralCompleted) -> list[Op]:
    data = event.data
    entry = {
        "campaign_id": data.campaign_id,
        "referrer_id": data.referrer_id,
        "related_object_id": data.related_object_id,
        "related_object_type": data.related_object_type,
        "date": format_time(event.time),
        "t": to_micros(event.time),
    }
    key = f"referee\n{data.campaign_id}"
    return [["K", key, f.REFERRAL + data.campaign_id, _json(entry), f.REFERRALS_TOTAL, "1"]]


def contribution_field(key: str) -> str | None:
    """The visible field a natural key's contribution sets (a referee's referral entry)."""
    kind, _, campaign = key.partition("\n")
    return f.REFERRAL + campaign if kind == "referee" else None


def _referrer(event: ReferralCompleted) -> list[Op]:
    campaign = event.data.campaign_id
    key = f"referrer\n{campaign}\n{event.customer_id}"
    return [["K", key, None, None, f.LOYALTY_REFERRED, "1", f.CAMPAIGN_REFERRED + campaign, "1"]]


_OPS: dict[str, Callable[[Any], list[Op]]] = {
    "customer.create": _profile,
    "customer.update": _profile,
    "customer.delete": _delete,
    "customer.restore": _restore,
    "customer.erase": _erase,
    "order.created": _order("CREATED"),
    "order.paid": _order("PAID"),
    "order.fulfilled": _order("FULFILLED"),
    "order.canceled": _order("CANCELED"),
    "redemption.succeeded": _redemption,
    "redemption.failed": _redemption,
    "redemption.rollback.succeeded": _redemption,
    "redemption.rollback.failed": _redemption,
    "loyalty.points.added": _points(1),
    "loyalty.points.subtracted": _points(-1),
    "loyalty.tier.changed": _tier,
    "referral.completed": _referee,
}


def step_of(event: AnyInputEvent) -> Step:
    """The change an event makes to its customer (for a referral: the referee's side).
    An event naming its customer by `source_id` alone also sets that `source_id` on the
    implicit customer it creates or changes (always the same value, so the register's
    last writer does not matter)."""
    ops = _OPS[event.type](event)
    if event.subject is None and not isinstance(event, CustomerErase):
        ops.append(_set(f.SOURCE_ID, event.sourceid))
    return Step(event.customer_id, marker_of(event), to_micros(event.time), tuple(ops))


def referrer_step_of(event: ReferralCompleted) -> Step:
    """The referrer's side of a referral: applied by the worker that owns the referrer
    (the referral is forwarded to it, keyed by the referrer's id)."""
    return Step(
        event.data.referrer_id, marker_of(event), to_micros(event.time), tuple(_referrer(event))
    )
