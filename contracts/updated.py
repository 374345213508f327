"""`customer.updated`: the worker's output, one CloudEvent per published record version."""

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.record import Customer
from contracts.scalars import SafeInt
from contracts.versions import schema_id

UPDATED_TYPE: Final = "customer.updated"
ERASED_TYPE: Final = "customer.erased"
#: The tombstone of an implicit customer merged into the customer holding its source_id
#: (header `merged_into`: that customer's id).
MERGED_TYPE: Final = "customer.merged"
WORKER_SOURCE: Final = "customer-worker"
#: The `dataschema` of every `customer.updated`: this schema, versioned.
UPDATED_SCHEMA: Final = schema_id("CustomerUpdated")


class EventCause(BaseModel):
    """The input event whose application produced this version."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    type: str


class CustomerUpdatedData(BaseModel):
    """The record as of `version`, with the dotted paths that changed."""

    model_config = ConfigDict(frozen=True)

    customer: Customer
    version: SafeInt = Field(ge=1, description="Strictly increasing per customer.")
    changed: list[str] = Field(description="Dotted paths of the fields that changed.")
    cause: EventCause


class CustomerUpdated(BaseModel):
    """Published on `customer.updated`, keyed by customer id; keep the highest version.

    An erasure is published instead as a tombstone: null value, headers
    `ce_type: customer.erased` and `version`.
    """

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="`<customer_id>:<version>`.")
    source: Literal["customer-worker"] = WORKER_SOURCE
    type: Literal["customer.updated"] = UPDATED_TYPE
    time: datetime
    subject: str = Field(description="The customer id.")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str = Field(
        default=UPDATED_SCHEMA,
        description="The versioned id of this schema (`urn:customer-worker:schema:...`).",
    )
    traceparent: str | None = Field(
        default=None,
        description="W3C trace context of the span that produced it (when tracing is on).",
    )
    tracestate: str | None = Field(default=None, description="W3C trace state, if any.")
    data: CustomerUpdatedData
