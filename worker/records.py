"""The shape of a consumed Kafka record, as the worker uses it.

aiokafka ships no type information; this protocol is what the pipeline relies on, and
what tests can satisfy with plain objects.
"""

from collections.abc import Sequence
from typing import Protocol


class InputRecord(Protocol):
    """A record read from an input topic."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...
