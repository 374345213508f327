"""Redis key layout: every key of one customer carries the hash tag `{customer_id}`."""

from dataclasses import dataclass

#: Keys of layout 1 that layout 2 folds into the record hash: card balances, orders,
#: counted orders, contributions, dedup markers. Deleted when a record is migrated.
LEGACY_SUFFIXES = ("b", "o", "lo", "k", "d")


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Names the keys of a customer under a prefix."""

    prefix: str

    def record(self, customer_id: str) -> str:
        """The hash holding all of the customer's fields (see `worker.domain.fields`)."""
        return f"{self.prefix}:{{{customer_id}}}:r"

    def replay_log(self, customer_id: str) -> str:
        """The sorted set of recent events (step JSON -> event time)."""
        return f"{self.prefix}:{{{customer_id}}}:lg"

    def source_index(self, implicit_id: str) -> str:
        """The claims on one `source_id` (customer id -> claim stamp), in the slot of the
        `source_id`'s implicit customer (see `worker.store.source_index`)."""
        return f"{self.prefix}:{{{implicit_id}}}:ix"

    def legacy(self, customer_id: str) -> list[str]:
        """The layout 1 side keys of the customer, in LEGACY_SUFFIXES order."""
        return [f"{self.prefix}:{{{customer_id}}}:{suffix}" for suffix in LEGACY_SUFFIXES]

    def all(self, customer_id: str) -> list[str]:
        """Every key the customer may have, all in one cluster slot."""
        return [self.record(customer_id), self.replay_log(customer_id), *self.legacy(customer_id)]
