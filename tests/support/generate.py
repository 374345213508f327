"""Random but reproducible workloads: event sets with conflicts, and delivery orders.

Pools are small on purpose (few order ids, campaigns, cards, event ids, times) so that
generated sets are full of the hard cases: equal times broken by id, the same natural key
from two events, late erases, cancels of counted orders, metadata cleared and re-set.
"""

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.identity import implicit_customer_id

Event = dict[str, Any]

BASE = datetime(2025, 1, 1, tzinfo=UTC)


class Generator:
    """Builds events for a set of customers from one seeded random source."""

    def __init__(
        self,
        rng: random.Random,
        customers: list[str],
        span_seconds: int = 30,
        erases: bool = True,
        erase_weight: int = 2,
        source_ids: list[str] | None = None,
    ) -> None:
        self.rng = rng
        self.customers = customers
        self.span = span_seconds
        self.erases = erases
        self.erase_weight = erase_weight
        # With source ids: profiles claim them, and some events name their customer by one.
        self.source_ids = source_ids or []
        self._ids = 0

    # -- scalars -------------------------------------------------------------------------
    def time(self) -> str:
        moment = BASE + timedelta(
            seconds=self.rng.randrange(self.span),
            microseconds=self.rng.choice([0, 0, 0, 1, 999, 1000, 250_000]),
        )
        text = moment.isoformat()
        # Mix the accepted spellings: Z, explicit offset, naive (UTC by contract).
        return self.rng.choice([text.replace("+00:00", "Z"), text, text.replace("+00:00", "")])

    def _pick(self, *values: Any) -> Any:
        return self.rng.choice(values)

    # -- events ---------------------------------------------------------------------------
    def event(self, type_: str, subject: str, data: dict[str, Any] | None) -> Event:
        self._ids += 1
        event: Event = {
            "specversion": "1.0",
            # A small id pool and two sources: equal times are often broken by id.
            "id": f"e{self.rng.randrange(10 * len(self.customers) + 20)}-{self._ids % 3}",
            "source": self._pick("checkout", "crm"),
            "type": type_,
            "time": self.time(),
            "subject": subject,
        }
        if data is not None:
            event["data"] = data
        return event

    def profile(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "name": lambda: self._pick("Ann", "Bob", "Cy", None),
            "email": lambda: self._pick("a@x.io", "b@x.io", None),
            "phone": lambda: self._pick("+1 555", "+44 20"),
            "dial_code": lambda: self._pick(1, 44, 966),
            "gender": lambda: self._pick(1, 2, None),
            "birthdate": lambda: self._pick("1990-01-02", "1985-12-31", None),
            "address": lambda: self._pick(
                None,
                {"city": self._pick("Oslo", "Rome", None)},
                {"line_1": "Main St 1", "country": "NO", "postal_code": None},
            ),
            "metadata": lambda: self._pick(
                None,
                {"tier": self._pick("a", "b"), "n": self.rng.randrange(3)},
                {"tier": None, "nested": {"x": [1, 2]}},
            ),
            "tags": lambda: self._pick(None, ["t1", {"id": "t2"}, "t1"], [], ["t3"]),
            "addresses": lambda: self._pick(None, [{"id": "a1", "delivery_zone": {"id": "z1"}}]),
            "is_blacklisted": lambda: self._pick(True, False, None),
            "house_account_limit": lambda: self._pick(0, 1000, None),
            "house_account_balance": lambda: self._pick(-50, 0, 300),
            "customer_group": lambda: self._pick("g1", None),
        }
        if self.source_ids:
            fields["source_id"] = lambda: self._pick(*self.source_ids, None)
        chosen = self.rng.sample(sorted(fields), self.rng.randrange(1, 5))
        profile = {name: fields[name]() for name in chosen}
        if "birthdate" in profile and self.rng.random() < 0.3:
            profile["birthday"] = profile.pop("birthdate")
        return profile

    def any_event(self, subject: str) -> Event:
        kind = self.rng.choices(
            [
                "profile",
                "delete",
                "restore",
                "erase",
                "order",
                "redemption",
                "points",
                "tier",
                "referral",
            ],
            weights=[20, 3, 3, self.erase_weight if self.erases else 0, 25, 15, 15, 5, 6],
        )[0]
        if kind == "profile":
            return self.event(
                self._pick("customer.create", "customer.update"), subject, self.profile()
            )
        if kind in ("delete", "restore", "erase"):
            return self.event(f"customer.{kind}", subject, self._pick(None, {}))
        if kind == "order":
            data: dict[str, Any] = {
                "order_id": f"o{self.rng.randrange(4)}",
                "amount": self.rng.choice([0, 999, 1000, 2501]),
            }
            if self.rng.random() < 0.4:
                data["created_at"] = self.time()
            if self.rng.random() < 0.2:
                data["currency"] = "EUR"
            status = self._pick("created", "paid", "paid", "fulfilled", "canceled")
            return self.event(f"order.{status}", subject, data)
        if kind == "redemption":
            voucher_type = self._pick("DISCOUNT_VOUCHER", "GIFT_VOUCHER", "LOYALTY_CARD")
            voucher: dict[str, Any] = {"type": voucher_type}
            if self.rng.random() < 0.7:
                voucher["code"] = self._pick("card1", "card2")
            if self.rng.random() < 0.5:
                voucher["campaign_id"] = "camp-r"
            data = {"redemption_id": f"r{self.rng.randrange(4)}", "voucher": voucher}
            for name in ("amount", "points", "balance"):
                if self.rng.random() < 0.5:
                    data[name] = self.rng.choice([0, 10, 250])
            if self.rng.random() < 0.3:
                data["order_id"] = "o1"
            outcome = self._pick("succeeded", "failed", "rollback.succeeded", "rollback.failed")
            return self.event(f"redemption.{outcome}", subject, data)
        if kind == "points":
            data = {"campaign_id": self._pick("k1", "k2"), "points": self.rng.choice([1, 5, 40])}
            if self.rng.random() < 0.6:
                data["card_code"] = self._pick("card1", "card3")
            if self.rng.random() < 0.6:
                data["balance"] = self.rng.choice([0, 35, 100])
            if self.rng.random() < 0.2:
                data["reason"] = "welcome"
            return self.event(
                self._pick("loyalty.points.added", "loyalty.points.subtracted"), subject, data
            )
        if kind == "tier":
            return self.event(
                "loyalty.tier.changed",
                subject,
                {"campaign_id": self._pick("k1", "k2"), "tier": self._pick("silver", "gold")},
            )
        others = [c for c in self.customers if c != subject]
        return self.event(
            "referral.completed",
            subject,
            {
                "campaign_id": self._pick("k1", "k2"),
                "referrer_id": self.rng.choice(others),
                "related_object_id": f"r{self.rng.randrange(3)}",
                "related_object_type": "redemption",
            },
        )

    def events(self, count: int) -> list[Event]:
        """`count` events, deduplicated by (source, id): one content per event identity."""
        unique: dict[tuple[str, str], Event] = {}
        for _ in range(count):
            event = self.any_event(self.rng.choice(self.customers))
            if self.source_ids and self.rng.random() < 0.25:
                self.name_by_source_id(event, self.rng.choice(self.source_ids))
            unique.setdefault((event["source"], event["id"]), event)
        return list(unique.values())

    @staticmethod
    def name_by_source_id(event: Event, source_id: str) -> None:
        """Name the event's customer by `sourceid` alone (a profile then keeps it)."""
        del event["subject"]
        event["sourceid"] = source_id
        data = event.get("data")
        if event["type"] in ("customer.create", "customer.update") and "source_id" in data:
            data["source_id"] = source_id


def customer_of(event: Event) -> str:
    """The id of the customer an event names (by `subject`, or its implicit customer)."""
    subject = event.get("subject")
    return subject if subject is not None else implicit_customer_id(event["sourceid"])


def customers_of(event: Event) -> list[str]:
    """The customers an event changes (a referral changes both sides)."""
    if event["type"] == "referral.completed":
        return [customer_of(event), event["data"]["referrer_id"]]
    return [customer_of(event)]


def delivery_order(
    rng: random.Random, events: list[Event], duplicates: float, parse_us: Any
) -> list[Event]:
    """A random permutation with duplicates, in which no event dated after an erase of one
    of its customers is delivered before that erase (the one order the erase semantics
    exclude, see README "Erasure"); erases themselves arrive in any order, late ones too."""
    order = events[:]
    rng.shuffle(order)
    erases: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for index, event in enumerate(order):
        if event["type"] == "customer.erase":
            erases[customer_of(event)].append((parse_us(event["time"]), index))

    def blockers(event: Event) -> set[int]:
        if event["type"] == "customer.erase":
            return set()
        when = parse_us(event["time"])
        return {i for c in customers_of(event) for t, i in erases[c] if when > t}

    placed: set[int] = set()
    result: list[Event] = []
    waiting = list(range(len(order)))
    while waiting:
        still = []
        for index in waiting:
            if blockers(order[index]) <= placed:
                placed.add(index)
                result.append(order[index])
            else:
                still.append(index)
        waiting = still
    for event in list(result):
        if rng.random() < duplicates:
            first = result.index(event)
            result.insert(rng.randrange(first + 1, len(result) + 1), event)
    return result
