"""Builders of input events as producers would send them (plain JSON dicts)."""

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

_ids = itertools.count(1)
BASE_TIME = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

TOPIC_OF_PREFIX = {
    "customer.": "customer_commands",
    "order.": "order_events",
    "redemption.": "redemption_events",
    "loyalty.": "loyalty_events",
    "referral.": "loyalty_events",
}


def at(seconds: float) -> str:
    """An RFC 3339 time `seconds` after a fixed base time."""
    return (BASE_TIME + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def event(
    type_: str,
    subject: str,
    data: dict[str, Any] | None = None,
    *,
    time: str | None = None,
    id_: str | None = None,
    source: str = "tests",
) -> dict[str, Any]:
    """A CloudEvent of the contract."""
    n = next(_ids)
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": id_ or f"evt-{n}",
        "source": source,
        "type": type_,
        "time": time or at(n),
        "subject": subject,
    }
    if data is not None:
        body["data"] = data
    return body


def topic_field(type_: str) -> str:
    """The `Topics` field naming the topic that carries events of `type_`."""
    return next(field for prefix, field in TOPIC_OF_PREFIX.items() if type_.startswith(prefix))
