"""Hostile-input limits checked after schema validation (the contract's own bounds are
fixed; these are the operator's, configurable and usually tighter)."""

import json
import time
from datetime import UTC, datetime, timedelta

from contracts.customers import CustomerCreate, CustomerProfile, CustomerUpdate
from contracts.events import AnyInputEvent
from contracts.orders import OrderData
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
            if (
                len(json.dumps(value, ensure_ascii=False).encode())
                > limits.max_metadata_value_bytes
            ):
                return _exceeded(
                    f"metadata.{key}: value larger than {limits.max_metadata_value_bytes} bytes"
                )
    return None


class LimitCheck:
    """Checks events against the configured limits, relative to the current time."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
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
        if isinstance(event, CustomerCreate | CustomerUpdate):
            return _profile_problem(event.data, self._limits)
        return None
