"""Hostile-input limits checked after schema validation (the contract's own bounds are
fixed; these are the operator's, configurable and usually tighter)."""

import time
from datetime import UTC, datetime, timedelta

import orjson

from contracts.customers import CustomerCreate, CustomerProfile, CustomerUpdate
from contracts.events import AnyInputEvent
from contracts.loyalty import PointsData
from contracts.orders import OrderData
from contracts.redemptions import RedemptionData
from contracts.scalars import MAX_SAFE_INTEGER
from worker.rejection import Rejection
from worker.settings import Limits

_TEXT_FIELDS = (
    "source_id", "name", "description", "email", "phone", "reference", "reference_origin",
    "customer_group",
)  # fmt: skip


def _exceeded(message: str) -> Rejection:
    return Rejection("LimitExceeded", message)


def _profile_problem(profile: CustomerProfile, limits: Limits) -> Rejection | None:
    texts = [getattr(profile, name) for name in _TEXT_FIELDS]
    if profile.address is not None:
        texts += list(profile.address.model_dump().values())
    if any(text is not None and len(text) > limits.max_text_length for text in texts):
        return _exceeded(f"a text field is longer than {limits.max_text_length} characters")
    for name in ("tags", "addresses"):
        items = getattr(profile, name)
        if items is not None and len(items) > limits.max_list_items:
            return _exceeded(f"{name}: more than {limits.max_list_items} items")
    if profile.metadata:
        if len(profile.metadata) > limits.max_metadata_keys:
            return _exceeded(f"metadata: more than {limits.max_metadata_keys} keys")
        for key, value in profile.metadata.items():
            if len(orjson.dumps(value)) > limits.max_metadata_value_bytes:
                return _exceeded(
                    f"metadata.{key}: value larger than {limits.max_metadata_value_bytes} bytes"
                )
    return None


def _numbers(data: object) -> tuple[list[int | None], list[int | None]]:
    """The money amounts and the points an event's data carries (None: absent)."""
    if isinstance(data, OrderData):
        return [data.amount], []
    if isinstance(data, RedemptionData):
        gift = data.voucher.type == "GIFT_VOUCHER"
        return [data.amount, data.balance if gift else None], [
            data.points,
            None if gift else data.balance,
        ]
    if isinstance(data, PointsData):
        return [], [data.points, data.balance]
    if isinstance(data, CustomerProfile):
        balance = data.house_account_balance
        return [data.house_account_limit, None if balance is None else abs(balance)], []
    return [], []


class LimitCheck:
    """Checks events against the configured limits, relative to the current time."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        # The contract already bounds every number by MAX_SAFE_INTEGER: only tighter
        # limits cost a check.
        self._numbers_bounded = (
            limits.max_amount < MAX_SAFE_INTEGER or limits.max_points < MAX_SAFE_INTEGER
        )
        self._window = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
        self._window_until = 0.0

    def _bounds(self) -> tuple[datetime, datetime]:
        """Earliest and latest acceptable event times; recomputed once a second, since an
        exact `now` per event costs more than the rest of the checks."""
        clock = time.monotonic()
        if clock >= self._window_until:
            now = datetime.now(UTC)
            self._window = (
                now - timedelta(days=self._limits.max_past_days),
                now + timedelta(seconds=self._limits.max_future_seconds),
            )
            self._window_until = clock + 1.0
        return self._window

    def size_problem(self, value: bytes) -> Rejection | None:
        """Checked before parsing, so a huge message costs nothing but its length."""
        if len(value) > self._limits.max_message_bytes:
            return Rejection(
                "MessageTooLarge",
                f"{len(value)} bytes, more than {self._limits.max_message_bytes}",
            )
        return None

    def problem(self, event: AnyInputEvent) -> Rejection | None:
        """What is wrong with a valid event, if anything."""
        earliest, latest = self._bounds()
        ordered_at = event.data.created_at if isinstance(event.data, OrderData) else None
        if not earliest <= event.time <= latest or (
            ordered_at is not None and not earliest <= ordered_at <= latest
        ):
            return Rejection(
                "TimestampOutOfRange",
                f"a timestamp is outside [now - {self._limits.max_past_days} days, "
                f"now + {self._limits.max_future_seconds} s]",
            )
        if self._numbers_bounded:
            too_large = self._number_problem(event.data)
            if too_large is not None:
                return too_large
        if isinstance(event, CustomerCreate | CustomerUpdate):
            return _profile_problem(event.data, self._limits)
        return None

    def _number_problem(self, data: object) -> Rejection | None:
        amounts, points = _numbers(data)
        limits = self._limits
        if any(n is not None and n > limits.max_amount for n in amounts):
            return _exceeded(
                f"an amount is larger than {limits.max_amount} (CW_LIMITS__MAX_AMOUNT)"
            )
        if any(n is not None and n > limits.max_points for n in points):
            return _exceeded(f"points are more than {limits.max_points} (CW_LIMITS__MAX_POINTS)")
        return None
