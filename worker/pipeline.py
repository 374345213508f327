"""One batch, end to end: decode, fold, write to Redis, publish, and say which offsets are
done.

Order of effects per batch (DESIGN.md §1): every customer's events are folded into the
customer's stored fields (held in the record cache, read from Redis when not) and written
back in one atomic compare-and-set step per customer (one pipelined round trip for the
batch; a customer whose stored fields moved since is read, folded and written again), the
output is rendered, then every `customer.updated` and dead letter is produced and
acknowledged, and only then are the offsets returned for commit. A crash anywhere before the
commit means redelivery; redelivered events are recognised by their dedup markers, and the
current snapshot is published again if its version may not have been published yet.
"""

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import orjson
from aiokafka import TopicPartition
from opentelemetry.trace import Link
from redis.exceptions import ResponseError

from contracts.events import AnyInputEvent
from contracts.identity import implicit_customer_id, is_implicit
from contracts.loyalty import ReferralCompleted
from worker.domain import fields as f
from worker.domain.clock import format_time
from worker.domain.fields import visible_fields
from worker.domain.fold import (
    Commit,
    CustomerState,
    Folded,
    FoldLimits,
    fold,
    names_source_id,
)
from worker.domain.identity import IdentityChange, identity_change, joined_implicit
from worker.domain.merge import JoinedView
from worker.domain.record import RenderedRecord
from worker.domain.steps import Op, Step, erasure_step, notice_step, referrer_step_of, step_of
from worker.intake import Intake
from worker.messages import Cause, OutMessage, customer_updated, dead_letter, forward
from worker.metrics import OUTCOMES, Metrics
from worker.notices import Notice, erasure, is_notice, notice, read_notice
from worker.publisher import Publisher
from worker.record_cache import RecordCache
from worker.records import InputRecord
from worker.rejection import Rejection
from worker.retry import Retrier
from worker.settings import Topics
from worker.store.customer_store import CustomerStore, Stale, Written
from worker.trace_context import TraceContext
from worker.tracing import BatchTrace, Tracing, input_context

log = logging.getLogger(__name__)


#: Published versions remembered until the customer's next step confirms them to Redis.
#: Forgetting one only costs an unnecessary re-publish after a redelivery.
_MAX_CONFIRMATIONS = 20_000
#: Fold-and-write rounds of one batch before giving up on customers whose stored fields
#: keep moving (another worker writing them: a rebalance in progress). Retried later.
_MAX_ROUNDS = 10


class ConcurrentWriter(RuntimeError):
    """Customers' stored fields kept changing under the batch: another worker writes them
    (a rebalance in progress). The batch fails, is rewound and retried after a pause."""


@dataclass(slots=True)
class _Work:
    """One customer's share of a batch: its steps, the record each came from, its state
    (cached, read, or for a customer not seen yet a guess of "no record") and its fold."""

    customer_id: str
    state: CustomerState
    confirmed: int
    steps: list[Step] = field(default_factory=list)
    sources: list[tuple[InputRecord, "AnyInputEvent | Notice"]] = field(default_factory=list)
    folded: Folded | None = None
    guessed: bool = False  # `state` is the guess "no record", not read yet
    erasing: bool = False  # an erase is among the steps (the fold needs the replay log)

    def add(self, step: Step, source: tuple[InputRecord, "AnyInputEvent | Notice"]) -> None:
        """One more step of the batch, with the input it comes from."""
        self.steps.append(step)
        self.sources.append(source)
        if step.erases:
            self.erasing = True


_Dead = tuple[InputRecord, Rejection]


@dataclass(slots=True)
class _Plan:
    """A decoded batch: each customer's steps, the rejected records, the referrals to
    forward to their referrer's worker (record, referrer), the inputs' trace contexts."""

    work: dict[str, _Work] = field(default_factory=dict)
    dead: list[_Dead] = field(default_factory=list)
    forward: list[tuple[InputRecord, str]] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    notices: list[tuple[InputRecord, Notice]] = field(default_factory=list)
    claimants: dict[str, list[str]] = field(default_factory=dict)  # by noticed implicit id
    erasures: list[tuple[InputRecord, Notice]] = field(default_factory=list)
    cache_misses: int = 0  # customers of the batch the record cache did not hold


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """A batch written to Redis whose output (rendered) is not published yet."""

    records: Sequence[InputRecord]
    outcomes: list[_Work]
    messages: list[OutMessage]
    versions: dict[str, int]
    started: float
    trace: BatchTrace | None = None


class BatchPipeline:
    """Processes batches of input records; keeps the record cache and pending
    confirmations between them."""

    def __init__(
        self,
        intake: Intake,
        store: CustomerStore,
        publisher: Publisher,
        topics: Topics,
        retrier: Retrier,
        metrics: Metrics,
        fold_limits: FoldLimits,
        cache: RecordCache,
        tracing: Tracing | None = None,
    ) -> None:
        self._intake = intake
        self._store = store
        self._publisher = publisher
        self._topics = topics
        self._retrier = retrier
        self._metrics = metrics
        self._refusals = _refusals(fold_limits)
        self._fold_limits = fold_limits
        self._cache = cache
        self._tracing = tracing or Tracing(None, "")
        # Oldest first; an OrderedDict pops its oldest in O(1), where a dict's first key
        # is found past the slots of every key deleted before it.
        self._published: OrderedDict[str, int] = OrderedDict()

    async def process(self, records: Sequence[InputRecord]) -> dict[TopicPartition, int]:
        """Handle the batch completely; returns the offsets to commit (last + 1)."""
        return await self.publish(await self.apply(records))

    async def apply(self, records: Sequence[InputRecord]) -> AppliedBatch:
        """First half: decode, fold, write to Redis and render the output (nothing is
        published yet)."""
        started, started_ns = time.perf_counter(), time.time_ns()
        plan = self._plan(records)
        trace = self._tracing.begin(records, plan.links, started_ns)
        try:
            await self._retrier.run("redis", partial(self._noticed, plan))
            await self._retrier.run("redis", partial(self._erasing, plan))
            done, rejected = await self._apply(list(plan.work.values()), trace)
            changes = await self._identities(done)
            joined = await self._retrier.run("redis", partial(self._joined, done, plan))
            now = format_time(datetime.now(UTC))
            context = None
            if trace is not None:
                context = trace.start_publish(self._topics.customer_updated)
            messages = [self._dead_letter(record, why, now) for record, why in plan.dead + rejected]
            messages += [
                forward(self._topics.referrals, referrer, record, context)
                for record, referrer in plan.forward
            ]
            messages += self._notices(done, changes, now, plan.claimants)
            versions: dict[str, int] = {}
            for item in done:
                messages += self._announce(item, versions, now, context, joined)
            if trace is not None:
                trace.produced(len(messages))
            self._metrics.cache_lookups.labels("miss").inc(plan.cache_misses)
            self._metrics.cache_lookups.labels("hit").inc(len(plan.work) - plan.cache_misses)
        except BaseException as error:
            if trace is not None:
                trace.end(error)
            raise
        return AppliedBatch(records, done, messages, versions, started, trace)

    async def publish(self, batch: AppliedBatch) -> dict[TopicPartition, int]:
        """Second half: publish the batch's updates and dead letters, wait for every
        acknowledgement; returns the offsets to commit (last + 1 per partition)."""
        try:
            await self._retrier.run("kafka", partial(self._publish, batch.messages))
        except BaseException as error:
            if batch.trace is not None:
                batch.trace.end(error)
            raise
        if batch.trace is not None:
            batch.trace.end()
        self._remember(batch.versions)
        self._count(batch.outcomes)
        self._metrics.batch_size.observe(len(batch.records))
        self._metrics.cache_bytes.set(self._cache.bytes)
        self._metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        return _next_offsets(batch.records)

    async def _publish(self, messages: list[OutMessage]) -> None:
        with self._metrics.publish_seconds.time():
            await self._publisher.publish_all(messages)

    def _dead_letter(self, record: InputRecord, why: Rejection, now: str) -> OutMessage:
        log.warning(
            "dead-lettered %s record: %s",
            why.error_class,
            why.message,
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error_class": why.error_class,
            },
        )
        self._metrics.dlq.labels(record.topic, why.error_class).inc()
        self._metrics.events.labels(record.topic, "", "dlq").inc()
        return dead_letter(self._topics.dlq(record.topic), record, why, now)

    def _count(self, outcomes: list[_Work]) -> None:
        """Events by topic, type and outcome."""
        counts: Counter[tuple[str, str, str]] = Counter()  # by letter: named once per batch
        debug = log.isEnabledFor(logging.DEBUG)
        for item in outcomes:
            assert item.folded is not None
            for (record, event), letter in zip(item.sources, item.folded.letters, strict=True):
                counts[record.topic, event.type, letter] += 1
                if debug and letter in OUTCOMES:
                    log.debug("event %s", OUTCOMES[letter], extra=_event_fields(record, event))
        totals: Counter[tuple[str, str, str]] = Counter()
        for (topic, event_type, letter), count in counts.items():
            outcome_name = OUTCOMES.get(letter)  # refused ones are counted as dead letters
            if outcome_name is not None:
                totals[topic, event_type, outcome_name] += count
        for labels, count in totals.items():
            self._metrics.events.labels(*labels).inc(count)

    def _plan(self, records: Sequence[InputRecord]) -> _Plan:
        """Decode and group by customer. A referral's referrer side is not applied here: it
        is forwarded to the referrals topic, keyed by the referrer, so that the worker owning
        the referrer applies it and every customer is written (and published) by one worker."""
        plan = _Plan()
        forwarded = self._topics.referrals
        tracing = self._tracing.enabled
        for record in records:
            if record.topic == forwarded and is_notice(record):
                found = read_notice(record.value)
                if found is None:
                    plan.dead.append((record, Rejection("InvalidNotice", "not an identity notice")))
                elif found.erased_by is not None:
                    plan.erasures.append((record, found))
                else:
                    plan.notices.append((record, found))
                continue
            event = self._intake.decode(record.topic, record.value)
            if tracing and (link := input_context(record, _event_or_none(event))) is not None:
                plan.links.append(link)
            if isinstance(event, Rejection):
                plan.dead.append((record, event))
                continue
            if record.topic != forwarded:
                step = step_of(event)
                if isinstance(event, ReferralCompleted):
                    plan.forward.append((record, event.data.referrer_id))
            elif isinstance(event, ReferralCompleted):
                step = referrer_step_of(event)
            else:
                plan.dead.append((record, Rejection("UnknownEventType", "not a referral")))
                continue
            self._work_of(plan, step.customer_id).add(step, (record, event))
        return plan

    def _work_of(self, plan: _Plan, customer_id: str) -> _Work:
        """The customer's share of the batch (created with its cached state, if any)."""
        item = plan.work.get(customer_id)
        if item is None:
            state = self._cache.take(customer_id)
            confirmed = self._published.pop(customer_id, 0)
            guess = state is None
            plan.cache_misses += guess
            state = state or CustomerState(customer_id, {})
            item = plan.work[customer_id] = _Work(customer_id, state, confirmed, guessed=guess)
        return item

    async def _noticed(self, plan: _Plan) -> None:
        """Turn the batch's identity notices into steps: each target is set to the view
        that who holds the `source_id` now calls for (see `worker.notices`). An implicit
        customer's `MERGED_INTO` is the customer holding its `source_id`, if any; an
        explicit customer's `JOINED` names the implicit customer whose fields it shows,
        if it holds the `source_id` of its record and that implicit customer has one."""
        if not plan.notices:
            return
        items = [self._work_of(plan, found.target) for _, found in plan.notices]
        guessed = list({item.customer_id: item for item in items if item.guessed}.values())
        if guessed:
            states = await self._store.load([item.customer_id for item in guessed])
            for item, state in zip(guessed, states, strict=True):
                item.state, item.guessed = state, False
        # The source_id each notice is about: an explicit customer's is its record's own.
        about: list[str | None] = []
        for (_, found), item in zip(plan.notices, items, strict=True):
            own = item.state.fields.get(f.SOURCE_ID)
            if is_implicit(found.target):
                about.append(found.source_id)
            else:
                about.append(None if own is None else orjson.loads(own))
        wanted = sorted({source_id for source_id in about if source_id is not None})
        held = dict(zip(wanted, await self._store.index.holdings(wanted), strict=True))
        steps = []  # appended once all are known: this may be retried
        for (record, found), item, source_id in zip(plan.notices, items, about, strict=True):
            holding = None if source_id is None else held[source_id]
            if is_implicit(found.target):
                claimant = None if holding is None else holding.claimant
                if holding is not None:
                    plan.claimants[found.target] = [c.customer_id for c in holding.claims]
                step = notice_step(
                    found.target, found.marker, f.MERGED_INTO, claimant, f.MERGED_BEFORE
                )
            else:
                view = None if holding is None else holding.joined_by(found.target)
                step = notice_step(found.target, found.marker, f.JOINED, view)
            steps.append((item, step, record, found))
        for item, step, record, found in steps:
            item.add(step, (record, found))

    async def _erasing(self, plan: _Plan) -> None:
        """Turn the batch's erasures into erase steps of their implicit customers, each
        once the erased customer's record confirms it: erased up to then or later, and
        keeping the `source_id` among those its erased events named. An erasure that
        does not hold is dead-lettered."""
        if not plan.erasures:
            return
        erased = await self._store.erased([found.erased_by or "" for _, found in plan.erasures])
        steps, dead = [], []
        for (record, found), (until, named) in zip(plan.erasures, erased, strict=True):
            if until >= found.erased_until and found.source_id in named:
                steps.append((record, found))
            else:
                why = "an erasure its erased customer's record does not confirm"
                dead.append((record, Rejection("InvalidNotice", why)))
        for record, found in steps:  # appended once all are known: this may be retried
            step = erasure_step(found.target, found.marker, found.erased_until)
            self._work_of(plan, found.target).add(step, (record, found))
        plan.dead += dead

    def _notices(
        self,
        done: list[_Work],
        changes: list[IdentityChange],
        now: str,
        claimants: dict[str, list[str]],
    ) -> list[OutMessage]:
        """Notices to send: to the implicit customer of every `source_id` claimed or
        released; from an implicit customer whose holder changed, to the old and new one;
        from one that changed while held, to its holder (to show the change); from one
        that saw a redelivery (its batch may have stopped before its notices were sent),
        to its holder and the ones before; from one that looked again, also to every
        claimant (one may have seen the claims between two changes, and show them still)."""
        topic = self._topics.referrals
        erasures = [
            erasure(topic, source_id, until, item.customer_id, now)
            for item in done
            for source_id, until in _erasures(item)
        ]
        sent: dict[tuple[str, str], OutMessage] = {}
        for change in changes:
            claimed = () if change.claim is None else (change.claim[0],)
            for source_id in (*change.releases, *claimed):
                target = implicit_customer_id(source_id)
                sent[target, source_id] = notice(topic, target, source_id, now)
        for item in done:
            assert item.folded is not None
            if not is_implicit(item.customer_id):
                continue
            stored, letters = item.state.fields, item.folded.letters
            holder = stored.get(f.MERGED_INTO)
            told: list[str | None] = []
            if f.MERGED_INTO in item.folded.before:
                told = [item.folded.before[f.MERGED_INTO], holder]
            elif "D" in letters:
                told = [holder, *orjson.loads(stored.get(f.MERGED_BEFORE) or "[]")]
            elif item.folded.commit is not None and any(
                letter in "AU" and not step.notice
                for step, letter in zip(item.steps, letters, strict=True)
            ):  # any write may change what the holder shows, visible here or not
                told = [holder]
            told += claimants.get(item.customer_id, [])
            for customer in told:
                if customer is not None:
                    sent[customer, ""] = notice(topic, customer, item.customer_id, now)
        return erasures + list(sent.values())

    async def _joined(self, done: list[_Work], plan: _Plan) -> dict[str, dict[str, str]]:
        """The fields of the implicit customers the batch's explicit customers show joined
        to their own (`JOINED` naming the `source_id` their record holds), by the explicit
        customer's id: from this batch when it wrote them, from the record cache when it
        holds the version `JOINED` names (this worker owns the implicit customer), else
        read."""
        wanted: dict[str, str] = {}
        found: dict[str, dict[str, str]] = {}
        for item in done:
            joined = joined_implicit(item.state.fields)
            if joined is None:
                continue
            implicit, token = joined
            wanted[item.customer_id] = implicit
            if implicit in plan.work:
                found[implicit] = plan.work[implicit].state.fields
            elif (cached := self._cache.peek(implicit)) is not None and cached.write_token == token:
                found[implicit] = cached.fields
        unread = sorted({i for i in wanted.values() if i not in found})
        if unread:
            found |= {s.customer_id: s.fields for s in await self._store.load(unread)}
        return {customer: found[implicit] for customer, implicit in wanted.items()}

    async def _apply(
        self, work: list[_Work], trace: BatchTrace | None
    ) -> tuple[list[_Work], list[_Dead]]:
        """Fold every customer's steps and write them. A customer whose stored fields moved
        is folded again from them; one whose fold fails (a bug) or whose write Redis rejects
        is isolated: its steps are folded and written one by one, and the ones that still
        fail are dead-lettered (a rejected write changes nothing: see commit.lua)."""
        done, failed = await self._write(work, trace)
        dead: list[_Dead] = []
        for item, error in failed:
            if len(item.steps) == 1:
                log.error("an event cannot be applied: %s", error, extra=_work_fields(item))
                dead.append((item.sources[0][0], _failed(error)))
                continue
            state = item.state
            for step, source in zip(item.steps, item.sources, strict=True):
                single = _Work(item.customer_id, state, item.confirmed)
                single.add(step, source)
                alone, still = await self._write([single], trace)
                state = single.state
                done += alone
                dead += [(source[0], _failed(error)) for _, error in still]
                if still:
                    log.error(
                        "an event cannot be applied: %s", still[0][1], extra=_work_fields(single)
                    )
        for item in done:
            dead += self._refused(item)
        return done, dead

    async def _write(
        self, work: list[_Work], trace: BatchTrace | None
    ) -> tuple[list[_Work], list[tuple[_Work, BaseException]]]:
        """Fold and write until every customer's write applied or failed.

        Each Redis call is retried on its own while Redis is unavailable: a write that may
        or may not have happened is sent again, and is then either written or found stale
        (its write token changed), never applied twice."""
        done: list[_Work] = []
        failed: list[tuple[_Work, BaseException]] = []
        pending = work
        for _ in range(_MAX_ROUNDS):
            logs = await self._logs(pending)
            writes: list[_Work] = []
            for item in pending:
                if item.state.rendered is None:  # the record before this batch, to diff
                    item.state.rendered = rendered_record(item.state)
                try:
                    item.folded = fold(
                        item.state,
                        item.steps,
                        self._fold_limits,
                        item.confirmed,
                        logs.get(item.customer_id),
                        joined=joined_implicit(item.state.fields) is not None,
                    )
                except Exception as error:  # a bug must not block the partition
                    log.exception("folding events failed", extra=_work_fields(item))
                    failed.append((item, error))
                    continue
                (done if item.folded.commit is None else writes).append(item)
            if not writes:
                return done, failed
            commits: list[tuple[str, Commit]] = []
            for item in writes:
                assert item.folded is not None
                assert item.folded.commit is not None
                commits.append((item.customer_id, item.folded.commit))
            results = await self._retrier.run("redis", partial(self._commit, commits, trace))
            stale: list[tuple[str, dict[str, str]]] = []
            again: list[_Work] = []
            for item, result in zip(writes, results, strict=True):
                assert item.folded is not None
                if isinstance(result, Written):
                    item.state.commit(
                        item.folded, result.added, result.removed, result.kept, result.trimmed
                    )
                    done.append(item)
                    self._warn(item)
                elif isinstance(result, Stale):
                    stale.append((item.customer_id, result.fields))
                    again.append(item)
                else:  # nothing was written (see commit.lua)
                    item.state.undo(item.folded)
                    failed.append((item, result))
            if not stale:
                return done, failed
            states = await self._retrier.run("redis", partial(self._store.states, stale))
            for item, state in zip(again, states, strict=True):
                item.state = state
            pending = again
        raise ConcurrentWriter(f"{len(pending)} customers' stored fields keep changing")

    async def _commit(
        self, commits: list[tuple[str, Commit]], trace: BatchTrace | None
    ) -> list[Written | Stale | ResponseError]:
        with self._metrics.redis_seconds.time():
            if trace is None:
                return await self._store.commit(commits)
            with trace.commit():
                return await self._store.commit(commits)

    async def _identities(self, done: list[_Work]) -> list[IdentityChange]:
        """Tell the source_id index what the written folds claim and release (after the
        records: see `worker.store.source_index` for why a crash in between is safe)."""
        changes = []
        for item in done:
            assert item.folded is not None
            change = identity_change(item.state, item.folded)
            if change is not None:
                changes.append(change)
        if changes:
            await self._retrier.run("redis", partial(self._claim, changes))
        return changes

    async def _claim(self, changes: list[IdentityChange]) -> None:
        """Write the claims and releases; a `source_id` claimed by more than one customer
        has its claims checked: left-over ones are purged, valid ones surfaced as an
        IdentityConflict (never merged; the earliest claim holds it)."""
        index = self._store.index
        claimed = await index.update(changes)
        for source_id, claims in claimed.items():
            if len(claims) < 2:
                continue
            holding = await index.holding(source_id, claims)
            await index.purge(holding)
            if holding.conflicting:
                self._metrics.identity_conflicts.inc()
                log.warning(
                    "IdentityConflict: a source_id is claimed by %d customers; %s holds it",
                    len(holding.conflicting) + 1,
                    holding.holder,
                    extra={
                        "error_class": "IdentityConflict",
                        "holder": holding.holder,
                        "conflicting": holding.conflicting,
                        "implicit_id": holding.implicit_id,
                    },
                )

    async def _logs(self, work: list[_Work]) -> dict[str, list[tuple[int, bytes]]]:
        """The replay logs of the customers with an erase among their steps."""
        erasing = [item.customer_id for item in work if item.erasing]
        if not erasing:
            return {}
        logs = await self._retrier.run("redis", lambda: self._store.logs(erasing))
        return dict(zip(erasing, logs, strict=True))

    def _warn(self, item: _Work) -> None:
        assert item.folded is not None
        if item.folded.beyond_log or item.folded.refold_refused:
            log.warning(
                "an erase arrived after events older than the replay log keeps, or events "
                "dated after it no longer fit: the fresh record may miss some of them",
                extra=_work_fields(item),
            )

    def _announce(
        self,
        item: _Work,
        versions: dict[str, int],
        now: str,
        context: TraceContext | None = None,
        joined: dict[str, dict[str, str]] | None = None,
    ) -> list[OutMessage]:
        """The `customer.updated` messages of one customer's snapshots, rendered from its
        cached record; the state is cached again. An implicit customer merged into the
        holder of its `source_id` publishes the `customer.merged` tombstone; the holder
        publishes its fields joined with the implicit customer's (the last ones of the
        batch, for each of its snapshots)."""
        state, folded = item.state, item.folded
        assert folded is not None
        rendered = state.rendered
        assert isinstance(rendered, RenderedRecord)
        merged_into = None  # an erased one publishes `customer.erased`
        if f.CREATED_AT in state.fields:
            merged_into = state.fields.get(f.MERGED_INTO)
        other = (joined or {}).get(item.customer_id)
        view, shown, changes = rendered.view, None, None
        rendered.view = None  # again once the record shows it
        if other is not None:
            if view is not None and (applied := _applied(item)) is not None:
                before = state.write_token if folded.commit is None else folded.commit.expected
                changes = view.advance((before, state.write_token), other, applied)
            if changes is None:
                view = JoinedView.of(state.fields, other)
                if view is None:
                    other = None
                    log.error("a joined record leaves the exact range", extra=_work_fields(item))
                else:
                    shown = visible_fields(view.fields)
        if other is None and rendered.joined:
            shown = visible_fields(state.fields)
        messages = []
        for snapshot in folded.snapshots:
            event = item.sources[snapshot.cause][1]
            if changes is not None:  # the join, moved on by the customer's own events
                record, changed = rendered.apply(changes)
                changes, rendered.view = {}, view
            elif shown is None:
                record, changed = rendered.apply(snapshot.changes, snapshot.wiped)
            else:
                record, changed = rendered.show(shown)
                rendered.joined = other is not None
                rendered.view = view if other is not None else None
            messages.append(
                customer_updated(
                    self._topics.customer_updated,
                    item.customer_id,
                    snapshot.version,
                    None if merged_into is not None else record,
                    changed,
                    Cause(event.id, event.source, event.type),
                    now,
                    context,
                    merged_into,
                )
            )
            versions[item.customer_id] = snapshot.version
        self._cache.put(state)
        return messages

    def _refused(self, item: _Work) -> list[_Dead]:
        """Steps the fold refused (record caps, exact range): dead-lettered, not applied."""
        assert item.folded is not None
        if self._refusals.keys().isdisjoint(item.folded.letters):
            return []
        return [
            (record, self._refusals[letter])
            for (record, _), letter in zip(item.sources, item.folded.letters, strict=True)
            if letter in self._refusals
        ]

    def _remember(self, versions: dict[str, int]) -> None:
        self._published.update(versions)
        while len(self._published) > _MAX_CONFIRMATIONS:
            self._published.popitem(last=False)


def _erasures(item: _Work) -> list[tuple[str, int]]:
    """The implicit customers (by source_id) an explicit customer's erase reaches, and
    the erase's time: sent when the batch erased it, or saw an event dated before its
    erase (which may name a source_id, or be a redelivery whose batch stopped before its
    erasures were sent)."""
    fields = item.state.fields
    named = fields.get(f.ERASED_SOURCE_IDS)
    if named is None:
        return []
    assert item.folded is not None
    until = int(fields[f.ERASED_UNTIL])
    for step, letter in zip(item.steps, item.folded.letters, strict=True):
        if step.erases and step.micros <= until and letter in "AUD":
            break  # this erase, applied or redelivered
        if letter in "ID" and step.micros <= until and names_source_id(step):
            break  # booked when it was ignored, maybe in a batch that stopped before
    else:
        return []
    return [(source_id, until) for source_id in orjson.loads(named)]


def _applied(item: _Work) -> list[tuple[int, str, tuple[Op, ...]]] | None:
    """The customer's own events the fold applied (micros, marker, operations), to move
    its join on with; None when one was an erase (then it is joined again)."""
    assert item.folded is not None
    applied = []
    for step, letter in zip(item.steps, item.folded.letters, strict=True):
        if letter in "AU" and not step.notice:
            if step.erases:
                return None
            applied.append((step.micros, step.marker, step.ops))
    return applied


def _event_or_none(decoded: AnyInputEvent | Rejection) -> AnyInputEvent | None:
    return None if isinstance(decoded, Rejection) else decoded


def rendered_record(state: CustomerState) -> RenderedRecord:
    """The record of a customer's stored fields, ready to render changes incrementally."""
    return RenderedRecord(state.customer_id, visible_fields(state.fields))


def _failed(error: BaseException) -> Rejection:
    return Rejection("ProcessingError", f"{type(error).__name__}: {error}")


def _refusals(limits: FoldLimits) -> dict[str, Rejection]:
    """The dead letters' reasons, by the fold's refusal letters."""
    return {
        "R": Rejection(
            "RecordLimitExceeded",
            f"the customer's record would exceed {limits.max_fields} fields or "
            f"{limits.max_bytes} bytes "
            "(CW_LIMITS__MAX_RECORD_FIELDS, CW_LIMITS__MAX_RECORD_BYTES)",
        ),
        "X": Rejection(
            "CounterOverflow",
            "a counter or sum of the customer's record would leave the exact range |x| <= 2^53 - 1",
        ),
    }


def _work_fields(item: _Work) -> dict[str, object]:
    """What a log line about one customer's share of a batch carries."""
    record, event = item.sources[0]
    return {**_event_fields(record, event), "events": len(item.sources)}


def _event_fields(record: InputRecord, event: "AnyInputEvent | Notice") -> dict[str, object]:
    """What a log line about one event carries: ids and coordinates, no personal data."""
    return {
        "event_id": event.id,
        "event_type": event.type,
        "subject": event.customer_id,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }


def _next_offsets(records: Sequence[InputRecord]) -> dict[TopicPartition, int]:
    last: dict[tuple[str, int], int] = {}
    for record in records:
        partition, offset = (record.topic, record.partition), record.offset
        if offset >= last.get(partition, -1):
            last[partition] = offset
    return {TopicPartition(*partition): offset + 1 for partition, offset in last.items()}
