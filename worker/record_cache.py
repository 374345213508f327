"""The state of recently changed customers, kept between batches.

A customer's events meet in one worker (range assignment, input keyed by customer id), so
its next batch usually finds its stored fields here, with its rendered record: the fold
starts from them without reading Redis, the write is checked against the stored write
sequence (a stale copy is refused and replaced), and only the sections a change touches are
rendered again.

Bounded twice: by customers and by an estimate of the memory their states hold. A record
grows with its customer's history (markers, orders, cards: up to the record caps), so a
count alone would let the cache grow with the records until the process runs out of memory.
"""

from collections import OrderedDict
from typing import Final

from worker.domain.fold import CustomerState
from worker.domain.record import RenderedRecord

#: Memory of one stored field in a cached state beyond its characters: the dict entry, its
#: value's string object and, for a marker, its name's (other names are shared: see
#: `fields.held_name`). Measured on CPython 3.11 with the benchmark's records: ~160 bytes.
FIELD_OVERHEAD_BYTES: Final = 160


def footprint(state: CustomerState) -> int:
    """Estimated bytes a cached state holds: its fields, its rendered record (about as
    large as the visible fields' text) and the join that record shows, if any (about as
    large as the fields again)."""
    size = len(state.fields) * FIELD_OVERHEAD_BYTES + 2 * state.visible_bytes
    rendered = state.rendered
    if isinstance(rendered, RenderedRecord) and rendered.view is not None:
        size += len(rendered.view.fields) * FIELD_OVERHEAD_BYTES + state.visible_bytes
    return size


class RecordCache:
    """At most `capacity` customers and about `max_bytes` of their states, least recently
    used evicted first."""

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[CustomerState, int]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, customer_id: str) -> CustomerState | None:
        """Remove and return a customer's state, while a batch works on it."""
        entry = self._entries.pop(customer_id, None)
        if entry is None:
            return None
        self.bytes -= entry[1]
        return entry[0]

    def peek(self, customer_id: str) -> CustomerState | None:
        """A customer's state, left in place (to read it, not to change it), as the most
        recently used: an implicit customer is read for its holder's every write, while
        it is written far less often."""
        entry = self._entries.get(customer_id)
        if entry is None:
            return None
        self._entries.move_to_end(customer_id)
        return entry[0]

    def put(self, state: CustomerState) -> None:
        """Keep a customer's state (as the most recently used)."""
        self.take(state.customer_id)
        size = footprint(state)
        self._entries[state.customer_id] = (state, size)
        self.bytes += size
        entries = self._entries
        while entries and (len(entries) > self._capacity or self.bytes > self._max_bytes):
            self.bytes -= entries.popitem(last=False)[1][1]
