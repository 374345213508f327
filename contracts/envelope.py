"""The CloudEvents 1.0 structured-mode envelope every input event travels in."""

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from contracts.identity import implicit_customer_id, is_implicit
from contracts.scalars import Identifier, Source, Timestamp

#: Version of the wire contract described in DESIGN.md §3; bumped on any breaking change.
CONTRACT_VERSION = "1.1.0"
#: Error type of an event that names no customer (neither `subject` nor `sourceid`), or
#: names one by an id reserved for implicit customers.
NO_CUSTOMER = "no_customer"


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
    `sourceid` names the customer by its `source_id`, others are ignored); `subject` is
    the customer the event is about; (`source`, `id`) identifies the event for
    deduplication.
    """

    model_config = ConfigDict(
        strict=True,
        extra="allow",
        frozen=True,
        json_schema_extra={"anyOf": [{"required": ["subject"]}, {"required": ["sourceid"]}]},
    )

    specversion: Literal["1.0"]
    id: Identifier
    source: Source
    type: str
    time: Timestamp
    subject: Identifier | None = Field(
        default=None,
        description="The customer id; may be left out when `sourceid` names the customer.",
    )
    sourceid: Identifier | None = Field(
        default=None,
        description=(
            "Extension attribute: the customer's `source_id` (a CRM id or an email), for "
            "producers that do not know its id. Ignored when `subject` is present (the id "
            "wins, as in Voucherify); alone, it names the implicit customer of that "
            "`source_id` (id `src_` + the first 32 hex digits of its SHA-256)."
        ),
    )
    datacontenttype: Literal["application/json"] | None = None
    dataschema: str | None = Field(
        default=None,
        max_length=512,
        description=(
            "The schema `data` follows; a `urn:customer-worker:schema:...` id must be a "
            "version this worker reads (else UnsupportedSchema)."
        ),
    )

    @model_validator(mode="after")
    def _names_a_customer(self) -> Self:
        if self.subject is None and self.sourceid is None:
            raise PydanticCustomError(
                NO_CUSTOMER, "an event names its customer by `subject` or by `sourceid`"
            )
        if self.subject is not None and is_implicit(self.subject):
            raise PydanticCustomError(
                NO_CUSTOMER,
                "ids of the form src_<32 hex digits> are implicit customers': name one by "
                "its `sourceid`",
            )
        return self

    @property
    def customer_id(self) -> str:
        """The id of the customer the event is about (see `contracts.identity`)."""
        if self.subject is not None:
            return self.subject
        assert self.sourceid is not None
        return implicit_customer_id(self.sourceid)
