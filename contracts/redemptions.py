"""`redemption.events`: voucher redemptions and their rollbacks."""

from typing import Literal

from pydantic import Field

from contracts.envelope import Envelope, Payload
from contracts.scalars import Amount, Identifier, Points

VoucherType = Literal["DISCOUNT_VOUCHER", "GIFT_VOUCHER", "LOYALTY_CARD"]


class Voucher(Payload):
    """The redeemed voucher; `code` identifies a gift or loyalty card for its balance."""

    type: VoucherType
    code: Identifier | None = None
    campaign_id: Identifier | None = None


class RedemptionData(Payload):
    """One redemption outcome; counted once per (`redemption_id`, event type)."""

    redemption_id: Identifier
    voucher: Voucher
    amount: Amount | None = Field(default=None, description="Gift credits used.")
    points: Points | None = Field(default=None, description="Loyalty points used.")
    balance: Points | None = Field(default=None, description="The card's balance after this event.")
    order_id: Identifier | None = None


class RedemptionSucceeded(Envelope):
    """A successful redemption."""

    type: Literal["redemption.succeeded"]
    data: RedemptionData


class RedemptionFailed(Envelope):
    """A failed redemption."""

    type: Literal["redemption.failed"]
    data: RedemptionData


class RedemptionRollbackSucceeded(Envelope):
    """A successful rollback: gives back gift credits or points."""

    type: Literal["redemption.rollback.succeeded"]
    data: RedemptionData


class RedemptionRollbackFailed(Envelope):
    """A failed rollback."""

    type: Literal["redemption.rollback.failed"]
    data: RedemptionData
