"""Why an input record cannot be applied: the dead letter's error class and message."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rejection:
    """Becomes the `x-error-class` and `x-error-message` headers of the dead letter."""

    error_class: str
    message: str
