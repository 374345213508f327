"""Names of the fields of a customer's stored state (one Redis hash per customer).

Fixed names contain no ':'; names with a variable part are a prefix ending in ':' followed
by an id taken verbatim from the event, so the two kinds can never collide. Names starting
with "@" (stamps), "~" (internal state) or "#" (dedup markers), and the bookkeeping names,
are never rendered.
"""

from sys import intern

# Bookkeeping (never rendered), written by the fold.
VERSION = "v"  # the visible version: bumped by every visible change
WRITE_TOKEN = "w"  # noqa: S105 - a field name; a new random token with every write
PUBLISHED_VERSION = "pv"
ERASED_UNTIL = "er"
MARKER_SEQUENCE = "mq"  # markers written so far (their order, for eviction)
LAYOUT = "lv"  # "2"; layout 1 kept orders, contributions, balances and markers apart
LOG_EVICTED_UNTIL = "lx"  # an upper bound of the latest time evicted from the replay log
CLAIMED = "ic"  # the source_id (JSON) the record claims in the index: set with every change
PREVIOUS_SOURCE_IDS = "sp"  # JSON list of the last source_ids it had: to release them again
JOINED = "jn"  # an explicit customer's: "<source_id>|<version>" of the implicit one it shows
MERGED_INTO = "mi"  # an implicit customer's: the explicit customer holding its source_id
MERGED_BEFORE = "mb"  # an implicit customer's: JSON list of the last ones that held it before
ERASED_SOURCE_IDS = "es"  # an explicit customer's: JSON list, source_ids named before its erase
#: Bookkeeping of layout 1 that layout 2 does not keep (removed by the migration).
LEGACY_BOOKKEEPING = frozenset({"dn", "ln", "lo"})

BOOKKEEPING = frozenset(
    {
        VERSION,
        WRITE_TOKEN,
        PUBLISHED_VERSION,
        ERASED_UNTIL,
        MARKER_SEQUENCE,
        LAYOUT,
        LOG_EVICTED_UNTIL,
        CLAIMED,
        PREVIOUS_SOURCE_IDS,
        JOINED,
        MERGED_INTO,
        MERGED_BEFORE,
        ERASED_SOURCE_IDS,
        *LEGACY_BOOKKEEPING,
    }
)

# Prefixes of fields that are not part of the record.
STAMP = "@"  # + register name: "micros|marker" of the event that last set it
MARKER = "#"  # + event marker: "version|sequence" of its application
ORDER = "~o:"  # + order id: the order's state (JSON)
CONTRIBUTION = "~k:"  # + natural key: the counted event's contribution (JSON)
CARD = "~"  # + card register (GIFT_CARD / LOYALTY_CARD + code): the card's balance

# Timestamps (integer microseconds).
CREATED_AT = "ca"
UPDATED_AT = "ua"

# Registers whose value is JSON text.
PROFILE = "p:"  # + profile field name; address sub-fields as "address.<sub>"
SOURCE_ID = PROFILE + "source_id"  # its holder is in the source_id index (worker.identity)
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

# Stamp-only registers of card balances (the balance itself is under CARD + register).
GIFT_CARD = "card:gift:"  # + card code
LOYALTY_CARD = "card:loyalty:"  # + card code


def is_visible(name: str) -> bool:
    """Whether a stored field is part of the record (what `customer.updated` renders)."""
    return name[0] not in "@~#" and name not in BOOKKEEPING


def visible_fields(stored: dict[str, str]) -> dict[str, str]:
    """The fields of a stored state that are part of the record."""
    return {name: value for name, value in stored.items() if is_visible(name)}


def held_name(name: str) -> str:
    """A field's name as a state held between batches keeps it: one string shared by every
    state, since most names recur in every customer's fields (a marker's is its event's
    alone and stays its own). Interned strings are freed with their last holder."""
    return name if name[0] == MARKER else intern(name)
