"""The end-of-scenario judgement, kept pure (no I/O) so that it can be shown to fail.

Every customer's stored record must equal the reference fold of the distinct events sent
(which implies every event applied exactly once); its last `customer.updated` must carry the
stored version and record; versions in the output never go backwards; and the DLQ topics hold
exactly the poison that was sent, byte for byte.
"""

import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]

#: Counters compared to report "lost" (below the reference) and "double-counted" (above).
#: `loyalty.points` is a net sum, so a lost subtraction shows up as an excess.
COUNTERS: dict[str, tuple[str, ...]] = {
    "loyalty.points": ("loyalty", "points"),
    "orders.count": ("summary", "orders", "total_count"),
    "redemptions.succeeded": ("summary", "redemptions", "total_succeeded"),
    "redemptions.failed": ("summary", "redemptions", "total_failed"),
    "redemptions.rollback_succeeded": ("summary", "redemptions", "total_rollback_succeeded"),
    "redemptions.rollback_failed": ("summary", "redemptions", "total_rollback_failed"),
    "referrals.total": ("referrals", "total"),
    "loyalty.referred_customers": ("loyalty", "referred_customers"),
}
ERROR_HEADERS = frozenset(
    {
        "x-error-class",
        "x-error-message",
        "x-original-topic",
        "x-original-partition",
        "x-original-offset",
        "x-failed-at",
    }
)
SHOWN = 10


@dataclass(frozen=True)
class Published:
    """One `customer.updated` record: its `version` header, `ce_id` header and value."""

    version: int
    ce_id: str | None
    value: Record | None

    @classmethod
    def of(cls, headers: Mapping[str, bytes], value: bytes | None) -> "Published":
        """From the raw Kafka record."""
        ce_id = headers.get("ce_id")
        return cls(
            int(headers["version"]),
            None if ce_id is None else ce_id.decode(),
            None if value is None else json.loads(value),
        )

    @property
    def customer(self) -> Record | None:
        """The published record (None for a tombstone)."""
        return None if self.value is None else self.value["data"]["customer"]

    def describe(self) -> str:
        """The version and the event it is attributed to, for reports."""
        if self.value is None:
            return f"v{self.version} (tombstone)"
        cause = self.value["data"].get("cause") or {}
        return f"v{self.version} ({cause.get('type')} {cause.get('source')}/{cause.get('id')})"


@dataclass(frozen=True)
class DeadLetter:
    """A record of a DLQ topic (as read) or one expected there (error class to match)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    error_class: str | None = None
    original_topic: str | None = None

    @property
    def identity(self) -> tuple[str, bytes | None, bytes | None]:
        """What makes two dead letters the same record."""
        return self.topic, self.key, self.value

    def original_headers(self) -> tuple[tuple[str, bytes], ...]:
        """The headers the producer sent (the worker appends the error headers)."""
        return tuple((k, v) for k, v in self.headers if k not in ERROR_HEADERS)

    def header(self, name: str) -> str | None:
        """An error header, decoded."""
        return next((v.decode() for k, v in self.headers if k == name), None)


#: Who holds a source_id, and the customers whose claims on it conflict.
Holders = tuple[str | None, list[str]]


@dataclass
class Verdict:
    """Findings of one scenario; empty findings mean every promise held."""

    customers: int
    mismatched: dict[str, tuple[Record | None, Record | None]] = field(default_factory=dict)
    publication: list[str] = field(default_factory=list)
    ordering: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)
    identity: list[str] = field(default_factory=list)
    counters: dict[str, list[int]] = field(default_factory=dict)
    dlq: int = 0
    expected_dlq: int = 0
    republished: int = 0

    @property
    def lost(self) -> int:
        """Counter units below the reference, all customers and counters."""
        return sum(lost for lost, _ in self.counters.values())

    @property
    def double_counted(self) -> int:
        """Counter units above the reference."""
        return sum(double for _, double in self.counters.values())

    @property
    def ok(self) -> bool:
        """Whether nothing was found."""
        return (
            not (self.mismatched or self.publication or self.ordering or self.dead_letters)
            and not self.identity
        )

    def report(self) -> str:
        """What went wrong, with the first few cases of each kind."""
        lines = [
            f"{len(self.mismatched)} of {self.customers} customers differ from the reference; "
            f"lost {self.lost}, double-counted {self.double_counted} "
            f"({ {k: v for k, v in self.counters.items() if any(v)} })"
        ]
        for customer, (expected, actual) in list(self.mismatched.items())[:SHOWN]:
            lines.append(f"  {customer}: " + "; ".join(list(differences(expected, actual))[:8]))
        for title, found in (
            ("publication", self.publication),
            ("ordering", self.ordering),
            ("dead letters", self.dead_letters),
            ("source_id holder", self.identity),
        ):
            if found:
                lines.append(f"{len(found)} {title} problems:")
                lines += [f"  {line}" for line in found[:SHOWN]]
        return "\n".join(lines)


def differences(expected: Any, actual: Any, path: str = "") -> Iterator[str]:
    """Dotted paths where two JSON values differ, with both values."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            yield from differences(expected.get(key), actual.get(key), f"{path}.{key}")
    elif expected != actual:
        yield f"{path.lstrip('.') or 'record'}: expected {expected!r}, got {actual!r}"


def _counter(record: Record | None, path: tuple[str, ...]) -> int:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return 0
        value = value.get(part)
    return int(value or 0)


def _check_records(
    verdict: Verdict,
    expected: Mapping[str, Record | None],
    stored: Mapping[str, tuple[int, Record | None]],
) -> None:
    verdict.counters = {name: [0, 0] for name in COUNTERS}
    for customer, (_, actual) in stored.items():
        want = expected.get(customer)
        if want != actual:
            verdict.mismatched[customer] = (want, actual)
        for name, path in COUNTERS.items():
            delta = _counter(actual, path) - _counter(want, path)
            verdict.counters[name][0 if delta < 0 else 1] += abs(delta)


def _check_publication(
    verdict: Verdict,
    stored: Mapping[str, tuple[int, Record | None]],
    published: Mapping[str, list[Published]],
) -> None:
    strangers = sorted(set(published) - set(stored))
    verdict.publication += [
        f"{c}: published, but not a customer of the workload" for c in strangers
    ]
    for customer, (version, record) in stored.items():
        out = published.get(customer, [])
        if not out:
            if version:
                verdict.publication.append(f"{customer}: stored v{version}, nothing published")
            continue
        last = max(out, key=lambda p: p.version)
        if last.version != version:
            verdict.publication.append(
                f"{customer}: last published v{last.version}, stored v{version} "
                f"(published: {', '.join(p.describe() for p in out[-6:])})"
            )
        elif last.customer != record or (record is None) != (last.value is None):
            verdict.publication.append(
                f"{customer}: v{version} published differs from the stored record: "
                + "; ".join(list(differences(record, last.customer))[:4])
            )
        elif last.value is not None and last.value["id"] != f"{customer}:{version}":
            verdict.publication.append(f"{customer}: v{version} has id {last.value['id']!r}")


def _check_ordering(verdict: Verdict, published: Mapping[str, list[Published]]) -> None:
    for customer, out in published.items():
        for before, after in itertools.pairwise(out):
            if after.version < before.version:
                verdict.ordering.append(
                    f"{customer}: {after.describe()} published after {before.describe()}"
                )
            elif after.version == before.version:
                if after.ce_id != before.ce_id or after.customer != before.customer:
                    verdict.ordering.append(
                        f"{customer}: v{after.version} published twice with different content"
                    )
                else:
                    verdict.republished += 1
        highest = max(out, key=lambda p: p.version, default=None)
        if highest is not None and out[-1].version < highest.version:
            verdict.ordering.append(
                f"{customer}: the log ends with {out[-1].describe()}, after "
                f"{highest.describe()}: compaction keeps the stale one"
            )


def _check_dead_letters(
    verdict: Verdict, dead: list[DeadLetter], expected: list[DeadLetter]
) -> None:
    wanted = {letter.identity: letter for letter in expected}
    seen = set()
    for letter in dead:
        want = wanted.get(letter.identity)
        if want is None:
            verdict.dead_letters.append(
                f"unexpected on {letter.topic}: key={letter.key!r} value={letter.value!r:.80} "
                f"({letter.header('x-error-class')}: {letter.header('x-error-message')})"
            )
            continue
        seen.add(letter.identity)
        problems = []
        if letter.original_headers() != want.original_headers():
            problems.append(f"headers {letter.original_headers()} != {want.original_headers()}")
        if letter.header("x-error-class") != want.error_class:
            problems.append(f"class {letter.header('x-error-class')} != {want.error_class}")
        if letter.header("x-original-topic") != want.original_topic:
            problems.append(f"x-original-topic {letter.header('x-original-topic')}")
        if problems:
            verdict.dead_letters.append(f"{letter.value!r:.60} on {letter.topic}: {problems}")
    for identity, want in wanted.items():
        if identity not in seen:
            verdict.dead_letters.append(f"missing on {want.topic}: {want.value!r:.80}")


def judge(
    expected: Mapping[str, Record | None],
    stored: Mapping[str, tuple[int, Record | None]],
    published: Mapping[str, list[Published]],
    dead: list[DeadLetter],
    expected_dead: list[DeadLetter],
    holders: tuple[Mapping[str, Holders], Mapping[str, Holders]] = ({}, {}),
) -> Verdict:
    """Compare what the worker left (`stored`: version and rendered record of every customer
    of the workload; `published`: its `customer.updated` records in log order; `dead`: the
    DLQ topics; `holders`: who holds each source_id, expected and found) with the reference
    (`expected`) and the poison that was sent."""
    verdict = Verdict(customers=len(stored), dlq=len(dead), expected_dlq=len(expected_dead))
    unknown = sorted(set(expected) - set(stored))
    verdict.publication += [f"{c}: has events but was not inspected" for c in unknown]
    _check_records(verdict, expected, stored)
    _check_publication(verdict, stored, published)
    _check_ordering(verdict, published)
    _check_dead_letters(verdict, dead, expected_dead)
    wanted, found = holders
    verdict.identity += [
        f"{source_id}: held by {found.get(source_id)}, expected {want}"
        for source_id, want in wanted.items()
        if found.get(source_id, (None, [])) != want
    ]
    return verdict
