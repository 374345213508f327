"""Event times as integer microseconds, and their one output format.

Times travel to Redis as integer microseconds since the epoch: exact as Lua numbers and
sorted-set scores (the contract bounds them below 2**53). On the wire they are UTC ISO 8601
with milliseconds and `Z`.
"""

from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime (no float rounding)."""
    return (value - _EPOCH) // _MICROSECOND


@lru_cache(maxsize=65_536)  # a record renders the same few times again and again
def format_micros(micros: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`, milliseconds truncated."""
    moment = _NAIVE_EPOCH + timedelta(microseconds=micros)
    return moment.isoformat(timespec="milliseconds") + "Z"


def format_time(value: datetime) -> str:
    """The output format of an aware datetime."""
    return format_micros(to_micros(value))
