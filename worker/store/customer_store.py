"""Applies batches of steps to customers' state in Redis: one script call per customer,
all calls of a batch pipelined into one round trip."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, OutOfMemoryError, ReadOnlyError, ResponseError

from worker.domain import fields
from worker.domain.steps import Step
from worker.store.keys import KeyLayout

APPLY_SCRIPT = files("worker.store").joinpath("apply.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A customer's state as of `version`, and what it was before the changes it folds in.

    `cause` is the position, among the customer's steps of the batch, of the step the
    version is attributed to (the last one applied, or the redelivered one).
    """

    version: int
    cause: int
    state: dict[str, str]
    before: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Per-step outcome letters (A applied, U unchanged, I ignored as erased, D duplicate,
    R refused: the record would outgrow its cap) and the snapshots to publish."""

    letters: str
    snapshots: list[Snapshot] = field(default_factory=list)


@dataclass(slots=True)
class CustomerBatch:
    """The steps of one customer in one batch, in delivery order."""

    customer_id: str
    steps: list[Step] = field(default_factory=list)
    confirmed_version: int = 0


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    items = iter(flat)
    return dict(zip(items, items, strict=True))


def _outcome(reply: Sequence[Any]) -> Outcome:
    snapshots = [
        Snapshot(int(version), int(index) - 1, before=_pairs(diff), state=_pairs(state))
        for version, index, diff, state in reply[1:]
    ]
    return Outcome(letters=reply[0], snapshots=snapshots)


class CustomerStore:
    """The customers' state in Redis (a client created with `decode_responses=True`)."""

    def __init__(
        self,
        redis: "Redis | RedisCluster",
        key_prefix: str,
        max_markers: int,
        every_change: bool,
        replay_window_seconds: int = 86_400,
        max_record_fields: int = 2000,
    ) -> None:
        self._redis = redis
        self._keys = KeyLayout(key_prefix)
        self._max_markers = str(max_markers)
        self._every_change = "1" if every_change else "0"
        self._replay_window = str(replay_window_seconds * 1_000_000)
        self._max_fields = str(max_record_fields)
        self._sha: str | None = None

    async def _load(self) -> str:
        self._sha = str(await self._redis.script_load(APPLY_SCRIPT))
        return self._sha

    async def apply(self, batches: Sequence[CustomerBatch]) -> list[Outcome | ResponseError]:
        """Apply every customer's steps; one pipelined round trip (two after a script flush).

        A customer whose script call Redis rejected gets its error back in place of its
        outcome. Connection failures, read-only replicas and out-of-memory raise instead:
        the caller retries the whole batch, which is safe because every step is idempotent.
        """
        sha = self._sha or await self._load()
        replies = await self._call(sha, batches)
        if any(isinstance(r, NoScriptError) for r in replies):
            sha = await self._load()
            replies = await self._call(sha, batches)
        outcomes: list[Outcome | ResponseError] = []
        for reply in replies:
            if isinstance(reply, (OutOfMemoryError, ReadOnlyError)) or not isinstance(
                reply, (ResponseError, list)
            ):
                raise reply if isinstance(reply, Exception) else TypeError(repr(reply))
            outcomes.append(reply if isinstance(reply, ResponseError) else _outcome(reply))
        return outcomes

    async def _call(self, sha: str, batches: Sequence[CustomerBatch]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch in batches:
                keys = self._keys.all(batch.customer_id)
                args: list[str | bytes] = [
                    str(batch.confirmed_version),
                    self._every_change,
                    self._max_markers,
                    self._replay_window,
                    self._max_fields,
                ]
                args += [step.encode() for step in batch.steps]
                # Not `pipe.evalsha`: redis-py refuses that name on cluster pipelines, while
                # the command itself is routed by its keys (one slot) like any other.
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def state(self, customer_id: str) -> dict[str, str]:
        """The stored state of one customer (empty if unknown)."""
        state = await self._redis.hgetall(self._keys.record(customer_id))
        return cast("dict[str, str]", state)

    async def version(self, customer_id: str) -> int:
        """The customer's stored version (0 if unknown)."""
        value = await self._redis.hget(self._keys.record(customer_id), fields.VERSION)
        return int(value or 0)
