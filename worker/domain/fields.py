"""Names of the fields of a customer's stored state (one Redis hash per customer).

Fixed names contain no ':'; names with a variable part are a prefix ending in ':' followed
by an id taken verbatim from the event, so the two kinds can never collide. The Lua step
knows only the bookkeeping names and the order-summary names below; every other name is
chosen here and passed to it.
"""

# Bookkeeping (never rendered).
VERSION = "v"
PUBLISHED_VERSION = "pv"
ERASED_UNTIL = "er"
LOG_EVICTED_UNTIL = "lx"

# Timestamps (integer microseconds).
CREATED_AT = "ca"
UPDATED_AT = "ua"

# Registers whose value is JSON text.
PROFILE = "p:"  # + profile field name; address sub-fields as "address.<sub>"
METADATA = "m:"  # + metadata key
METADATA_CLEARED = "metadata.cleared"  # stamp-only register of `metadata: null`
DELETED_AT = "deleted_at"
TIER = "lct:"  # + campaign id
REFERRAL = "rf:"  # + campaign id: the referral entry of this (referee) customer

# Counters (integers).
ORDERS_TOTAL_AMOUNT = "orders.total_amount"
ORDERS_TOTAL_COUNT = "orders.total_count"
ORDERS_LAST_AMOUNT = "orders.last_amount"
ORDERS_LAST_DATE = "orders.last_date"
REDEMPTIONS_SUCCEEDED = "redemptions.succeeded"
REDEMPTIONS_FAILED = "redemptions.failed"
ROLLBACKS_SUCCEEDED = "redemptions.rollback_succeeded"
ROLLBACKS_FAILED = "redemptions.rollback_failed"
GIFT_REDEEMED = "gift.redeemed_amount"
GIFT_TO_GO = "gift.amount_to_go"
CARD_REDEEMED = "loyalty_card.redeemed_points"
CARD_TO_GO = "loyalty_card.points_to_go"
LOYALTY_POINTS = "loyalty.points"
LOYALTY_REFERRED = "loyalty.referred_customers"
CAMPAIGN_POINTS = "lcp:"  # + campaign id
CAMPAIGN_REFERRED = "lcr:"  # + campaign id
REFERRALS_TOTAL = "referrals.total"

# Stamp-only registers of card balances (the balance itself is kept apart from the record).
GIFT_CARD = "card:gift:"  # + card code
LOYALTY_CARD = "card:loyalty:"  # + card code
