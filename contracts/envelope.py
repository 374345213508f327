"""The CloudEvents 1.0 structured-mode envelope every input event travels in."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.scalars import Identifier, Source, Timestamp

#: Version of the wire contract described in DESIGN.md §3; bumped on any breaking change.
CONTRACT_VERSION = "1.0.0"


class Payload(BaseModel):
    """Base of every `data` object: strict types, unknown fields rejected.

    A typo such as `emial` must reach the dead-letter topic, not vanish silently.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class EmptyPayload(Payload):
    """`data` of events that carry nothing but their type (delete, restore, erase)."""


class Envelope(BaseModel):
    """CloudEvents attributes shared by all input events.

    Extension attributes are allowed (`traceparent` and `tracestate` continue the trace,
    others are ignored); `subject` is the customer the event is about; (`source`, `id`)
    identifies the event for deduplication.
    """

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: Identifier
    source: Source
    type: str
    time: Timestamp
    subject: Identifier = Field(description="The customer id.")
    datacontenttype: Literal["application/json"] | None = None
    dataschema: str | None = Field(
        default=None,
        max_length=512,
        description=(
            "The schema `data` follows; a `urn:customer-worker:schema:...` id must be a "
            "version this worker reads (else UnsupportedSchema)."
        ),
    )
