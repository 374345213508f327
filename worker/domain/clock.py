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


_DAY = 86_400_000_000


@lru_cache(maxsize=4096)
def _date(day: int) -> str:
    """`YYYY-MM-DDT` of a day since the epoch."""
    return (_NAIVE_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")


#: Zero-padded numbers, to assemble a time of day without formatting one.
_TWO = tuple(f"{n:02d}" for n in range(60))
_THREE = tuple(f".{n:03d}Z" for n in range(1000))


def format_micros(micros: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`, milliseconds truncated. (Every record renders its times
    again: the date is cached, the time of day computed in integers and looked up.)"""
    day, rest = divmod(micros, _DAY)
    seconds, millis = divmod(rest // 1000, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return _date(day) + _TWO[hour] + ":" + _TWO[minute] + ":" + _TWO[second] + _THREE[millis]


def format_time(value: datetime) -> str:
    """The output format of an aware datetime."""
    return format_micros(to_micros(value))
