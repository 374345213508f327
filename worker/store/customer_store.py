"""The customers' state in Redis: read what the worker does not hold, and write what the fold
computed with one atomic compare-and-set script call per customer (`commit.lua`), all the
calls of a batch pipelined into one round trip."""

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from itertools import chain
from typing import Any, NamedTuple, cast

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, ResponseError

from worker.domain import fields
from worker.domain.fold import (
    LAYOUT_VERSION,
    LEGACY_RECORD,
    Commit,
    CustomerState,
    new_write_token,
)
from worker.store.keys import KeyLayout
from worker.store.source_index import SourceIndex

COMMIT_SCRIPT = files("worker.store").joinpath("commit.lua").read_text(encoding="utf-8")

#: Customers per script call on a single Redis (on Redis Cluster: one, each its own slot).
#: A call costs less per customer than a call each, and keeps Redis busy ~3 ms at most.
COMMITS_PER_CALL = 64


class Written(NamedTuple):
    """The commit was written: the replay log gained `added` entries, lost `removed`, holds
    `kept` after its count bound (-1: not asked), which evicted up to time `trimmed`. (A
    named tuple: one per customer per batch, built faster than a frozen dataclass.)"""

    added: int
    removed: int
    kept: int
    trimmed: int


@dataclass(frozen=True, slots=True)
class Stale:
    """Nothing was written: the stored fields were not the expected ones. Here they are."""

    fields: dict[str, str]


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    items = iter(flat)
    return dict(zip(items, items, strict=True))


def _result(reply: Sequence[Any]) -> "Written | Stale":
    if reply[0] == 1:
        # Lua's integers arrive as ints; `trimmed` is a sorted-set score, sent as a string.
        return Written(reply[1], reply[2], reply[3], int(reply[4]))
    return Stale(_pairs(reply[1]))


class CustomerStore:
    """The customers' state in Redis (a client created with `decode_responses=True`)."""

    def __init__(
        self,
        redis: "Redis | RedisCluster",
        key_prefix: str,
    ) -> None:
        self._redis = redis
        self._keys = KeyLayout(key_prefix)
        self._sha: str | None = None
        self.index = SourceIndex(redis, key_prefix)

    async def _load_script(self) -> str:
        self._sha = str(await self._redis.script_load(COMMIT_SCRIPT))
        return self._sha

    async def commit(
        self, commits: Sequence[tuple[str, Commit]]
    ) -> list[Written | Stale | ResponseError]:
        """Write each customer's commit: one pipelined round trip (more after a script
        flush, or to isolate a customer whose write Redis rejects).

        A customer whose commit Redis rejected gets its error back in place of its result.
        Connection failures, read-only replicas and out-of-memory raise instead: the caller
        retries, which is safe because a commit applies at most once (its write token).
        """
        sha = self._sha or await self._load_script()
        size = 1 if isinstance(self._redis, RedisCluster) else COMMITS_PER_CALL
        calls = [commits[k : k + size] for k in range(0, len(commits), size)]
        replies = await self._call(sha, calls)
        if any(isinstance(r, NoScriptError) for r in replies):
            sha = await self._load_script()
            replies = await self._call(sha, calls)
        results: list[Written | Stale | ResponseError] = []
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, (OutOfMemoryError, ReadOnlyError)) or not isinstance(
                reply, (ResponseError, list)
            ):
                raise reply if isinstance(reply, Exception) else TypeError(repr(reply))
            if isinstance(reply, ResponseError) and len(call) > 1:
                # One customer's keys made the call fail: each one alone, to tell them apart
                # (those written before the failure are found stale, never written twice).
                results += await self.commit_each(sha, call)
            elif isinstance(reply, ResponseError):
                results.append(reply)
            else:
                results += [_result(one) for one in reply]
        return results

    async def commit_each(
        self, sha: str, commits: Sequence[tuple[str, Commit]]
    ) -> list[Written | Stale | ResponseError]:
        """One call per customer."""
        replies = await self._call(sha, [[commit] for commit in commits])
        return [
            reply if isinstance(reply, ResponseError) else _result(reply[0]) for reply in replies
        ]

    async def _call(self, sha: str, calls: Sequence[Sequence[tuple[str, Commit]]]) -> list[Any]:
        keys = self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                names: list[str] = []
                args: list[str | bytes] = []
                for customer_id, commit in call:
                    extra = keys.legacy(customer_id) if commit.expected == LEGACY_RECORD else []
                    names += (keys.record(customer_id), keys.replay_log(customer_id), *extra)
                    args += (
                        str(len(extra)),
                        commit.expected,
                        str(len(commit.sets)),
                        str(len(commit.deletes)),
                        str(len(commit.log)),
                        "" if commit.erase_cut is None else str(commit.erase_cut),
                        "" if commit.age_cut is None else str(commit.age_cut),
                        "" if commit.trim is None else str(commit.trim),
                    )
                    args += chain.from_iterable(commit.sets.items())
                    args += commit.deletes
                    for micros, entry in commit.log:
                        args += (str(micros), entry)
                # Not `pipe.evalsha`: redis-py refuses that name on cluster pipelines, while
                # the command itself is routed by its keys (one slot) like any other.
                pipe.execute_command("EVALSHA", sha, len(names), *names, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def load(self, customer_ids: Sequence[str]) -> list[CustomerState]:
        """The customers' stored state (one pipelined round trip; layout 1 records are
        migrated first, once)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                pipe.hgetall(self._keys.record(customer_id))
            found = await pipe.execute()
        return await self.states(list(zip(customer_ids, found, strict=True)))

    async def states(self, stored: Sequence[tuple[str, dict[str, str]]]) -> list[CustomerState]:
        """States of stored fields as read (migrating the layout 1 records among them)."""
        states: list[CustomerState] = []
        for customer_id, record in stored:
            while fields.VERSION in record and fields.WRITE_TOKEN not in record:
                record = await self._migrate(customer_id, record)
            held = {fields.held_name(name): value for name, value in record.items()}
            states.append(CustomerState(customer_id, held))
        return states

    async def _migrate(self, customer_id: str, record: dict[str, str]) -> dict[str, str]:
        """Move a layout 1 record's side keys into its record hash; the fields after that
        (or, if another worker wrote the record meanwhile, the fields it wrote)."""
        balances, orders, _, contributions, marker_set = self._keys.legacy(customer_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(balances)
            pipe.hgetall(orders)
            pipe.hgetall(contributions)
            pipe.zrange(marker_set, 0, -1, withscores=True)
            cards, order_states, counted, markers = await pipe.execute()
        moved = {fields.CARD + name: value for name, value in cards.items()}
        moved |= {fields.ORDER + name: value for name, value in order_states.items()}
        moved |= {fields.CONTRIBUTION + name: value for name, value in counted.items()}
        moved |= {
            fields.MARKER + marker: f"{int(version)}|{rank}"
            for rank, (marker, version) in enumerate(markers)
        }
        moved[fields.MARKER_SEQUENCE] = str(len(markers))
        moved[fields.LAYOUT] = LAYOUT_VERSION
        moved[fields.WRITE_TOKEN] = new_write_token()
        legacy = [name for name in fields.LEGACY_BOOKKEEPING if name in record]
        commit = Commit(LEGACY_RECORD, moved, legacy, [], None)
        (result,) = await self.commit([(customer_id, commit)])
        if isinstance(result, ResponseError):
            raise result
        if isinstance(result, Stale):
            return result.fields
        migrated = {
            name: value for name, value in record.items() if name not in fields.LEGACY_BOOKKEEPING
        }
        return migrated | moved

    async def erased(self, customer_ids: Sequence[str]) -> list[tuple[int, list[str]]]:
        """Per customer: the time it is erased up to (-1: never) and the `source_id`s its
        erased events named (one pipelined round trip)."""
        wanted = [fields.ERASED_UNTIL, fields.ERASED_SOURCE_IDS]
        async with self._redis.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                pipe.hmget(self._keys.record(customer_id), wanted)
            found = await pipe.execute()
        return [
            (int(until or -1), [] if named is None else orjson.loads(named))
            for until, named in found
        ]

    async def logs(self, customer_ids: Sequence[str]) -> list[list[tuple[int, bytes]]]:
        """The customers' replay logs: (micros, step JSON), oldest first."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                pipe.zrange(self._keys.replay_log(customer_id), 0, -1, withscores=True)
            found = await pipe.execute()
        return [[(int(score), entry.encode()) for entry, score in log] for log in found]

    async def state(self, customer_id: str) -> dict[str, str]:
        """The stored fields of one customer (empty if unknown)."""
        state = await self._redis.hgetall(self._keys.record(customer_id))
        return cast("dict[str, str]", state)

    async def version(self, customer_id: str) -> int:
        """The customer's stored version (0 if unknown)."""
        value = await self._redis.hget(self._keys.record(customer_id), fields.VERSION)
        return int(value or 0)
