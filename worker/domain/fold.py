"""The fold: one customer's steps applied to its stored fields, in memory (pure, no I/O).

A customer's stored fields (one Redis hash, names in `fields`) are the visible fields of the
record, the stamp ("micros|marker") of every register ("@" + name), internal state ("~o:"
order -> JSON, "~k:" natural key -> contribution JSON, "~" + card register -> balance), the
dedup markers ("#" + marker -> "version|sequence") and bookkeeping. The worker holds them
(`CustomerState`), folds a batch's steps into a copy-on-write view of them (`fold`), and the
store writes the difference (`Commit`) atomically if the stored fields are still the ones
the fold started from (their write token): see `worker.store.customer_store`.

The primitives (`worker.domain.steps` maps events onto them): `S` last-writer-wins register,
`C` clear a prefix of registers, `B` last-writer-wins card balance summed over cards, `A`
counters, `K` contribution of the earliest event per natural key, `O` per-order state
feeding the order summary, `E` erase. Stamps order events by (time, id, source): a total
order, compared byte-wise (str order is code-point order, which is UTF-8 byte order).

Exact numbers: the contract bounds every integer of an event by MAX = 2^53 - 1, and every
counter and sum is computed with Python's exact integers and checked against [-MAX, MAX]
before it is stored; an event that would push one out is refused whole (X), like one that
would grow the record beyond its caps (R). So every stored and published number is exact for
any JSON consumer; counts (orders, outcomes, referrals) add 1 per stored field, so the field
cap bounds them far below MAX. The average order amount is computed from the exact total and
count when the record is rendered.

Erasure and order: an erase at time T wipes the state, then folds again the logged events
dated after T (the replay log: the recent applied events, see `commit.lua`), so the record
does not depend on whether they arrived before or after it.
"""

import operator
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from contracts.identity import is_implicit
from contracts.scalars import MAX_SAFE_INTEGER
from worker.domain import fields as f
from worker.domain.steps import Step

LAYOUT_VERSION: Final = "2"
#: `Commit.expected` of a customer with no record yet, and of a layout 1 record (which has
#: no write token). Tokens themselves are 16 hex digits.
NO_RECORD: Final = "0"
LEGACY_RECORD: Final = "-"
_COUNTED: Final = frozenset({"PAID", "FULFILLED"})
_MISSING: Final = object()
# What one event may change besides fields: saved before it, restored if it is refused.
# record_fields (0) and visible_bytes (2) are also the caps checked after it.
_COUNTERS: Final = (
    "record_fields",
    "markers",
    "visible_bytes",
    "event_changed",
    "created",
    "updated",
)
_save_counters: Final = operator.attrgetter(*_COUNTERS)
_MAX: Final = MAX_SAFE_INTEGER


@dataclass(frozen=True, slots=True)
class FoldLimits:
    """How the fold publishes and what bounds one customer's state."""

    each_change: bool = False
    kept_markers: int = 256
    replay_window: int = 86_400 * 1_000_000  # microseconds
    max_fields: int = 10_000
    max_bytes: int = 256 * 1024


_BOOKKEEPING: Final = f.BOOKKEEPING


def _counts_for_cap(name: str) -> bool:
    """Fields the record cap counts: all but markers (bounded on their own) and bookkeeping."""
    return name[0] != "#" and name not in _BOOKKEEPING


def _size(name: str, value: str) -> int:
    """UTF-8 bytes of a visible field (name and value)."""
    if name.isascii() and value.isascii():
        return len(name) + len(value)
    return len(name.encode()) + len(value.encode())


def _order_date(state: dict[str, str]) -> str:
    """created_at of the latest event carrying one, else the earliest event time."""
    return state.get("d") or state["f"]


def _stamp(raw: str) -> tuple[int, str]:
    micros, _, marker = raw.partition("|")
    return int(micros), marker


class CustomerState:
    """A customer's stored fields as the worker holds them between batches, with counts the
    fold needs kept up to date (and, lazily, the counted orders)."""

    __slots__ = (
        "_counted",
        "customer_id",
        "fields",
        "log_count",
        "log_oldest",
        "log_trimmed",
        "markers",
        "record_fields",
        "rendered",
        "visible_bytes",
    )

    def __init__(self, customer_id: str, fields: dict[str, str], *, capped: bool = True) -> None:
        """`capped`: count what the caps bound (a pass over the fields); a state only
        `replay` folds into, which has no caps, skips it."""
        self.customer_id = customer_id
        self.fields = fields
        self.record_fields = self.markers = self.visible_bytes = 0
        if capped:
            self.record_fields = sum(1 for name in fields if _counts_for_cap(name))
            self.markers = sum(1 for name in fields if name[0] == "#")
            self.visible_bytes = sum(
                _size(name, value) for name, value in fields.items() if f.is_visible(name)
            )
        self._counted: dict[str, tuple[int, str]] | None = None
        self.rendered: object = None  # the pipeline's rendered record of these fields
        # The replay log as far as this worker knows it: its entries (None: unknown, as
        # after a restart) and a lower bound of its oldest time (None: empty or unknown).
        self.log_count: int | None = None
        self.log_oldest: int | None = None
        self.log_trimmed = -1  # latest time the count bound evicted, not yet in `lx`

    @property
    def version(self) -> int:
        """The visible version."""
        return int(self.fields.get(f.VERSION, 0))

    @property
    def write_token(self) -> str:
        """What the stored fields must still carry for a commit to apply (NO_RECORD: none)."""
        return self.fields.get(f.WRITE_TOKEN, NO_RECORD)

    def counted_orders(self) -> dict[str, tuple[int, str]]:
        """Counted orders: order id -> (order date, amount), read from the order states once."""
        if self._counted is None:
            counted = {}
            for name, raw in self.fields.items():
                if name.startswith(f.ORDER):
                    order = orjson.loads(raw)
                    if order["s"] in _COUNTED:
                        counted[name[len(f.ORDER) :]] = (int(_order_date(order)), order["a"])
            self._counted = counted
        return self._counted

    def commit(self, folded: "Folded", added: int, removed: int, kept: int, trimmed: int) -> None:
        """Keep the fold's changes: its commit was written, and the replay log gained
        `added` entries, lost `removed`, holds `kept` (-1: not counted) and had entries
        up to time `trimmed` evicted by the count bound (-1: none)."""
        self.log_trimmed = max(self.log_trimmed, trimmed)
        self.record_fields, self.markers = folded.record_fields, folded.markers
        self.visible_bytes = folded.visible_bytes
        if folded.counted is not None:
            self._counted = folded.counted
        commit = folded.commit
        assert commit is not None
        known = self.log_count is not None
        if kept >= 0:
            self.log_count = kept
        elif self.log_count is not None:
            self.log_count += added - removed
        if self.log_count == 0:
            self.log_oldest = None
            return
        # A lower bound of the oldest entry: the earliest known one or new one, and past
        # any time up to which entries were dropped.
        times = [entry[0] for entry in commit.log]
        if known and self.log_oldest is not None:
            times.append(self.log_oldest)
        low = min(times) if known and times else None
        cuts = [cut + 1 for cut in (commit.erase_cut, commit.age_cut) if cut is not None]
        self.log_oldest = max([*cuts, *([] if low is None else [low])], default=None)

    def undo(self, folded: "Folded") -> None:
        """Put the fields back as they were before the fold (its commit was not written)."""
        _revert(self.fields, folded.before.items())


def new_write_token() -> str:
    """A fresh write token: random, so that it never comes back (a counter could, after a
    Redis failover lost the latest writes, and then match a stale copy of the fields).
    64 bits of `random`'s generator, which the OS seeds (and seeds again in a forked child):
    a collision is as unlikely as with `os.urandom`, without a system call per commit."""
    return f"{random.getrandbits(64):016x}"


def _revert(fields: dict[str, str], before: Iterable[tuple[str, str | None]]) -> None:
    """Put fields back: (name, earlier value or None when it was absent), in this order."""
    for name, old in before:
        if old is None:
            fields.pop(name, None)
        else:
            fields[name] = old


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The customer's version, and the visible fields changed since the previous snapshot
    (None: removed); `wiped`: the visible state was emptied first (an erase). `cause` is
    the position of the step the version is attributed to."""

    version: int
    cause: int
    wiped: bool
    changes: dict[str, str | None]


@dataclass(slots=True)
class Commit:
    """What the store writes for one customer, in one atomic step, if the stored fields are
    still carry write token `expected`: field writes and deletions, replay log entries
    (micros, step JSON), for an erase the time up to which the log is dropped first, and
    the log's bounds to enforce (by age and by count)."""

    expected: str
    sets: dict[str, str]
    deletes: list[str]
    log: list[tuple[int, bytes]]
    erase_cut: int | None
    age_cut: int | None = None  # then drop the log entries dated up to this time
    trim: int | None = None  # then keep at most this many log entries


@dataclass(slots=True)
class Folded:
    """The fold of one customer's steps: an outcome letter per step (A applied, U applied
    without visible change, I ignored as erased, D duplicate, R refused by the record caps,
    X refused as out of the exact range), the snapshots to publish, and what to write."""

    letters: str
    snapshots: list[Snapshot]
    commit: Commit | None  # None: nothing to write
    before: dict[str, str | None]  # the fields it changed, as they were (see `undo`)
    record_fields: int
    markers: int
    visible_bytes: int
    counted: dict[str, tuple[int, str]] | None
    refold_refused: int = 0  # logged events that no longer fit after an erase
    beyond_log: bool = False  # an erase dated before what the log may have evicted


class _Refused(Exception):
    """The event being applied must be undone (its letter: R or X)."""

    def __init__(self, letter: str) -> None:
        super().__init__(letter)
        self.letter = letter


class _Fold:
    """One fold: a copy of the state's fields, changed in place, with the names it wrote
    and an undo journal per event. The methods named like the primitives apply one
    operation of the event being applied."""

    def __init__(
        self, state: CustomerState, limits: FoldLimits, logged: Sequence[tuple[int, bytes]] | None
    ) -> None:
        self.state = state
        self.fields = state.fields  # changed in place; `undo` puts it back
        self.before: dict[str, str | None] = {}  # the value before this fold of each written name
        self.limits = limits
        self.logged = logged
        self.journal: list[tuple[str, str | None]] = []  # every write, to undo one event
        self.record_fields = state.record_fields
        self.markers = state.markers
        self.visible_bytes = state.visible_bytes
        self.counted: dict[str, tuple[int, str]] | None = None
        self.counted_journal: list[tuple[str, object]] = []
        self.changed: set[str] = set()
        self.newly_changed: list[str] = []  # names added to `changed`, to undo one event
        # The customer's earliest and latest event times (parsed once).
        created, updated = self.fields.get(f.CREATED_AT), self.fields.get(f.UPDATED_AT)
        self.created = None if created is None else int(created)
        self.updated = None if updated is None else int(updated)
        self.event_changed = False
        self.wiped = False
        # The event being applied: micros as text and number, marker.
        self.ts, self.t, self.m = "", 0, ""

    # ------------------------------------------------------------------------ fields
    def assign(self, name: str, value: str | None) -> str | None:
        """Set (None: delete) a field; returns its old value."""
        fields = self.fields
        old = fields.get(name)
        if old == value:
            return old
        self.journal.append((name, old))
        if value is None:
            del fields[name]
        elif old is None:  # a new key of a state that may be cached
            fields[f.held_name(name)] = value
        else:
            fields[name] = value
        if name not in self.before:
            self.before[name] = old
        if old is None or value is None:  # a field appears or goes: the counts move
            delta = 1 if old is None else -1
            if name[0] == "#":
                self.markers += delta
            elif name not in _BOOKKEEPING:
                self.record_fields += delta
        return old

    def put(self, name: str, value: str | None) -> None:
        """Set a visible field: tracked for the snapshots and the byte cap."""
        old = self.assign(name, value)
        if old == value:
            return
        if old is None:
            self.visible_bytes += _size(name, value)  # type: ignore[arg-type]
        elif value is None:
            self.visible_bytes -= _size(name, old)
        else:
            self.visible_bytes += _size("", value) - _size("", old)
        if name not in self.changed:
            self.changed.add(name)
            self.newly_changed.append(name)
        self.event_changed = True

    def book(self, name: str, value: str | None) -> str | None:
        """Set a bookkeeping field: written outside `apply` only, so never undone with an
        event. (A method, not an alias of `assign`: mypyc compiles no class-level alias.)"""
        return self.assign(name, value)

    def add(self, name: str, delta: int) -> None:
        if delta:
            value = int(self.fields.get(name) or 0) + delta
            if not -_MAX <= value <= _MAX:
                raise _Refused("X")
            self.put(name, str(value))

    # ------------------------------------------------------------------------ registers
    def stamp_of(self, register: str) -> tuple[int, str] | None:
        raw = self.fields.get(f.STAMP + register)
        return None if raw is None else _stamp(raw)

    def later_than(self, t: int, m: str) -> bool:
        """Is the event being applied later than stamp (t, m)?"""
        return self.t > t or (self.t == t and self.m > m)

    def wins(self, register: str) -> bool:
        stamp = self.stamp_of(register)
        return stamp is None or self.later_than(*stamp)

    def take(self, register: str) -> None:
        self.assign(f.STAMP + register, f"{self.ts}|{self.m}")

    def touch(self) -> None:
        if self.created is None or self.t < self.created:
            self.put(f.CREATED_AT, self.ts)
            self.created = self.t
        if self.updated is None or self.t > self.updated:
            self.put(f.UPDATED_AT, self.ts)
            self.updated = self.t

    def op_S(self, op: Sequence[Any]) -> None:
        name, value, guard = op[1], op[2], op[3]
        if guard is not None:
            stamp = self.stamp_of(guard)
            if stamp is not None and not self.later_than(*stamp):
                return
        if self.wins(name):
            self.take(name)
            self.put(name, value)

    def op_C(self, op: Sequence[Any]) -> None:
        prefix, register = op[1], op[2]
        if not self.wins(register):
            return
        self.take(register)
        doomed = [name for name in self.fields if name.startswith(prefix) and self.wins(name)]
        for name in doomed:
            self.put(name, None)

    def op_B(self, op: Sequence[Any]) -> None:
        register, balance, total = op[1], op[2], op[3]
        if not self.wins(register):
            return
        self.take(register)
        old = self.assign(f.CARD + register, balance)
        self.add(total, int(balance) - int(old or 0))

    def op_A(self, op: Sequence[Any]) -> None:
        for k in range(1, len(op), 2):
            name, delta = op[k], op[k + 1]
            self.add(name, int(delta))

    def op_K(self, op: Sequence[Any]) -> None:
        key, value_field, value = op[1], op[2], op[3]
        name = f.CONTRIBUTION + str(key)
        net: dict[str, int] = {}
        current = self.fields.get(name)
        if current is not None:
            earlier = orjson.loads(current)
            if self.later_than(int(earlier["t"]), earlier["m"]):
                return  # the earliest event of the key counts, and it is counted already
            d = earlier["d"]
            for k in range(0, len(d), 2):
                net[d[k]] = net.get(d[k], 0) - int(d[k + 1])
        deltas = list(op[4:])
        for k in range(0, len(deltas), 2):
            counter = deltas[k]
            net[counter] = net.get(counter, 0) + int(deltas[k + 1] or 0)
        self.assign(name, orjson.dumps({"t": self.ts, "m": self.m, "d": deltas}).decode())
        for counter, delta in net.items():
            self.add(counter, delta)
        if value_field is not None:
            self.put(value_field, value)

    def op_O(self, op: Sequence[Any]) -> None:
        order_id, status, amount, created = op[1], op[2], op[3], op[4]
        name = f.ORDER + order_id
        raw = self.fields.get(name)
        if raw is not None:
            order = orjson.loads(raw)
            was_counted, old_amount = order["s"] in _COUNTED, order["a"]
            old_date = _order_date(order)
            if self.t < int(order["f"]):
                order["f"] = self.ts
        else:
            order, was_counted, old_amount, old_date = {"f": self.ts}, False, "0", ""
        if created is not None and (
            "dt" not in order or self.later_than(int(order["dt"]), order["dm"])
        ):
            order["d"], order["dt"], order["dm"] = created, self.ts, self.m
        if "t" not in order or self.later_than(int(order["t"]), order["m"]):
            order["s"], order["a"], order["t"], order["m"] = status, amount, self.ts, self.m
        self.settle_order(order_id, order, was_counted, old_amount, old_date)

    def op_M(self, op: Sequence[Any]) -> None:
        """Merge another record's state of an order (see `replay`): each part is taken
        if it is the later, the first time is the earlier."""
        order_id, other = op[1], op[2]
        name = f.ORDER + order_id
        raw = self.fields.get(name)
        if raw is None:
            self.settle_order(order_id, dict(other), False, "0", "")
            return
        order = orjson.loads(raw)
        was_counted, old_amount, old_date = order["s"] in _COUNTED, order["a"], _order_date(order)
        if int(other["f"]) < int(order["f"]):
            order["f"] = other["f"]
        for part in (("d", "dt", "dm"), ("s", "a", "t", "m")):
            stamp, marker = part[-2], part[-1]
            if stamp in other and (
                stamp not in order
                or (int(other[stamp]), other[marker]) > (int(order[stamp]), order[marker])
            ):
                order.update({key: other[key] for key in part})
        self.settle_order(order_id, order, was_counted, old_amount, old_date)

    def settle_order(
        self,
        order_id: str,
        order: dict[str, str],
        was_counted: bool,
        old_amount: str,
        old_date: str,
    ) -> None:
        """Store an order's new state and move the order summary accordingly."""
        self.assign(f.ORDER + order_id, orjson.dumps(order).decode())
        counted, date = order["s"] in _COUNTED, _order_date(order)
        self.add(
            f.ORDERS_TOTAL_AMOUNT,
            (int(order["a"]) if counted else 0) - (int(old_amount) if was_counted else 0),
        )
        self.add(f.ORDERS_TOTAL_COUNT, int(counted) - int(was_counted))
        if counted != was_counted or (counted and (date != old_date or order["a"] != old_amount)):
            self.count_order(order_id, (int(date), order["a"]) if counted else None)

    def count_order(self, order_id: str, entry: tuple[int, str] | None) -> None:
        """Update the counted orders and the last order (the latest by date, then id)."""
        if self.counted is None:
            self.counted = dict(self.state.counted_orders())
        counted = self.counted
        self.counted_journal.append((order_id, counted.get(order_id, _MISSING)))
        if entry is None:
            counted.pop(order_id, None)
        else:
            counted[order_id] = entry
        if counted:
            last = max(counted, key=lambda order: (counted[order][0], order))
            date, amount = counted[last]
            self.put(f.ORDERS_LAST_AMOUNT, amount)
            self.put(f.ORDERS_LAST_DATE, str(date))
        else:
            self.put(f.ORDERS_LAST_AMOUNT, None)
            self.put(f.ORDERS_LAST_DATE, None)

    # ------------------------------------------------------------------------ events
    def apply(self, step_micros: int, marker: str, ops: Sequence[Sequence[Any]]) -> str | None:
        """Apply one event, or undo it entirely; returns the refusal letter, if refused."""
        journal, counted_journal, newly_changed = (
            self.journal,
            self.counted_journal,
            self.newly_changed,
        )
        marks = (len(journal), len(counted_journal), len(newly_changed))
        saved = _save_counters(self)
        self.ts, self.t, self.m = str(step_micros), step_micros, marker
        try:
            self.touch()
            for op in ops:
                _PRIMITIVES[op[0]](self, op)
            if self.record_fields > saved[0] and self.record_fields > self.limits.max_fields:
                raise _Refused("R")
            if self.visible_bytes > saved[2] and self.visible_bytes > self.limits.max_bytes:
                raise _Refused("R")
        except _Refused as refused:
            _revert(self.fields, reversed(journal[marks[0] :]))
            for order_id, entry in reversed(counted_journal[marks[1] :]):
                assert self.counted is not None
                if entry is _MISSING:
                    self.counted.pop(order_id, None)
                else:
                    self.counted[order_id] = entry  # type: ignore[assignment]
            self.changed.difference_update(newly_changed[marks[2] :])
            del journal[marks[0] :], counted_journal[marks[1] :], newly_changed[marks[2] :]
            for name, value in zip(_COUNTERS, saved, strict=True):
                setattr(self, name, value)
            return refused.letter
        return None

    def named_until(self, micros: int, pending: Sequence[tuple[int, bytes]]) -> list[str]:
        """The source_ids the customer's events dated up to `micros` set: those of the
        replay log and this fold's, and the register's own if it is that old."""
        named = [
            source_id
            for entry_micros, encoded in (*(self.logged or ()), *pending)
            if entry_micros <= micros
            for source_id in _named_source_ids(orjson.loads(encoded)["o"])
        ]
        stamp = self.stamp_of(f.SOURCE_ID)
        current = self.fields.get(f.SOURCE_ID)
        if current is not None and stamp is not None and stamp[0] <= micros:
            named.append(orjson.loads(current))
        return named

    def erase(self, micros: int, pending: Sequence[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """Wipe everything but bookkeeping and markers; returns the logged events dated after
        the erase (those of the log and this fold's), to fold again."""
        if self.logged is None:
            raise RuntimeError("an erase needs the customer's replay log")
        self.ts, self.t = str(micros), micros
        for name in [n for n in self.fields if _counts_for_cap(n)]:
            if f.is_visible(name):
                self.put(name, None)
            else:
                self.assign(name, None)
        self.counted = {}
        self.created = self.updated = None
        self.book(f.ERASED_UNTIL, str(micros))
        self.changed, self.event_changed, self.wiped = set(), True, True
        return sorted(entry for entry in (*self.logged, *pending) if entry[0] > micros)

    def snapshot(self, version: int, index: int) -> Snapshot:
        taken = Snapshot(
            version, index, self.wiped, {name: self.fields.get(name) for name in self.changed}
        )
        self.changed, self.wiped = set(), False
        return taken


_PRIMITIVES: dict[str, Callable[[_Fold, Sequence[Any]], None]] = {
    "S": _Fold.op_S,
    "C": _Fold.op_C,
    "B": _Fold.op_B,
    "A": _Fold.op_A,
    "K": _Fold.op_K,
    "O": _Fold.op_O,
    "M": _Fold.op_M,
}


def replay(
    fields: dict[str, str], items: Iterable[tuple[int, str, Sequence[Sequence[Any]]]]
) -> set[str]:
    """Apply primitive operations to `fields` in place, each list at its stamp (micros,
    marker), as events would be but with no caps, markers or bookkeeping: for a view of
    two customers' states together (`worker.domain.merge`); returns the visible fields
    it changed. A sum leaving the exact range raises `ValueError`."""
    w = _Fold(CustomerState("", fields, capped=False), _UNBOUNDED, None)
    for micros, marker, ops in items:
        w.ts, w.t, w.m = str(micros), micros, marker
        w.touch()
        try:
            for op in ops:
                _PRIMITIVES[op[0]](w, op)
        except _Refused as refused:
            raise ValueError("a merged sum leaves the exact range") from refused
    return w.changed


_UNBOUNDED: Final = FoldLimits(max_fields=2**62, max_bytes=2**62)


def _marker_version(raw: str) -> int:
    return int(raw.partition("|")[0])


def fold(
    state: CustomerState,
    steps: Sequence[Step],
    limits: FoldLimits,
    confirmed: int = 0,
    logged: Sequence[tuple[int, bytes]] | None = None,
    joined: bool = False,
) -> Folded:
    """Fold `steps` (one customer's, in delivery order) into `state`'s fields, in place:
    `CustomerState.commit` keeps the result once written, `CustomerState.undo` reverts it.
    (If the fold raises, the fields are reverted before the error propagates.)

    `confirmed` is the version last known to be published (see `published` below); `logged`
    the customer's replay log (micros, step JSON), needed when a step is an erase. A
    `joined` customer shows another's fields joined to its own (`worker.domain.merge`):
    any write may change what it shows, so every event that writes is a new version.
    """
    w = _Fold(state, limits, logged)
    try:
        return _fold(w, state, steps, limits, confirmed, joined)
    except BaseException:
        _revert(state.fields, w.before.items())
        raise


def _fold(
    w: "_Fold",
    state: CustomerState,
    steps: Sequence[Step],
    limits: FoldLimits,
    confirmed: int,
    joined: bool,
) -> Folded:
    version, expected = state.version, state.write_token
    published = int(w.fields.get(f.PUBLISHED_VERSION, 0))
    if confirmed > published:
        published = confirmed
        w.book(f.PUBLISHED_VERSION, str(confirmed))
    erased_until = int(w.fields.get(f.ERASED_UNTIL, -1))
    sequence = int(w.fields.get(f.MARKER_SEQUENCE, 0))
    letters: list[str] = []
    snapshots: list[Snapshot] = []
    log: list[tuple[int, bytes]] = []
    new_markers: dict[str, int] = {}
    pending, last_applied, republish_for, erase_cut, refold_refused = False, 0, -1, None, 0
    beyond_log = False
    explicit = not is_implicit(state.customer_id)
    for index, step in enumerate(steps):
        marker = step.marker
        marker_field = f.MARKER + marker
        seen = new_markers.get(marker)
        if seen is None:
            raw = w.fields.get(marker_field)
            seen = None if raw is None else _marker_version(raw)
        letter: str | None
        if seen is not None:
            letter = "D"
            if seen > published:  # its version may never have been published: again
                republish_for = index
        elif step.notice:
            letter = "U"
            name, value, before = str(step.ops[0][1]), step.ops[0][2], step.ops[0][3]
            if w.fields.get(name) != value:
                old = w.book(name, value)
                if before is not None and old is not None:
                    w.book(before, _remembered(w.fields.get(before), old))
                if f.CREATED_AT in w.fields:  # the record exists: it shows another view
                    letter, version, pending, last_applied = "A", version + 1, True, index
                    if limits.each_change:
                        snapshots.append(w.snapshot(version, index))
                        pending = False
        elif step.micros <= erased_until:
            letter = "I"
            if explicit:
                _book_erased(w, _named_source_ids(step.ops))
        else:
            w.event_changed = False
            refold: list[tuple[int, bytes]] = []
            erasing = step.erases
            if erasing:
                beyond_log = beyond_log or _beyond_log(w.fields, step.micros, limits, state)
                if explicit:
                    _book_erased(w, w.named_until(step.micros, log))
                refold = w.erase(step.micros, log)
                erased_until = step.micros
                erase_cut = step.micros
                letter = None
            else:
                journaled = len(w.journal)
                letter = w.apply(step.micros, marker, step.ops)
                if letter is None and limits.replay_window > 0:
                    log.append((step.micros, step.encode()))
                if joined and letter is None and len(w.journal) > journaled:
                    w.event_changed = True
            if letter is None:
                if w.event_changed:
                    letter, version, pending, last_applied = "A", version + 1, True, index
                    if limits.each_change or erasing:
                        snapshots.append(w.snapshot(version, index))
                        pending = False
                else:
                    letter = "U"
            if refold:  # a fresh record from the events dated after the erase
                w.event_changed = False
                for micros, encoded in refold:
                    logged_step = orjson.loads(encoded)
                    if w.apply(micros, logged_step["m"], logged_step["o"]) is not None:
                        refold_refused += 1
                if w.event_changed:
                    version, pending = version + 1, True
        if seen is None and letter not in ("R", "X") and not (step.notice and letter == "U"):
            new_markers[marker] = version
            w.book(marker_field, f"{version}|{sequence}")
            sequence += 1
        letters.append(letter)
    if joined and republish_for >= 0 and not pending and not snapshots:
        # What a joined record shows depends on the other customer too: publishing the
        # unconfirmed version again could show other content under the same version.
        version, pending, last_applied = version + 1, True, republish_for
    if version != state.version:
        w.book(f.VERSION, str(version))
    if pending:
        snapshots.append(w.snapshot(version, last_applied))
    elif republish_for >= 0 and not snapshots:
        snapshots.append(w.snapshot(version, republish_for))
    if new_markers:
        w.book(f.MARKER_SEQUENCE, str(sequence))
        _bound_markers(w, limits.kept_markers)
    if erase_cut is not None:
        log = [entry for entry in log if entry[0] > erase_cut]
    fields = w.fields
    if explicit:
        _book_claim(w)
    age_cut, trim, log = _bound_log(w, state, limits, log)
    commit = None
    written = [name for name, old in w.before.items() if old != fields.get(name)]
    if written or log:
        if fields.get(f.LAYOUT) != LAYOUT_VERSION:
            w.book(f.LAYOUT, LAYOUT_VERSION)
            written.append(f.LAYOUT)
        w.book(f.WRITE_TOKEN, new_write_token())
        written.append(f.WRITE_TOKEN)
        commit = Commit(
            expected=expected,
            sets={name: fields[name] for name in written if name in fields},
            deletes=[name for name in written if name not in fields],
            log=log,
            erase_cut=erase_cut,
            age_cut=age_cut,
            trim=trim,
        )
    return Folded(
        "".join(letters),
        snapshots,
        commit,
        w.before,
        w.record_fields,
        w.markers,
        w.visible_bytes,
        w.counted,
        refold_refused,
        beyond_log,
    )


#: Previous values kept (source_ids a record had, customers that held a source_id).
_REMEMBERED: Final = 8


def _remembered(kept: str | None, value: str) -> str:
    """A JSON list of the latest values, `value` first, at most `_REMEMBERED` of them."""
    earlier = [] if kept is None else [v for v in orjson.loads(kept) if v != value]
    return orjson.dumps([value, *earlier][:_REMEMBERED]).decode()


def _book_claim(w: _Fold) -> None:
    """Keep what the source_id index needs to hear in the record, written with it: the
    `source_id` claimed (`CLAIMED`, which also makes records written before claims
    existed claim on their next write) and the ones it had before, to release them again
    if the batch stops before the index hears of it (see `worker.domain.identity`)."""
    fields = w.fields
    current = fields.get(f.SOURCE_ID)
    claimed = fields.get(f.CLAIMED)
    if claimed == current:
        return
    if claimed is not None:
        w.book(f.PREVIOUS_SOURCE_IDS, _remembered(fields.get(f.PREVIOUS_SOURCE_IDS), claimed))
    w.book(f.CLAIMED, current)


def _named_source_ids(ops: Sequence[Sequence[Any]]) -> list[str]:
    """The source_ids an event's operations set (a profile write of `source_id`)."""
    return [
        orjson.loads(op[2])
        for op in ops
        if op[0] == "S" and op[1] == f.SOURCE_ID and op[2] is not None
    ]


def names_source_id(step: Step) -> bool:
    """Whether an event sets a `source_id` (which its customer's erase then reaches)."""
    return bool(_named_source_ids(step.ops))


def _book_erased(w: _Fold, named: Iterable[str]) -> None:
    """Remember the source_ids an explicit customer's erased events named: its erase
    reaches their implicit customers too (see `worker.notices.erasure`)."""
    for source_id in named:
        kept = w.fields.get(f.ERASED_SOURCE_IDS)
        if kept is None or source_id not in orjson.loads(kept):
            w.book(f.ERASED_SOURCE_IDS, _remembered(kept, source_id))


def _beyond_log(
    fields: dict[str, str], micros: int, limits: FoldLimits, state: CustomerState
) -> bool:
    """Whether an erase at `micros` is dated before events the replay log may no longer
    hold (then the fresh record may miss some of the events dated after the erase)."""
    if limits.replay_window <= 0:  # nothing is logged: any event dated after it is gone
        return micros < int(fields.get(f.UPDATED_AT, -1))
    evicted = max(int(fields.get(f.LOG_EVICTED_UNTIL, -1)), state.log_trimmed)
    return micros < evicted


def _bound_log(
    w: _Fold, state: CustomerState, limits: FoldLimits, log: list[tuple[int, bytes]]
) -> tuple[int | None, int | None, list[tuple[int, bytes]]]:
    """The replay log's bounds to enforce with this fold's commit: the time up to which to
    drop entries (the window before the customer's latest event, enforced once the oldest
    entry is half a window past it, so that eviction costs O(1) per event amortised) and
    how many entries to keep at most (enforced once a quarter more may have accumulated;
    always, once, when this worker does not know the log yet). `lx`, an upper bound of the
    latest time evicted, moves along."""
    window, kept = limits.replay_window, limits.kept_markers
    latest = w.fields.get(f.UPDATED_AT)
    evicted = max(int(w.fields.get(f.LOG_EVICTED_UNTIL, -1)), state.log_trimmed)
    age_cut = trim = None
    if window > 0 and latest is not None:
        cut = int(latest) - window
        late = [entry[0] for entry in log if entry[0] <= cut]
        if late:  # dated beyond the window already: not logged at all
            evicted = max(evicted, *late)
            log = [entry for entry in log if entry[0] > cut]
        oldest, count = state.log_oldest, state.log_count
        if count is None or (count > 0 and (oldest is None or oldest <= cut - window // 2)):
            age_cut = cut
            evicted = max(evicted, cut)
    if window > 0 and (
        state.log_count is None or state.log_count + len(log) > kept + max(1, kept // 4)
    ):
        trim = kept
    if evicted > int(w.fields.get(f.LOG_EVICTED_UNTIL, -1)):
        w.book(f.LOG_EVICTED_UNTIL, str(evicted))
    return age_cut, trim, log


def _bound_markers(w: _Fold, kept: int) -> None:
    """Keep at least `kept` markers, the most recent: evicted a quarter of that at a time,
    so that eviction costs O(1) per event amortised."""
    if w.markers <= kept + max(1, kept // 4):
        return
    markers = [
        (int(raw.partition("|")[2]), name) for name, raw in w.fields.items() if name[0] == "#"
    ]
    markers.sort()
    for _, name in markers[: len(markers) - kept]:
        w.book(name, None)
