"""`loyalty.events`: points, tiers and referrals."""

from typing import Literal, Self

from pydantic import Field, model_validator

from contracts.envelope import Envelope, Payload
from contracts.identity import is_implicit
from contracts.scalars import Identifier, Points, PositivePoints, Text


class PointsData(Payload):
    """Points moved on a campaign, optionally on an identified card."""

    campaign_id: Identifier
    points: PositivePoints
    card_code: Identifier | None = None
    balance: Points | None = Field(default=None, description="The card's balance after this event.")
    reason: Text | None = None


class PointsAdded(Envelope):
    """Points earned."""

    type: Literal["loyalty.points.added"]
    data: PointsData


class PointsSubtracted(Envelope):
    """Points spent or expired."""

    type: Literal["loyalty.points.subtracted"]
    data: PointsData


class TierData(Payload):
    """The customer's new tier within a campaign."""

    campaign_id: Identifier
    tier: Identifier


class TierChanged(Envelope):
    """Tier change; the latest by event time wins per campaign."""

    type: Literal["loyalty.tier.changed"]
    data: TierData


class ReferralData(Payload):
    """Who referred the customer (`subject`, the referee), in which campaign."""

    campaign_id: Identifier
    referrer_id: Identifier
    related_object_id: Identifier
    related_object_type: Identifier


class ReferralCompleted(Envelope):
    """Updates both customers: the referee's referrals and the referrer's loyalty counts."""

    type: Literal["referral.completed"]
    data: ReferralData

    @model_validator(mode="after")
    def _not_self_referral(self) -> Self:
        if self.data.referrer_id == self.customer_id:
            raise ValueError("a customer cannot refer themselves (referrer_id == subject)")
        if is_implicit(self.data.referrer_id):
            raise ValueError("a referrer is named by its id, not an implicit customer's id")
        return self
