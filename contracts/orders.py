"""`order.events`: order state changes with Voucherify semantics."""

from typing import Annotated, Literal

from pydantic import StringConstraints

from contracts.envelope import Envelope, Payload
from contracts.scalars import Amount, Identifier, Timestamp

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class OrderData(Payload):
    """The order as of this event; `created_at` is the order date when present."""

    order_id: Identifier
    amount: Amount
    created_at: Timestamp | None = None
    currency: Currency | None = None


class OrderCreated(Envelope):
    """Status CREATED: not counted in the summary."""

    type: Literal["order.created"]
    data: OrderData


class OrderPaid(Envelope):
    """Status PAID: counted in the summary."""

    type: Literal["order.paid"]
    data: OrderData


class OrderFulfilled(Envelope):
    """Status FULFILLED: counted in the summary."""

    type: Literal["order.fulfilled"]
    data: OrderData


class OrderCanceled(Envelope):
    """Status CANCELED: removed from the summary."""

    type: Literal["order.canceled"]
    data: OrderData
