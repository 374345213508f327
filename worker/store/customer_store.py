"""The customers' state in Redis: read what the worker does not hold, and write what the fold
computed with one atomic compare-and-set script call per customer (`commit.lua`), all the
calls of a batch pipelined into one round trip."""

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from itertools import chain
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, ResponseError

from worker.domain import fields
from worker.domain.fold import LAYOUT_VERSION, Commit, CustomerState
from worker.store.keys import KeyLayout

COMMIT_SCRIPT = files("worker.store").joinpath("commit.lua").read_text(encoding="utf-8")

#: `Commit.expected` of a layout 1 record, which has no write sequence.
LEGACY = -1


@dataclass(frozen=True, slots=True)
class Written:
    """The commit was written; `beyond_log`: it erased past what the replay log may have
    evicted (events dated after the erase may be missing from the fresh record)."""

    beyond_log: bool


@dataclass(frozen=True, slots=True)
class Stale:
    """Nothing was written: the stored fields were not the expected ones. Here they are."""

    fields: dict[str, str]


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    items = iter(flat)
    return dict(zip(items, items, strict=True))


class CustomerStore:
    """The customers' state in Redis (a client created with `decode_responses=True`)."""

    def __init__(
        self,
        redis: "Redis | RedisCluster",
        key_prefix: str,
        replay_window_seconds: int = 86_400,
        max_markers: int = 256,
    ) -> None:
        self._redis = redis
        self._keys = KeyLayout(key_prefix)
        self._window = str(replay_window_seconds * 1_000_000)
        self._kept = str(max_markers)
        self._sha: str | None = None

    async def _load_script(self) -> str:
        self._sha = str(await self._redis.script_load(COMMIT_SCRIPT))
        return self._sha

    async def commit(
        self, commits: Sequence[tuple[str, Commit]]
    ) -> list[Written | Stale | ResponseError]:
        """Write each customer's commit; one pipelined round trip (two after a script flush).

        A customer whose call Redis rejected gets its error back in place of its result.
        Connection failures, read-only replicas and out-of-memory raise instead: the caller
        retries, which is safe because a commit applies at most once (its write sequence).
        """
        sha = self._sha or await self._load_script()
        replies = await self._call(sha, commits)
        if any(isinstance(r, NoScriptError) for r in replies):
            sha = await self._load_script()
            replies = await self._call(sha, commits)
        results: list[Written | Stale | ResponseError] = []
        for reply in replies:
            if isinstance(reply, (OutOfMemoryError, ReadOnlyError)) or not isinstance(
                reply, (ResponseError, list)
            ):
                raise reply if isinstance(reply, Exception) else TypeError(repr(reply))
            if isinstance(reply, ResponseError):
                results.append(reply)
            elif reply[0] == 1:
                results.append(Written(reply[1] == 1))
            else:
                results.append(Stale(_pairs(reply[1])))
        return results

    async def _call(self, sha: str, commits: Sequence[tuple[str, Commit]]) -> list[Any]:
        keys, window, kept = self._keys, self._window, self._kept
        async with self._redis.pipeline(transaction=False) as pipe:
            for customer_id, commit in commits:
                extra = keys.legacy(customer_id) if commit.expected == LEGACY else []
                args: list[str | bytes] = [
                    "-" if commit.expected == LEGACY else str(commit.expected),
                    str(len(commit.sets)),
                    str(len(commit.deletes)),
                    str(len(commit.log)),
                    "" if commit.erase_cut is None else str(commit.erase_cut),
                    "" if commit.latest is None else str(commit.latest),
                    window,
                    kept,
                ]
                args += chain.from_iterable(commit.sets.items())
                args += commit.deletes
                for micros, entry in commit.log:
                    args += (str(micros), entry)
                # Not `pipe.evalsha`: redis-py refuses that name on cluster pipelines, while
                # the command itself is routed by its keys (one slot) like any other.
                pipe.execute_command(
                    "EVALSHA",
                    sha,
                    2 + len(extra),
                    keys.record(customer_id),
                    keys.replay_log(customer_id),
                    *extra,
                    *args,
                )
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
            while fields.VERSION in record and fields.WRITE_SEQUENCE not in record:
                record = await self._migrate(customer_id, record)
            states.append(CustomerState(customer_id, record))
        return states

    async def _migrate(self, customer_id: str, record: dict[str, str]) -> dict[str, str]:
        """Move a layout 1 record's side keys into its record hash; the fields after that
        (or, if another worker wrote the record meanwhile, the fields it wrote)."""
        balances, orders, _, contributions, _ = self._keys.legacy(customer_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(balances)
            pipe.hgetall(orders)
            pipe.hgetall(contributions)
            pipe.zrange(self._keys.legacy(customer_id)[4], 0, -1, withscores=True)
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
        moved[fields.WRITE_SEQUENCE] = "1"
        commit = Commit(LEGACY, moved, ["dn"] if "dn" in record else [], [], None, None)
        (result,) = await self.commit([(customer_id, commit)])
        if isinstance(result, ResponseError):
            raise result
        if isinstance(result, Stale):
            return result.fields
        migrated = {name: value for name, value in record.items() if name != "dn"}
        return migrated | moved

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
