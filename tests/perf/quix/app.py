"""The customer fold as an idiomatic Quix Streams application: the benchmark's third peer.

What a competent Python team would write with Quix Streams instead of the worker, in its
own environment (`quixstreams==3.28.1` needs pydantic < 2.14, see `pyproject.toml`):

    uv run --project tests/perf/quix --frozen python tests/perf/quix/app.py

Configured like the worker, by its environment variables: `CW_KAFKA_BOOTSTRAP_SERVERS`,
`CW_GROUP_ID`, `CW_TOPICS__*` (topic names), `CW_LOG_LEVEL`; plus `CW_QUIX_STATE_DIR`, the
RocksDB state directory [`.stack/quix-state`]. It stops on SIGTERM (Quix's own handler:
it finishes the message, commits the checkpoint and closes).

Topology: each input topic gets a `StreamingDataFrame` that validates the raw bytes with
the project's own `contracts` (strict pydantic, same TypeAdapters as the worker); invalid
records branch off to `<topic>.dlq` with the original key and value and `x-error-*` /
`x-original-*` headers. The four valid streams are concatenated (`sdf.concat`). A
referral changes two customers: like the worker, the peer forwards a copy keyed by the
referrer to the internal topic `CW_TOPICS__REFERRALS` and concatenates that topic back in,
so every event reaches the state of each customer it changes, keyed by that customer.
(`group_by` would do the same through a repartition topic, but Quix names the changelog
of a stateful step after all its topics, and the repartition topic's name repeats all
four input names: with the benchmark's prefixed names the changelog's name passes
Kafka's 249-character limit.) One stateful `apply` folds an event into the customer's
RocksDB state (one JSON document per customer: last-writer-wins registers stamped (time,
id, source), per-order states, natural-key maps for redemption outcomes and referrals,
card balances, the last `MAX_MARKERS` (source, id) dedup markers) and renders the record
before and after: an event that changed it produces one `customer.updated` (the worker's
`customer_updated` message, every change published, no conflation), with the next
version and the changed paths. Quix's default at-least-once guarantee: outputs, forwarded
referrals and the state's changelog are flushed before a checkpoint commits its offsets,
and after a crash the state is the last checkpoint's, so replayed events are applied and
published again with the same versions.

Simplified compared with the worker:
* no erase replay log: an erase wipes the state and ignores later-arriving events dated at
  or before it, but events dated after it that arrived before it are lost;
* no record caps or limits (message size, list lengths, integer ranges beyond the
  contract's own validation), no conflation of updates, no `/readyz` or metrics;
* a redelivered duplicate is dropped, never re-published; an exception in the fold stops
  the app (Quix's default `on_processing_error`) instead of dead-lettering the event;
* input must be keyed by the customer id (`subject`, or `sourceid` when the event names
  its customer by that alone): state is partition-local, so a mis-keyed record is
  dead-lettered (`KeyMismatch`) where the worker would accept it;
* an event naming its customer by `sourceid` alone is folded into its implicit customer
  as the worker does, but there is no source_id index (who holds a `source_id`), and the
  implicit record does not show its `source_id`;
* output records carry the input record's timestamp (Quix propagates it); the
  CloudEvent `time` is the wall-clock production time.

Tuned (what a user reads in the Quix docs and sees on a first run):
`auto_offset_reset="earliest"` (a backlog is processed); `consumer_poll_timeout=0.02` s:
concatenated topics are consumed time-aligned, from a buffer per topic partition, and
whenever one partition's buffer runs dry the consumer refills them all with a
`consume(max_partition_buffer_size, poll_timeout)` call, which waits for that many
messages or the whole timeout (with Quix's default 1 s the 20k-record benchmark ran at
1.7k events/s, with 0.1 s at 2.9k, with 0.02 s at 3.3k); `commit_interval` kept at
Quix's 5 s (a checkpoint flushes producer, RocksDB and changelog; more often costs
throughput, less often costs more replay after a crash). RocksDB options, the producer
(idempotent, acks=all) and `max_partition_buffer_size` are Quix's defaults.
"""

import os
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))  # the project's pure `contracts` and `worker.domain` modules

import orjson  # noqa: E402
from pydantic import TypeAdapter, ValidationError  # noqa: E402
from quixstreams import Application, State, message_context  # noqa: E402
from quixstreams.dataframe import StreamingDataFrame  # noqa: E402

from contracts.customers import ADDRESS_FIELDS  # noqa: E402
from contracts.events import INPUT_TOPICS  # noqa: E402
from worker.domain.clock import format_micros, format_time, to_micros  # noqa: E402
from worker.domain.record import changed_paths  # noqa: E402
from worker.messages import Cause, OutMessage, customer_updated  # noqa: E402

Event = dict[str, Any]  # a validated event: id, source, type, subject, t (µs), data
Customer = dict[str, Any]  # one customer's state document
Record = dict[str, Any]
Checked = dict[str, Any]  # {"event": Event} or {"error", "message", "raw"}

#: Dedup markers kept per customer (the worker's `CW_DEDUP_MAX_MARKERS` default).
MAX_MARKERS = 256
SIMPLE_FIELDS = (
    "source_id", "name", "description", "email", "phone", "dial_code", "gender",
    "birthdate", "reference", "reference_origin", "customer_group", "is_blacklisted",
    "is_loyalty_enabled", "is_house_account_enabled", "house_account_limit",
    "house_account_balance",
)  # fmt: skip
ORDER_STATUS = {
    "order.created": "CREATED",
    "order.paid": "PAID",
    "order.fulfilled": "FULFILLED",
    "order.canceled": "CANCELED",
}
#: Redemption outcome -> (its counter in the summary, sign of the credits/points used).
REDEMPTIONS = {
    "redemption.succeeded": ("total_succeeded", 1),
    "redemption.failed": ("total_failed", 0),
    "redemption.rollback.succeeded": ("total_rollback_succeeded", -1),
    "redemption.rollback.failed": ("total_rollback_failed", 0),
}
POINTS_SIGN = {"loyalty.points.added": 1, "loyalty.points.subtracted": -1}
CARD_KINDS = {"GIFT_VOUCHER": "gift", "LOYALTY_CARD": "loyalty"}
REFERRAL = "referral.completed"
ERASE = "customer.erase"


# --------------------------------------------------------------------------- validation


def compact(event: Any) -> Event:
    """A validated event (any model of the contract) as plain JSON, as it may travel
    through the referrals topic: times as integer microseconds, `data` with only the
    fields that were sent (absent and null stay apart)."""
    data = event.data.model_dump(mode="json", exclude_unset=True)
    if data.get("created_at") is not None:  # an order's date
        data["created_at"] = to_micros(event.data.created_at)
    return {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.customer_id,
        "t": to_micros(event.time),
        "data": data,
    }


def validator(
    adapter: TypeAdapter[Any],
) -> Callable[[bytes | None, bytes | None, int, Any], Checked]:
    """The check of one input topic: `{"event": …}` or `{"error": …, "raw": bytes}`."""

    def check(value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> Checked:
        if value is None:
            return {"error": "EmptyMessage", "message": "the record has no value", "raw": value}
        try:
            event = adapter.validate_json(value)
        except ValidationError as error:
            json_error = error.errors()[0]["type"] == "json_invalid"
            kind = "InvalidJson" if json_error else "SchemaViolation"
            return {"error": kind, "message": str(error)[:1000], "raw": value}
        if key != (event.subject or event.sourceid).encode():
            message = "the record's key is not its subject (state is keyed by customer id)"
            return {"error": "KeyMismatch", "message": message, "raw": value}
        return {"event": compact(event)}

    return check


def dead_letter_headers(
    value: Checked, key: Any, timestamp: int, headers: list[tuple[str, bytes]]
) -> list[tuple[str, bytes]]:
    """The worker's dead-letter headers, appended to the original ones."""
    origin = message_context()
    return [
        *headers,
        ("x-error-class", value["error"].encode()),
        ("x-error-message", value["message"].encode()),
        ("x-original-topic", origin.topic.encode()),
        ("x-original-partition", str(origin.partition).encode()),
        ("x-original-offset", str(origin.offset).encode()),
        ("x-failed-at", format_time(datetime.now(UTC)).encode()),
    ]


# --------------------------------------------------------------------------- fold


def _write(registers: dict[str, Any], name: str, stamp: list[Any], value: Any) -> None:
    """Last-writer-wins register: keep the write with the largest stamp."""
    held = registers.get(name)
    if held is None or held[0] < stamp:
        registers[name] = [stamp, value]


def _first(registers: dict[str, Any], name: str, stamp: list[Any], value: Any) -> None:
    """Natural key: the earliest event for the key is the one that counts."""
    held = registers.get(name)
    if held is None or stamp < held[0]:
        registers[name] = [stamp, value]


def _profile(c: Customer, stamp: list[Any], data: dict[str, Any]) -> None:
    profile = c.setdefault("profile", {})
    for name, value in data.items():
        if name == "birthday":  # the deprecated alias, ignored next to `birthdate`
            if "birthdate" not in data:
                _write(profile, "birthdate", stamp, value)
        elif name == "address":
            for sub in ADDRESS_FIELDS if value is None else value:
                _write(profile, f"address.{sub}", stamp, None if value is None else value[sub])
        elif name == "metadata":
            if value is None:
                if c.get("metadata_cleared") is None or c["metadata_cleared"] < stamp:
                    c["metadata_cleared"] = stamp
            else:
                metadata = c.setdefault("metadata", {})
                for key, item in value.items():
                    _write(metadata, key, stamp, item)
        elif name == "tags" and value is not None:
            ids = (tag if isinstance(tag, str) else tag["id"] for tag in value)
            _write(profile, name, stamp, list(dict.fromkeys(ids)))
        else:
            _write(profile, name, stamp, value)


def _card(c: Customer, stamp: list[Any], kind: str | None, code: Any, balance: Any) -> None:
    if kind is not None and code is not None and balance is not None:
        _write(c.setdefault("cards", {}), f"{kind}\n{code}", stamp, balance)


def fold(c: Customer, customer_id: str, e: Event) -> None:
    """Apply one (new, not erased) event to the customer's state, in place."""
    kind, data, t = e["type"], e["data"], e["t"]
    stamp = [t, e["id"], e["source"]]
    c["created_at"] = min(c.get("created_at", t), t)
    c["updated_at"] = max(c.get("updated_at", t), t)
    if kind in ("customer.create", "customer.update"):
        _profile(c, stamp, data)
    elif kind in ("customer.delete", "customer.restore"):
        _write(c, "deleted_at", stamp, t if kind == "customer.delete" else None)
    elif kind in ORDER_STATUS:
        order = c.setdefault("orders", {}).setdefault(
            data["order_id"], {"stamp": stamp, "first": t, "dated": None, "date": None}
        )
        if order["stamp"] <= stamp:
            order.update(stamp=stamp, status=ORDER_STATUS[kind], amount=data["amount"])
        order["first"] = min(order["first"], t)
        if data.get("created_at") is not None and (order["dated"] or stamp) <= stamp:
            order.update(dated=stamp, date=data["created_at"])
    elif kind in REDEMPTIONS:
        voucher = data["voucher"]
        used = (voucher["type"], data.get("amount") or 0, data.get("points") or 0)
        _first(c.setdefault("redemptions", {}), f"{data['redemption_id']}\n{kind}", stamp, used)
        kind_of_card = CARD_KINDS.get(voucher["type"])
        _card(c, stamp, kind_of_card, voucher.get("code"), data.get("balance"))
    elif kind in POINTS_SIGN:
        points = c.setdefault("points", {})
        campaign = data["campaign_id"]
        points[campaign] = points.get(campaign, 0) + POINTS_SIGN[kind] * data["points"]
        _card(c, stamp, "loyalty", data.get("card_code"), data.get("balance"))
    elif kind == "loyalty.tier.changed":
        _write(c.setdefault("tiers", {}), data["campaign_id"], stamp, data["tier"])
    elif kind == REFERRAL and customer_id == e["subject"]:  # the referee's side
        entry = {
            "campaign_id": data["campaign_id"],
            "referrer_id": data["referrer_id"],
            "related_object_id": data["related_object_id"],
            "related_object_type": data["related_object_type"],
            "date": format_micros(t),
        }
        _first(c.setdefault("referrals", {}), data["campaign_id"], stamp, entry)
    elif kind == REFERRAL:  # the referrer's side: once per campaign and referee
        c.setdefault("referred", {})[f"{data['campaign_id']}\n{e['subject']}"] = 1


# --------------------------------------------------------------------------- record


def _orders(orders: dict[str, Any]) -> Record:
    counted = [
        (o["first"] if o["date"] is None else o["date"], order_id, o["amount"])
        for order_id, o in orders.items()
        if o["status"] in ("PAID", "FULFILLED")
    ]
    total, count = sum(amount for *_, amount in counted), len(counted)
    summary: Record = {
        "total_amount": total,
        "total_count": count,
        "average_amount": (2 * total + count) // (2 * count) if count else 0,
        "last_order_amount": 0,
    }
    if counted:
        date, _, summary["last_order_amount"] = max(counted)
        summary["last_order_date"] = format_micros(date)
    return summary


def _redemptions(c: Customer) -> Record:
    counts = dict.fromkeys([counter for counter, _ in REDEMPTIONS.values()], 0)
    redeemed = {"GIFT_VOUCHER": 0, "LOYALTY_CARD": 0}
    for name, (_, (voucher_type, amount, points)) in c.get("redemptions", {}).items():
        counter, sign = REDEMPTIONS[name.rpartition("\n")[2]]
        counts[counter] += 1
        if voucher_type in redeemed:
            redeemed[voucher_type] += sign * (amount if voucher_type == "GIFT_VOUCHER" else points)
    balances = {"gift": 0, "loyalty": 0}
    for name, (_, balance) in c.get("cards", {}).items():
        balances[name.partition("\n")[0]] += balance
    return {
        "total_redeemed": counts["total_succeeded"] + counts["total_failed"],
        "total_failed": counts["total_failed"],
        "total_succeeded": counts["total_succeeded"],
        "total_rolled_back": counts["total_rollback_succeeded"] + counts["total_rollback_failed"],
        "total_rollback_failed": counts["total_rollback_failed"],
        "total_rollback_succeeded": counts["total_rollback_succeeded"],
        "gift": {"redeemed_amount": redeemed["GIFT_VOUCHER"], "amount_to_go": balances["gift"]},
        "loyalty_card": {
            "redeemed_points": redeemed["LOYALTY_CARD"],
            "points_to_go": balances["loyalty"],
        },
    }


def _loyalty(c: Customer) -> Record:
    points, tiers, referred = c.get("points", {}), c.get("tiers", {}), c.get("referred", {})
    per_campaign = Counter(name.partition("\n")[0] for name in referred)
    campaigns: Record = {}
    for campaign in sorted(points.keys() | tiers.keys() | per_campaign.keys()):
        entry = {"points": points.get(campaign, 0), "referred_customers": per_campaign[campaign]}
        if campaign in tiers:
            entry["loyalty_tier"] = tiers[campaign][1]
        campaigns[campaign] = entry
    total = sum(points.values())
    return {"points": total, "referred_customers": len(referred), "campaigns": campaigns}


def render(customer_id: str, c: Customer) -> Record | None:
    """The public record (DESIGN.md §4) of a state; None when there is none (erased)."""
    if "created_at" not in c:
        return None
    record: Record = {"id": customer_id, "object": "customer"}
    profile = c.get("profile", {})
    for name in (*SIMPLE_FIELDS, "tags", "addresses"):
        held = profile.get(name)
        if held is not None and held[1] is not None:
            record[name] = held[1]
    if "tags" in record:
        record["tags"] = [{"id": tag} for tag in record["tags"]]
    address = {
        sub: held[1]
        for sub in ADDRESS_FIELDS
        if (held := profile.get(f"address.{sub}")) is not None and held[1] is not None
    }
    if address:
        record["address"] = address
    cleared = c.get("metadata_cleared")
    record["metadata"] = {
        key: value
        for key, (stamp, value) in sorted(c.get("metadata", {}).items())
        if value is not None and (cleared is None or cleared < stamp)
    }
    record["system_metadata"] = {}
    orders = _orders(c.get("orders", {}))
    record["summary"] = {"redemptions": _redemptions(c), "orders": orders}
    record["loyalty"] = _loyalty(c)
    referrals = sorted(
        c.get("referrals", {}).values(), key=lambda r: (r[0][0], r[1]["campaign_id"])
    )
    record["referrals"] = {"total": len(referrals), "campaigns": [r[1] for r in referrals]}
    record["created_at"] = format_micros(c["created_at"])
    record["updated_at"] = format_micros(c["updated_at"])
    if c.get("deleted_at", [None, None])[1] is not None:
        record["deleted_at"] = format_micros(c["deleted_at"][1])
    count = orders["total_count"]
    record["status"] = ("prospect", "acquired", "repeat")[min(count, 2)]
    record["total_orders_count"] = record["order_count"] = count
    if "last_order_date" in orders:
        record["last_order_at"] = orders["last_order_date"]
    record["loyalty_balance"] = record["loyalty"]["points"]
    return record


def updates(output: str) -> Callable[[Event, bytes, int, Any, State], list[OutMessage]]:
    """The stateful step: fold the event into its customer's state; the updates to send."""

    def update(
        e: Event, key: bytes, timestamp: int, headers: Any, state: State
    ) -> list[OutMessage]:
        customer_id = key.decode()
        c: Customer = state.get("customer") or {"version": 0, "seen": []}
        marker = f"{e['source']}\n{e['id']}"
        if marker in c["seen"]:
            return []  # a duplicate delivery
        c["seen"] = [*c["seen"][1 - MAX_MARKERS :], marker]
        if c.get("erased_until") is not None and e["t"] <= c["erased_until"]:
            state.set("customer", c)
            return []  # dated at or before an erasure: never resurrects data
        before = render(customer_id, c)
        if e["type"] == ERASE:
            c = {"version": c["version"], "seen": c["seen"], "erased_until": e["t"]}
        else:
            fold(c, customer_id, e)
        after = render(customer_id, c)
        if after == before and e["type"] != ERASE:
            state.set("customer", c)
            return []
        c["version"] += 1
        state.set("customer", c)
        cause = Cause(e["id"], e["source"], e["type"])
        now = format_time(datetime.now(UTC))
        changed = changed_paths(before, after)
        record = None if after is None else orjson.dumps(after)
        return [customer_updated(output, customer_id, c["version"], record, changed, cause, now)]

    return update


# --------------------------------------------------------------------------- application


def topics_from_env() -> tuple[dict[str, str], str, str, str]:
    """(input topic -> contract topic, referrals topic, output topic, dead-letter suffix),
    from the worker's variables."""
    env = os.environ
    inputs = {
        env.get(f"CW_TOPICS__{field}", contract): contract
        for field, contract in (
            ("CUSTOMER_COMMANDS", "customer.commands"),
            ("ORDER_EVENTS", "order.events"),
            ("REDEMPTION_EVENTS", "redemption.events"),
            ("LOYALTY_EVENTS", "loyalty.events"),
        )
    }
    referrals = env.get("CW_TOPICS__REFERRALS", "customer-worker.referrals")
    output = env.get("CW_TOPICS__CUSTOMER_UPDATED", "customer.updated")
    return inputs, referrals, output, env.get("CW_TOPICS__DLQ_SUFFIX", ".dlq")


def build(app: Application) -> None:
    """The topology (see the module docstring)."""
    inputs, referrals_name, output_name, dlq_suffix = topics_from_env()
    valid: list[StreamingDataFrame] = []
    for name, contract in inputs.items():
        topic = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        dlq = app.topic(name + dlq_suffix, key_serializer="bytes", value_serializer="bytes")
        checked = app.dataframe(topic).apply(
            validator(TypeAdapter(INPUT_TOPICS[contract])), metadata=True
        )
        rejected = checked.filter(lambda v: "error" in v).set_headers(dead_letter_headers)
        rejected.apply(lambda v: v["raw"]).to_topic(dlq)
        valid.append(checked.filter(lambda v: "error" not in v).apply(lambda v: v["event"]))
    events = valid[0]
    for other in valid[1:]:
        events = events.concat(other)
    # The referrer's side: forwarded keyed by the referrer, like the worker does, and
    # consumed back (not `group_by`: see the module docstring).
    forwarded = app.topic(
        referrals_name,
        key_serializer="bytes",
        value_serializer="json",
        key_deserializer="bytes",
        value_deserializer="json",
    )
    events.filter(lambda e: e["type"] == REFERRAL).to_topic(
        forwarded, key=lambda e: e["data"]["referrer_id"].encode()
    )
    output = app.topic(output_name, key_serializer="bytes", value_serializer="bytes")
    published = events.concat(app.dataframe(forwarded)).apply(
        updates(output_name), stateful=True, metadata=True, expand=True
    )
    published = published.set_headers(lambda v, key, timestamp, headers: v.headers)
    published.apply(lambda v: v.value).to_topic(output)


def main() -> None:
    """Run until SIGTERM."""
    env = os.environ
    level: Any = env.get("CW_LOG_LEVEL", "info").upper()  # a Quix `LogLevel`
    app = Application(
        broker_address=env.get("CW_KAFKA_BOOTSTRAP_SERVERS")
        or env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        consumer_group=env.get("CW_GROUP_ID", "customer-worker-quix"),
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        commit_interval=5.0,
        consumer_poll_timeout=0.02,
        state_dir=env.get("CW_QUIX_STATE_DIR", str(REPO / ".stack" / "quix-state")),
        loglevel=level,
    )
    build(app)
    app.run()


if __name__ == "__main__":
    main()
