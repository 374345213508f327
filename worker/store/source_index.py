"""The source_id index in Redis: per `source_id`, a hash of the customers claiming it
(customer id -> its record's `created_at` when it claimed), in the cluster slot of the
`source_id`'s implicit customer.

The customer's record is the truth and the index a superset of it: a claim is written
after the record that makes it, and a release after the record that drops it, in a second
step that is not atomic with the first (on Redis Cluster the two are in different slots).
Every reader checks each claim against the claimant's record (`holding`), so a worker that
dies between the two steps leaves at worst a claim missing or left over, never a wrong
answer for long:
- missing: the batch's offsets were not committed, so its events come again; they are
  then duplicates of an unpublished version, and a duplicate makes the worker write the
  record's claim and its releases of the previous `source_id`s (kept in the record) again;
- left over (a claim a stale writer wrote after the record moved on, during a
  rebalance): ignored by readers, since the claimant's record does not hold the
  `source_id`, and deleted by the next worker that claims the same `source_id` (`purge`
  deletes a claim only if it is still the one found invalid, so a claim made meanwhile
  survives).
A customer claims one `source_id` at a time, so the index is bounded by the number of
customers with a `source_id`, whatever the number of events.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster

from contracts.identity import implicit_customer_id
from worker.domain import fields as f
from worker.domain.identity import Claim, IdentityChange, holder
from worker.store.keys import KeyLayout


@dataclass(frozen=True, slots=True)
class Holding:
    """Who holds a `source_id`: the claims on it (checked), the holder among them, and its
    implicit customer (whose record exists when events named the `source_id` alone)."""

    source_id: str
    implicit_id: str
    implicit_version: int  # 0: no record (never, or erased)
    implicit_token: str  # its write token: changes with every write
    claims: list[Claim]

    @property
    def implicit_exists(self) -> bool:
        """Whether the implicit customer has a record."""
        return self.implicit_version > 0

    @property
    def claimant(self) -> str | None:
        """The customer with an explicit id that holds the `source_id` (None: none)."""
        held = holder(self.claims)
        return None if held is None else held.customer_id

    def joined_by(self, customer_id: str) -> str | None:
        """What an explicit customer's `JOINED` is to say (`source_id|implicit write
        token`): it shows the implicit customer if it holds the `source_id` and the
        implicit customer has a record; None: it shows its own fields alone."""
        if self.claimant != customer_id or not self.implicit_exists:
            return None
        return f"{self.source_id}|{self.implicit_token}"

    @property
    def holder(self) -> str | None:
        """The customer the `source_id` resolves to (None: nobody)."""
        claimant = self.claimant
        if claimant is not None:
            return claimant
        return self.implicit_id if self.implicit_exists else None

    @property
    def conflicting(self) -> list[str]:
        """Customers whose valid claim lost to the holder's."""
        held = holder(self.claims)
        return [c.customer_id for c in self.claims if c.valid and c is not held]


#: Deletes a claim if it still carries the stamp found invalid (KEYS[1] the index).
_PURGE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class SourceIndex:
    """Writes claims and releases, and reads who holds a `source_id`."""

    def __init__(self, redis: "Redis | RedisCluster", key_prefix: str) -> None:
        self._redis = redis
        self._keys = KeyLayout(key_prefix)
        self._purge = redis.register_script(_PURGE)

    def _key(self, source_id: str) -> str:
        return self._keys.source_index(implicit_customer_id(source_id))

    async def update(self, changes: Sequence[IdentityChange]) -> dict[str, dict[str, str]]:
        """Write the changes (one pipelined round trip); returns the claims found on every
        `source_id` claimed, by `source_id`, to tell conflicts."""
        claimed: list[str] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for change in changes:
                for source_id in change.releases:
                    pipe.hdel(self._key(source_id), change.customer_id)
                if change.claim is not None:
                    source_id, stamp = change.claim
                    pipe.hset(self._key(source_id), change.customer_id, stamp)
                    pipe.hgetall(self._key(source_id))
                    claimed.append(source_id)
            replies: list[Any] = await pipe.execute()
        found = [reply for reply in replies if isinstance(reply, dict)]
        return dict(zip(claimed, found, strict=True))

    async def holding(self, source_id: str, claims: dict[str, str] | None = None) -> Holding:
        """Who holds `source_id`, every claim checked against its claimant's record
        (`claims`: as just read, else read now)."""
        if claims is None:
            (held,) = await self.holdings([source_id])
            return held
        (held,) = await self._checked([(source_id, claims)])
        return held

    async def holdings(self, source_ids: Sequence[str]) -> list[Holding]:
        """Who holds each `source_id` (two pipelined round trips for all)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for source_id in source_ids:
                pipe.hgetall(self._key(source_id))
            found: list[dict[str, str]] = await pipe.execute()
        return await self._checked(list(zip(source_ids, found, strict=True)))

    async def _checked(self, claimed: Sequence[tuple[str, dict[str, str]]]) -> list[Holding]:
        """The holdings of `source_id`s with the claims read, checked against the claimants'
        records (one pipelined round trip)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for source_id, claims in claimed:
                for customer_id in sorted(claims):
                    pipe.hmget(self._keys.record(customer_id), [f.SOURCE_ID, f.CREATED_AT])
                implicit = self._keys.record(implicit_customer_id(source_id))
                pipe.hmget(implicit, [f.CREATED_AT, f.VERSION, f.WRITE_TOKEN])
            replies = iter(await pipe.execute())
        holdings = []
        for source_id, claims in claimed:
            expected = orjson.dumps(source_id).decode()
            checked = []
            for customer_id in sorted(claims):
                value, since = next(replies)
                indexed = claims[customer_id]
                valid = value == expected and since is not None
                checked.append(Claim(customer_id, since if valid else indexed, valid, indexed))
            created, version, token = next(replies)
            version = int(version or 0) if created is not None else 0  # 0: none, or erased
            implicit_id = implicit_customer_id(source_id)
            holdings.append(Holding(source_id, implicit_id, version, token or "", checked))
        return holdings

    async def purge(self, holding: Holding) -> None:
        """Delete the claims found invalid, unless claimed again since they were read."""
        for claim in holding.claims:
            if not claim.valid:
                key = self._key(holding.source_id)
                await self._purge(keys=[key], args=[claim.customer_id, claim.indexed])
