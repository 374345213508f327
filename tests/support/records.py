"""Expected records written by hand in tests: the all-zero record of a customer that exists."""

from typing import Any


def blank_record(customer_id: str, created_at: str, updated_at: str) -> dict[str, Any]:
    """A record with nothing but its identity and timestamps (output form)."""
    return {
        "id": customer_id,
        "object": "customer",
        "metadata": {},
        "system_metadata": {},
        "summary": {
            "redemptions": {
                "total_redeemed": 0,
                "total_failed": 0,
                "total_succeeded": 0,
                "total_rolled_back": 0,
                "total_rollback_failed": 0,
                "total_rollback_succeeded": 0,
                "gift": {"redeemed_amount": 0, "amount_to_go": 0},
                "loyalty_card": {"redeemed_points": 0, "points_to_go": 0},
            },
            "orders": {
                "total_amount": 0,
                "total_count": 0,
                "average_amount": 0,
                "last_order_amount": 0,
            },
        },
        "loyalty": {"points": 0, "referred_customers": 0, "campaigns": {}},
        "referrals": {"total": 0, "campaigns": []},
        "created_at": created_at,
        "updated_at": updated_at,
        "status": "prospect",
        "total_orders_count": 0,
        "order_count": 0,
        "loyalty_balance": 0,
    }
