"""The customer record: Voucherify's customer, extended with Commerce Layer and Foodics fields.

This is what `customer.updated` carries in `data.customer`. Unset optional fields are
omitted on the wire (never null); `metadata` is always present. Every number is an integer
within ±(2^53 - 1), which JSON consumers in any language read exactly (`SafeInt`).
"""

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.customers import Address, CustomerAddress, Ref
from contracts.scalars import JsonData, SafeInt


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GiftSummary(_Out):
    """Gift card credits: redeemed, and the sum of the latest known card balances."""

    redeemed_amount: SafeInt = 0
    amount_to_go: SafeInt = 0


class LoyaltyCardSummary(_Out):
    """Loyalty card points: redeemed, and the sum of the latest known card balances."""

    redeemed_points: SafeInt = 0
    points_to_go: SafeInt = 0


class RedemptionsSummary(_Out):
    """Redemption counters; each (redemption_id, outcome) counts once."""

    total_redeemed: SafeInt = 0
    total_failed: SafeInt = 0
    total_succeeded: SafeInt = 0
    total_rolled_back: SafeInt = 0
    total_rollback_failed: SafeInt = 0
    total_rollback_succeeded: SafeInt = 0
    gift: GiftSummary = Field(default_factory=GiftSummary)
    loyalty_card: LoyaltyCardSummary = Field(default_factory=LoyaltyCardSummary)


class OrdersSummary(_Out):
    """Orders with status PAID or FULFILLED only."""

    total_amount: SafeInt = 0
    total_count: SafeInt = 0
    average_amount: SafeInt = 0
    last_order_amount: SafeInt = 0
    last_order_date: datetime | None = None


class Summary(_Out):
    """Voucherify's customer summary."""

    redemptions: RedemptionsSummary = Field(default_factory=RedemptionsSummary)
    orders: OrdersSummary = Field(default_factory=OrdersSummary)


class LoyaltyCampaign(_Out):
    """The customer's standing in one loyalty or referral campaign."""

    points: SafeInt = 0
    referred_customers: SafeInt = 0
    loyalty_tier: str | None = None


class Loyalty(_Out):
    """Points over all campaigns, referrals made, and per-campaign detail."""

    points: SafeInt = 0
    referred_customers: SafeInt = 0
    campaigns: dict[str, LoyaltyCampaign] = Field(default_factory=dict)


class Referral(_Out):
    """One campaign in which this customer was referred."""

    campaign_id: str
    referrer_id: str
    related_object_id: str
    related_object_type: str
    date: datetime


class Referrals(_Out):
    """How this customer was referred, sorted by date then campaign."""

    total: SafeInt = 0
    campaigns: list[Referral] = Field(default_factory=list)


class Customer(_Out):
    """The authoritative customer record."""

    id: str
    object: Literal["customer"] = "customer"
    source_id: str | None = None
    name: str | None = None
    description: str | None = None
    email: str | None = None
    phone: str | None = None
    dial_code: SafeInt | None = None
    gender: Literal[1, 2] | None = None
    birthdate: date | None = None
    address: Address | None = None
    metadata: dict[str, JsonData] = Field(default_factory=dict)
    system_metadata: dict[str, JsonData] = Field(default_factory=dict)
    reference: str | None = None
    reference_origin: str | None = None
    customer_group: str | None = None
    tags: list[Ref] | None = None
    addresses: list[CustomerAddress] | None = None
    is_blacklisted: bool | None = None
    is_loyalty_enabled: bool | None = None
    is_house_account_enabled: bool | None = None
    house_account_limit: SafeInt | None = None
    house_account_balance: SafeInt | None = None
    summary: Summary = Field(default_factory=Summary)
    loyalty: Loyalty = Field(default_factory=Loyalty)
    referrals: Referrals = Field(default_factory=Referrals)
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    status: Literal["prospect", "acquired", "repeat"] = Field(
        default="prospect", description="Commerce Layer: 0, 1 or 2+ counted orders."
    )
    total_orders_count: SafeInt = Field(default=0, description="Commerce Layer.")
    order_count: SafeInt = Field(default=0, description="Foodics.")
    last_order_at: datetime | None = Field(default=None, description="Foodics.")
    loyalty_balance: SafeInt = Field(default=0, description="Foodics: = loyalty.points.")
