"""The state of recently changed customers, kept between batches.

A customer's events meet in one worker (range assignment, input keyed by customer id), so
its next batch usually finds its stored fields here, with its rendered record: the fold
starts from them without reading Redis, the write is checked against the stored write
sequence (a stale copy is refused and replaced), and only the sections a change touches are
rendered again.
"""

from collections import OrderedDict

from worker.domain.fold import CustomerState


class RecordCache:
    """At most `capacity` customers, least recently used evicted first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, CustomerState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, customer_id: str) -> CustomerState | None:
        """Remove and return a customer's state, while a batch works on it."""
        return self._entries.pop(customer_id, None)

    def put(self, state: CustomerState) -> None:
        """Keep a customer's state (as the most recently used)."""
        self._entries[state.customer_id] = state
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
