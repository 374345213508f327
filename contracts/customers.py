"""`customer.commands`: profile upserts, soft delete/restore and erasure."""

from datetime import date
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from contracts.envelope import EmptyPayload, Envelope, Payload
from contracts.scalars import Amount, Identifier, JsonData, ShortText, SignedAmount, Text

MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
]

#: Names of the address sub-fields; each is its own last-writer-wins register.
ADDRESS_FIELDS = ("line_1", "line_2", "city", "state", "postal_code", "country")


class Address(Payload):
    """Postal address; a partial object updates only the sub-fields it carries."""

    line_1: Text | None = None
    line_2: Text | None = None
    city: ShortText | None = None
    state: ShortText | None = None
    postal_code: ShortText | None = None
    country: ShortText | None = None


class Ref(Payload):
    """A reference to another object by id (Foodics form)."""

    id: Identifier


class CustomerAddress(Payload):
    """Foodics address-book entry."""

    id: Identifier
    delivery_zone: Ref | None = None


class CustomerProfile(Payload):
    """A partial profile: only the fields present are written; `null` clears a field.

    Presence is read from `model_fields_set`, so "absent" and "null" stay distinct.
    """

    source_id: Identifier | None = None
    name: Text | None = None
    description: Text | None = None
    email: ShortText | None = None
    phone: ShortText | None = None
    dial_code: Annotated[int, Field(ge=1, le=99999)] | None = None
    gender: Literal[1, 2] | None = Field(default=None, description="1 male, 2 female.")
    birthdate: date | None = Field(default=None, description="YYYY-MM-DD.")
    birthday: date | None = Field(
        default=None,
        description="Deprecated alias of `birthdate` (Voucherify); ignored when both are sent.",
    )
    address: Address | None = None
    metadata: dict[MetadataKey, JsonData] | None = Field(
        default=None,
        description="Merged per key; a null value removes the key; null removes all keys.",
    )
    reference: Text | None = None
    reference_origin: Text | None = None
    customer_group: Identifier | None = None
    tags: list[Identifier | Ref] | None = Field(default=None, max_length=256)
    addresses: list[CustomerAddress] | None = Field(default=None, max_length=256)
    is_blacklisted: bool | None = None
    is_loyalty_enabled: bool | None = None
    is_house_account_enabled: bool | None = None
    house_account_limit: Amount | None = None
    house_account_balance: SignedAmount | None = None

    @property
    def tag_ids(self) -> list[str] | None:
        """Tags as ids, in order, duplicates removed (the emitted form's content)."""
        if self.tags is None:
            return None
        ids = (tag if isinstance(tag, str) else tag.id for tag in self.tags)
        return list(dict.fromkeys(ids))


class _ProfileUpsert(Envelope):
    """A profile upsert; one that names its customer by `sourceid` alone cannot give it
    another `source_id` (the implicit customer's id is derived from it)."""

    data: CustomerProfile

    @model_validator(mode="after")
    def _keeps_implicit_identity(self) -> Self:
        if (
            self.subject is None
            and "source_id" in self.data.model_fields_set
            and self.data.source_id != self.sourceid
        ):
            raise ValueError(
                "an event naming its customer by `sourceid` alone cannot change or clear "
                "its `source_id` (name the customer by `subject` to do that)"
            )
        return self


class CustomerCreate(_ProfileUpsert):
    """Upsert of the profile fields present in `data` (same semantics as update)."""

    type: Literal["customer.create"]


class CustomerUpdate(_ProfileUpsert):
    """Upsert of the profile fields present in `data`."""

    type: Literal["customer.update"]


class CustomerDelete(Envelope):
    """Soft delete: `deleted_at` becomes the event time (the later of delete/restore wins)."""

    type: Literal["customer.delete"]
    data: EmptyPayload = Field(default_factory=EmptyPayload)


class CustomerRestore(Envelope):
    """Undo of a soft delete: clears `deleted_at` (the later of delete/restore wins)."""

    type: Literal["customer.restore"]
    data: EmptyPayload = Field(default_factory=EmptyPayload)


class CustomerErase(Envelope):
    """Right to be forgotten: state removed, tombstone published, older events ignored."""

    type: Literal["customer.erase"]
    data: EmptyPayload = Field(default_factory=EmptyPayload)
