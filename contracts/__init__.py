"""Public wire contract of customer-worker: the input events, the record and `customer.updated`.

Importable on its own (depends only on pydantic), so upstream producers and downstream
subscribers can validate against exactly what the worker validates against.
"""

from contracts.envelope import CONTRACT_VERSION
from contracts.events import (
    CUSTOMER_COMMAND_TYPES,
    INPUT_TOPICS,
    LOYALTY_EVENT_TYPES,
    ORDER_EVENT_TYPES,
    REDEMPTION_EVENT_TYPES,
    AnyInputEvent,
    CustomerCommand,
    LoyaltyEvent,
    OrderEvent,
    RedemptionEvent,
)
from contracts.record import Customer
from contracts.updated import CustomerUpdated, CustomerUpdatedData, EventCause

__all__ = [
    "CONTRACT_VERSION",
    "CUSTOMER_COMMAND_TYPES",
    "INPUT_TOPICS",
    "LOYALTY_EVENT_TYPES",
    "ORDER_EVENT_TYPES",
    "REDEMPTION_EVENT_TYPES",
    "AnyInputEvent",
    "Customer",
    "CustomerCommand",
    "CustomerUpdated",
    "CustomerUpdatedData",
    "EventCause",
    "LoyaltyEvent",
    "OrderEvent",
    "RedemptionEvent",
]
