"""The benchmark's input: the test suite's event mix, made realistic and fast at scale.

`tests.support.generate.Generator` provides the content (profile updates, deletes and
restores, orders with status changes, redemptions, points, tiers, referrals). It is tuned to
provoke conflicts in small property tests, so three things are changed here:

* ids are unique: its small id pool would turn most of a large workload into duplicates,
  while the benchmark wants a controlled duplicate rate;
* events are dated near a moving clock with up to a minute of lateness, as a live upstream
  sends them, instead of uniformly over a span (which would make most profile updates lose
  to an already applied later one);
* a referrer is drawn from the subject's community of `COMMUNITY` customers: the generator
  scans its whole customer list per referral, which is O(customers) per event;
* every customer has a `source_id` of its own (`crm-<index>`): a share of profile updates
  claims it (the worker then writes the source_id index) and `SOURCE_ID_SHARE` of all
  events name their customer by it alone (they go to its implicit customer).
"""

import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts.events import TOPIC_OF_TYPE
from tests.perf.sandbox import source_topics
from tests.support.generate import Event, Generator
from worker.settings import Topics

#: Customers among whom referrals happen (one "community").
COMMUNITY = 64
#: Events that name their customer by `sourceid` alone.
SOURCE_ID_SHARE = 0.10
#: Profile updates that carry the customer's `source_id` (a claim).
CLAIM_SHARE = 0.3
#: Most an event's time lags behind the clock.
LATENESS_SECONDS = 60
#: A duplicate is sent again within this many records after the original (a producer retry
#: or an upstream redelivery comes soon, not hours later).
DUPLICATE_DELAY = 5_000

Clock = Callable[[int], datetime]


@dataclass(frozen=True, slots=True)
class Message:
    """One input record, ready to produce."""

    topic: str
    key: bytes
    value: bytes
    event_id: str


def customer_ids(count: int) -> list[str]:
    """The benchmark's customers (the same ids in every phase, so live events update
    records the backlog created)."""
    return [f"cust-{index:07d}" for index in range(count)]


class Upstream(Generator):
    """`Generator` with unique ids, clock-near times and community referrals (see module)."""

    def __init__(self, rng: random.Random, customers: list[str], id_prefix: str) -> None:
        if len(customers) < 2:
            raise ValueError("a referral needs at least two customers")
        super().__init__(rng, customers[:COMMUNITY], span_seconds=LATENESS_SECONDS, erases=False)
        self._everyone = customers
        self._id_prefix = id_prefix
        self.now = datetime.fromtimestamp(0, UTC)

    def time(self) -> str:
        late = timedelta(microseconds=self.rng.randrange(self.span * 1_000_000))
        return (self.now - late).isoformat().replace("+00:00", "Z")

    def next_event(self, sequence: int, now: datetime) -> Event:
        """A new event of a uniformly chosen customer, dated near `now`."""
        self.now = now
        index = self.rng.randrange(len(self._everyone))
        start = index - index % COMMUNITY
        community = self._everyone[start : start + COMMUNITY]
        # The last community can be a single customer: borrow the first one's neighbours.
        self.customers = community if len(community) > 1 else self._everyone[:COMMUNITY]
        event = self.any_event(self._everyone[index])
        event["id"] = f"{self._id_prefix}{sequence}"
        source_id = f"crm-{index:07d}"
        profile = event["type"] in ("customer.create", "customer.update")
        if profile and self.rng.random() < CLAIM_SHARE:
            event["data"]["source_id"] = source_id
        if self.rng.random() < SOURCE_ID_SHARE:
            self.name_by_source_id(event, source_id)
        return event


class Workload:
    """A reproducible stream of input records in which a fraction comes twice."""

    def __init__(
        self,
        topics: Topics,
        customers: list[str],
        *,
        duplicates: float,
        seed: int,
        id_prefix: str,
        clock: Clock,
    ) -> None:
        self._rng = random.Random(seed)
        self._upstream = Upstream(self._rng, customers, id_prefix)
        self._duplicates = duplicates
        self._clock = clock
        self._topic_of = {contract: name for name, contract in source_topics(topics).items()}
        self._again: list[tuple[int, int, Message]] = []  # (due position, sequence, record)
        self.events = 0
        self.duplicated = 0
        self.bytes = 0

    @property
    def records(self) -> int:
        """Records handed out so far (events and their duplicates)."""
        return self.events + self.duplicated

    def take(self, count: int) -> list[Message]:
        """The next `count` records."""
        batch: list[Message] = []
        while len(batch) < count:
            if self._again and self._again[0][0] <= self.records:
                message = heapq.heappop(self._again)[2]
                self.duplicated += 1
            else:
                message = self._new(self.events)
                self.events += 1
                if self._rng.random() < self._duplicates:
                    due = self.records + self._rng.randint(1, DUPLICATE_DELAY)
                    heapq.heappush(self._again, (due, self.events, message))
            self.bytes += len(message.value)
            batch.append(message)
        return batch

    def _new(self, sequence: int) -> Message:
        event = self._upstream.next_event(sequence, self._clock(sequence))
        value = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        topic = self._topic_of[TOPIC_OF_TYPE[event["type"]]]
        key = event.get("subject") or event["sourceid"]
        return Message(topic, key.encode(), value, event["id"])
