"""The emitted record is Voucherify's customer, with the Commerce Layer and Foodics fields
mapped as the README documents."""

import json
import random
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from redis.asyncio import Redis

from contracts.updated import CustomerUpdated
from tests.support.events import at, event
from tests.support.generate import Generator
from tests.support.pipeline_harness import Harness

# Public samples and schema (Voucherify, Commerce Layer, Foodics), copied from their docs.
REFERENCE = Path(__file__).parent / "samples"
SCHEMA = json.loads((REFERENCE / "voucherify_customer_schema.json").read_text())[
    "resolved_flattened_jsonschema"
]
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def sample(name: str) -> Any:
    return json.loads((REFERENCE / f"{name}_customer_example.json").read_text())


def published(harness: Harness) -> list[dict[str, Any]]:
    return [
        json.loads(message.value)
        for messages in harness.publisher.updates().values()
        for message in messages
        if message.value is not None
    ]


async def _fold(harness: Harness, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 25):
        await harness.deliver(events[start : start + 25])


def test_the_schema_accepts_voucherifys_own_sample() -> None:
    assert not list(VALIDATOR.iter_errors(sample("voucherify")))


async def test_every_emitted_record_validates(redis: "Redis", scratch_prefix: str) -> None:
    harness = Harness(redis, scratch_prefix, every_change=True)
    events = Generator(random.Random(11), ["c1", "c2", "c3", "c4"]).events(800)
    await _fold(harness, events)
    outputs = published(harness)
    assert len(outputs) > 100
    for output in outputs:
        CustomerUpdated.model_validate(output)  # the contract's own model
        errors = [e.message for e in VALIDATOR.iter_errors(output["data"]["customer"])]
        assert not errors, (errors, output["data"]["customer"])


async def test_foodics_fields_map_as_documented(redis: "Redis", scratch_prefix: str) -> None:
    foodics = sample("foodics")
    harness = Harness(redis, scratch_prefix)
    profile = {
        "name": foodics["name"],
        "dial_code": foodics["dial_code"],
        "phone": foodics["phone"],
        "email": foodics["email"],
        "gender": foodics["gender"],
        "birthdate": foodics["birth_date"],
        "is_blacklisted": foodics["is_blacklisted"],
        "is_house_account_enabled": foodics["is_house_account_enabled"],
        "house_account_limit": foodics["house_account_limit"],
        "house_account_balance": foodics["house_account_balance"],
        "is_loyalty_enabled": bool(foodics["is_loyalty_enabled"]),
        "tags": foodics["tags"],
        "addresses": foodics["addresses"],
    }
    orders = [
        event("order.paid", foodics["id"], {"order_id": f"o{n}", "amount": 100}, time=at(n))
        for n in range(1, 4)
    ]
    await _fold(harness, [event("customer.create", foodics["id"], profile, time=at(0)), *orders])
    record = published(harness)[-1]["data"]["customer"]

    renamed = {"birth_date": "birthdate"}
    formatted = {"created_at", "updated_at", "last_order_at"}  # ISO 8601 with ms and Z here
    for key, value in foodics.items():
        ours = renamed.get(key, key)
        if value is None:
            assert ours not in record, f"{key}: unset fields are omitted, not null"
        elif key in formatted:
            assert record[ours].endswith("Z"), key
        elif key == "is_loyalty_enabled":
            assert record[ours] is True  # Foodics sends 1; the contract is a boolean
        elif key in ("order_count", "loyalty_balance"):
            assert isinstance(record[ours], int), key
        else:
            assert record[ours] == value, key
    assert record["order_count"] == 3
    assert record["last_order_at"] == record["summary"]["orders"]["last_order_date"]
    assert record["loyalty_balance"] == record["loyalty"]["points"]


async def test_commerce_layer_fields_map_as_documented(redis: "Redis", scratch_prefix: str) -> None:
    layer = sample("commercelayer")["data"]
    attributes = layer["attributes"]
    harness = Harness(redis, scratch_prefix)
    profile = {
        "email": attributes["email"],
        "reference": attributes["reference"],
        "reference_origin": attributes["reference_origin"],
        "metadata": attributes["metadata"],
        "customer_group": "group-1",
    }
    customer = layer["id"]
    await _fold(harness, [event("customer.create", customer, profile, time=at(0))])
    prospect = published(harness)[-1]["data"]["customer"]
    assert prospect["status"] == "prospect"
    for key in ("email", "reference", "reference_origin", "metadata"):
        assert prospect[key] == attributes[key], key
    assert prospect["customer_group"] == "group-1"  # relationships.customer_group
    assert prospect["id"] == layer["id"]
    assert {"created_at", "updated_at", "total_orders_count"} <= prospect.keys()

    statuses = []
    for n in (1, 2):
        paid = event("order.paid", customer, {"order_id": f"o{n}", "amount": 500}, time=at(n))
        await _fold(harness, [paid])
        record = published(harness)[-1]["data"]["customer"]
        statuses.append((record["status"], record["total_orders_count"]))
    assert statuses == [("acquired", 1), ("repeat", 2)]
