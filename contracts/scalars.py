"""Constrained scalar types shared by every message of the contract.

Strings that identify things are 1-128 characters without control characters, so they can
be used verbatim inside Redis keys and field names (the worker separates parts with a
newline) and never smuggle terminal escapes into logs.
"""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

#: Earliest and latest representable event time. The upper bound keeps microsecond
#: timestamps below 2**53, so they stay exact as Redis scores and Lua numbers.
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_NO_CONTROL)]
"""An id: customer, event, order, redemption, campaign, card code, tag…"""

Text = Annotated[str, StringConstraints(max_length=1024)]
"""Free text such as a name or a description."""

ShortText = Annotated[str, StringConstraints(max_length=256)]
"""A short free-text value such as a phone number or a postal code."""

Source = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_NO_CONTROL)]
"""CloudEvents `source`: the producing service."""

Amount = Annotated[int, Field(ge=0)]
"""Money in minor units (cents); never a float."""

PositivePoints = Annotated[int, Field(gt=0)]
"""A positive number of loyalty points."""


def _as_utc(value: datetime) -> datetime:
    """Naive timestamps are UTC by contract; everything is normalised to UTC."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not MIN_TIME <= value < MAX_TIME:
        raise ValueError(
            f"timestamp must be between {MIN_TIME.isoformat()} and {MAX_TIME.isoformat()}"
        )
    return value


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
"""RFC 3339 timestamp; naive ⇒ UTC; always timezone-aware (UTC) after parsing."""
