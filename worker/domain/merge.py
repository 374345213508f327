"""Two customers' stored fields seen as one (pure, no I/O): the record of the customer that
holds a `source_id`, with the events of that `source_id`'s implicit customer counted too.

The fold's primitives are conflict-free, so the state of a set of events can be joined with
the state of another set: every register, card balance, order part and natural key of the
other state is applied again at its own stamp, and the counters that only `A` operations
move are added. The result is the state of both sets of events folded together, whatever
order they came in: each event counts once, because it was folded into one of the two.
Nothing of it is stored; it is rendered.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from worker.domain import fields as f
from worker.domain.fields import is_visible, visible_fields
from worker.domain.fold import replay
from worker.domain.steps import CARD_TOTALS, SUMMED, contribution_field


def joined_fields(own: Mapping[str, str], other: Mapping[str, str]) -> dict[str, str] | None:
    """The visible fields of `own` and `other` joined (None: a sum would leave the exact
    range; then the record shows its own fields alone)."""
    view = JoinedView.of(own, other)
    return None if view is None else visible_fields(view.fields)


@dataclass(slots=True)
class JoinedView:
    """Two customers' stored fields joined (`merged`), kept between batches with the
    holder's rendered record, and the write tokens of the two states it joins. While the
    other state stays the same, a later write of the holder's is replayed onto it instead
    of joining again: the primitives commute, so that is the join of the new state."""

    own_token: str
    other_token: str
    fields: dict[str, str]

    @classmethod
    def of(cls, own: Mapping[str, str], other: Mapping[str, str]) -> "JoinedView | None":
        """The join of both states (None: a sum would leave the exact range)."""
        try:
            joined = merged(own, other)
        except ValueError:
            return None
        kept = {name: value for name, value in joined.items() if not _unreplayed(name)}
        return cls(own.get(f.WRITE_TOKEN, ""), other.get(f.WRITE_TOKEN, ""), kept)

    def advance(
        self,
        own: tuple[str, str],
        other: Mapping[str, str],
        applied: Iterable[tuple[int, str, Sequence[Any]]],
    ) -> dict[str, str | None] | None:
        """Replay the holder's events applied since (micros, marker, operations), its write
        token having moved from `own[0]` to `own[1]`; returns the visible fields changed
        (None: the view is not of these states, or a sum left the exact range; then it
        is spoiled and the states are joined again)."""
        if self.own_token != own[0] or self.other_token != other.get(f.WRITE_TOKEN, ""):
            return None
        try:
            changed = replay(self.fields, applied)
        except ValueError:
            return None
        self.own_token = own[1]
        return {name: self.fields.get(name) for name in changed if is_visible(name)}


def _unreplayed(name: str) -> bool:
    """Markers and bookkeeping: no primitive reads them, and none is shown (left out of a
    kept view, which is then about the size of the visible fields and their stamps)."""
    return name[0] == f.MARKER or name in f.BOOKKEEPING


def merged(own: Mapping[str, str], other: Mapping[str, str]) -> dict[str, str]:
    """`own` fields with `other`'s folded in (raises ValueError if a sum leaves the exact
    range)."""
    fields = dict(own)
    for name in other:  # a sum the other has shows, even at 0 (as a campaign's points)
        if name.startswith(SUMMED):
            fields.setdefault(name, "0")
    replay(fields, _operations(other))
    return fields


def _operations(other: Mapping[str, str]) -> Iterator[tuple[int, str, Sequence[Any]]]:
    """The other state as primitive operations, each at the stamp it was applied with."""
    for name, raw in other.items():
        if name[0] not in "@~":  # not a stamp, contribution or order: nothing to apply
            continue
        if name.startswith(f.STAMP):
            register = name[len(f.STAMP) :]
            micros, _, marker = raw.partition("|")
            yield int(micros), marker, [_register(register, other)]
        elif name.startswith(f.CONTRIBUTION):
            key, contribution = name[len(f.CONTRIBUTION) :], orjson.loads(raw)
            field = contribution_field(key)
            value = None if field is None else other.get(field)
            operation = ["K", key, field, value, *contribution["d"]]
            yield int(contribution["t"]), contribution["m"], [operation]
        elif name.startswith(f.ORDER):
            order = orjson.loads(raw)
            yield int(order["f"]), "", [["M", name[len(f.ORDER) :], order]]
    if f.CREATED_AT in other:  # the earliest and latest times, and the plain sums
        sums = [part for k, v in other.items() if k.startswith(SUMMED) for part in (k, v)]
        yield int(other[f.CREATED_AT]), "", [["A", *sums]]
        yield int(other[f.UPDATED_AT]), "", []


def _register(register: str, other: Mapping[str, str]) -> list[str | None]:
    """The operation that set a register of the other state."""
    for prefix, total in CARD_TOTALS.items():
        if register.startswith(prefix):
            return ["B", register, other[f.CARD + register], total]
    if register == f.METADATA_CLEARED:
        return ["C", f.METADATA, f.METADATA_CLEARED]
    guard = f.METADATA_CLEARED if register.startswith(f.METADATA) else None
    return ["S", register, other.get(register), guard]
