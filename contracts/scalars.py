"""Constrained scalar types shared by every message of the contract.

Strings that identify things are 1-128 characters without control characters, so they can
be used verbatim inside Redis keys and field names (the worker separates parts with a
newline) and never smuggle terminal escapes into logs.
"""

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

#: The largest integer that JSON consumers in every language (JavaScript reads numbers as
#: IEEE doubles) and Redis' Lua numbers represent exactly: 2^53 - 1. Every integer of the
#: contract is bounded by it, and so is every counter and sum of the record.
MAX_SAFE_INTEGER = 2**53 - 1

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

Amount = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]
"""Money in minor units (cents); never a float."""

SignedAmount = Annotated[int, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
"""Money in minor units that may be negative (a house account balance)."""

Points = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]
"""A number of loyalty points, or a card's balance."""

PositivePoints = Annotated[int, Field(gt=0, le=MAX_SAFE_INTEGER)]
"""A positive number of loyalty points."""

SafeInt = Annotated[int, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
"""Any integer that every JSON consumer reads exactly."""


def _not_an_integer(value: Any) -> Any:
    """Strict floats accept integers; an integer too large for the integer branch must be
    refused, not turned into an approximate float."""
    if isinstance(value, int):
        raise PydanticCustomError(
            "unsafe_integer", "integers must be within -(2^53 - 1) and 2^53 - 1"
        )
    return value


FiniteFloat = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_not_an_integer)]
"""A finite JSON number with a fraction or an exponent (NaN and infinities are not JSON)."""

if TYPE_CHECKING:  # mypy reads the recursive alias in its classic form
    JsonData: TypeAlias = int | float | str | bool | list["JsonData"] | dict[str, "JsonData"] | None
else:  # pydantic needs TypeAliasType to validate a recursive alias
    JsonData = TypeAliasType(
        "JsonData",
        Union[SafeInt, FiniteFloat, str, bool, list["JsonData"], dict[str, "JsonData"], None],  # noqa: UP007
    )
"""Free-form JSON whose numbers every consumer reads exactly: integers within
±(2^53 - 1), other numbers finite."""


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
