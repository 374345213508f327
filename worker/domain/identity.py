"""Who holds a `source_id`: the claims a written fold makes or withdraws, and the rule that
picks the holder among several claims (pure, no I/O).

A customer with an explicit id claims the `source_id` its record holds (the profile field,
a last-writer-wins register). The holder is the claimant whose record is the oldest: the
earliest `created_at` (the earliest time of any event applied to it), then the smaller
customer id. That is a fact of the set of events, whatever order they arrived in, and it
does not move when a producer sends the same profile again. Any other claimant is in
conflict, which is surfaced and never merged. With no claimant, the `source_id` belongs to
its implicit customer (`contracts.identity`).
"""

from dataclasses import dataclass

import orjson

from contracts.identity import implicit_customer_id, is_implicit
from worker.domain import fields as f
from worker.domain.fold import CustomerState, Folded


@dataclass(frozen=True, slots=True)
class IdentityChange:
    """What the source_id index must learn about one customer once its fold is written:
    the `source_id` it claims, with the claim stamp, and those it no longer claims."""

    customer_id: str
    claim: tuple[str, str] | None
    releases: tuple[str, ...]


def identity_change(state: CustomerState, folded: Folded) -> IdentityChange | None:
    """The claim and releases after `folded` was written to `state`, if the index may not
    know them yet: the `source_id` claimed changed (`fields.CLAIMED`), or its claim's
    order did (the record's `created_at`), or a redelivered event says that the batch
    that changed them may have stopped between its write and the index's. Releases are
    of every `source_id` the record had lately (`fields.PREVIOUS_SOURCE_IDS`): releasing
    one twice is harmless, forgetting one is not. Implicit customers claim nothing: their
    `source_id` is the one their id derives from."""
    if is_implicit(state.customer_id):
        return None
    stored, before = state.fields, folded.before
    current, previous = stored.get(f.SOURCE_ID), stored.get(f.PREVIOUS_SOURCE_IDS)
    moved = f.CLAIMED in before or (
        current is not None
        and f.CREATED_AT in before
        and before[f.CREATED_AT] != stored.get(f.CREATED_AT)
    )
    if not moved and not ("D" in folded.letters and (current or previous)):
        return None
    claim = None
    if current is not None:
        claim = (orjson.loads(current), stored[f.CREATED_AT])
    earlier = [] if previous is None else orjson.loads(previous)
    releases = tuple(orjson.loads(value) for value in earlier if value != current)
    return IdentityChange(state.customer_id, claim, releases)


def joined_implicit(stored: dict[str, str]) -> tuple[str, str] | None:
    """The implicit customer whose fields an explicit customer's record shows joined to
    its own, and the write token it was told of: the one `JOINED` names, if it is still
    the one of the record's `source_id`."""
    view = stored.get(f.JOINED)
    if view is None:
        return None
    source_id, _, token = view.rpartition("|")
    if stored.get(f.SOURCE_ID) != orjson.dumps(source_id).decode():
        return None
    return implicit_customer_id(source_id), token


@dataclass(frozen=True, slots=True)
class Claim:
    """One customer's claim on a `source_id`, checked against its record: `valid` if the
    record holds the `source_id` (else it is left over, and ignored), `stamp` the record's
    `created_at` in microseconds (for a left-over claim, the index's), `indexed` the
    index's value."""

    customer_id: str
    stamp: str
    valid: bool
    indexed: str

    @property
    def order(self) -> tuple[int, str]:
        return int(self.stamp), self.customer_id


def holder(claims: list[Claim]) -> Claim | None:
    """The valid claim that holds the `source_id`: the earliest (see the module)."""
    return min((c for c in claims if c.valid), key=lambda c: c.order, default=None)
