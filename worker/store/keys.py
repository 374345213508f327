"""Redis key layout: every key of one customer carries the hash tag `{customer_id}`."""

from dataclasses import dataclass

#: Suffixes of a customer's keys, in the order the Lua step expects them.
SUFFIXES = ("r", "b", "o", "lo", "k", "d", "lg")


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Names the keys of a customer under a prefix."""

    prefix: str

    def record(self, customer_id: str) -> str:
        """The hash holding the rendered state (see `worker.domain.fields`)."""
        return f"{self.prefix}:{{{customer_id}}}:r"

    def all(self, customer_id: str) -> list[str]:
        """Every key of the customer, all in one cluster slot."""
        return [f"{self.prefix}:{{{customer_id}}}:{suffix}" for suffix in SUFFIXES]
