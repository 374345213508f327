"""The input topics and, per topic, the discriminated union of the event types it carries."""

from typing import Annotated, Any, get_args

from pydantic import BaseModel, Field

from contracts.customers import (
    CustomerCreate,
    CustomerDelete,
    CustomerErase,
    CustomerRestore,
    CustomerUpdate,
)
from contracts.loyalty import PointsAdded, PointsSubtracted, ReferralCompleted, TierChanged
from contracts.orders import OrderCanceled, OrderCreated, OrderFulfilled, OrderPaid
from contracts.redemptions import (
    RedemptionFailed,
    RedemptionRollbackFailed,
    RedemptionRollbackSucceeded,
    RedemptionSucceeded,
)

CustomerCommand = Annotated[
    CustomerCreate | CustomerUpdate | CustomerDelete | CustomerRestore | CustomerErase,
    Field(discriminator="type"),
]
OrderEvent = Annotated[
    OrderCreated | OrderPaid | OrderFulfilled | OrderCanceled,
    Field(discriminator="type"),
]
RedemptionEvent = Annotated[
    RedemptionSucceeded | RedemptionFailed | RedemptionRollbackSucceeded | RedemptionRollbackFailed,
    Field(discriminator="type"),
]
LoyaltyEvent = Annotated[
    PointsAdded | PointsSubtracted | TierChanged | ReferralCompleted,
    Field(discriminator="type"),
]

AnyInputEvent = Annotated[
    CustomerCommand | OrderEvent | RedemptionEvent | LoyaltyEvent,
    Field(discriminator="type"),
]
"""Any validated input event, whatever its topic."""

#: Default topic names of the contract, each with the union of the types it carries.
INPUT_TOPICS: dict[str, Any] = {
    "customer.commands": CustomerCommand,
    "order.events": OrderEvent,
    "redemption.events": RedemptionEvent,
    "loyalty.events": LoyaltyEvent,
}


def _models_of(union: Any) -> tuple[type[BaseModel], ...]:
    return get_args(get_args(union)[0])


def _types_of(union: Any) -> tuple[str, ...]:
    return tuple(get_args(m.model_fields["type"].annotation)[0] for m in _models_of(union))


#: Every input event model, in topic order (for schema export and documentation).
INPUT_EVENT_MODELS: tuple[type[BaseModel], ...] = tuple(
    model for union in INPUT_TOPICS.values() for model in _models_of(union)
)


CUSTOMER_COMMAND_TYPES = _types_of(CustomerCommand)
ORDER_EVENT_TYPES = _types_of(OrderEvent)
REDEMPTION_EVENT_TYPES = _types_of(RedemptionEvent)
LOYALTY_EVENT_TYPES = _types_of(LoyaltyEvent)

#: The contract topic that carries each event type.
TOPIC_OF_TYPE: dict[str, str] = {
    event_type: topic
    for topic, types in (
        ("customer.commands", CUSTOMER_COMMAND_TYPES),
        ("order.events", ORDER_EVENT_TYPES),
        ("redemption.events", REDEMPTION_EVENT_TYPES),
        ("loyalty.events", LOYALTY_EVENT_TYPES),
    )
    for event_type in types
}
