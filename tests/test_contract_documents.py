"""The checked-in JSON Schemas and AsyncAPI document are exactly what the code exports."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.updated import CustomerUpdated
from contracts.versions import SCHEMA_VERSIONS, schema_id
from worker import schemas
from worker.cli import cli
from worker.intake import Intake
from worker.rejection import Rejection
from worker.schemas import MESSAGE_MODELS, digest, message_schema, recorded_versions
from worker.settings import Limits, Topics

CHECKED_IN = Path(__file__).parent.parent / "contracts" / "schemas"
REGENERATE = "run `customer-worker schema export contracts/schemas`"


def test_checked_in_documents_are_up_to_date(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["schema", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    kept = {p.name: p.read_text() for p in CHECKED_IN.iterdir()}
    assert sorted(kept) == sorted(fresh), (
        "files differ: run `customer-worker schema export contracts/schemas`"
    )
    stale = [name for name in fresh if fresh[name] != kept[name]]
    assert not stale, f"stale: {stale}; {REGENERATE}"


def test_asyncapi_documents_every_topic_of_the_contract() -> None:
    document = json.loads((CHECKED_IN / "asyncapi.json").read_text())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {
        "customer.commands",
        "order.events",
        "redemption.events",
        "loyalty.events",
        "customer-worker.referrals",  # internal: referrals forwarded to the referrer's worker
        "customer.updated",
    }
    payloads = {
        message["payload"]["$ref"].rsplit("/", 1)[1]
        for message in document["components"]["messages"].values()
    }
    assert payloads == {
        "CustomerCommand",
        "OrderEvent",
        "RedemptionEvent",
        "LoyaltyEvent",
        "CustomerUpdated",
    }


def test_every_schema_is_recorded_under_its_current_version() -> None:
    """A schema that changed without its version: the record of the version still holds
    the old digest (and `schema export` refuses to write it)."""
    recorded = recorded_versions()
    for model in MESSAGE_MODELS:
        version = SCHEMA_VERSIONS[model.__name__]
        assert recorded[model.__name__][version] == digest(message_schema(model)), (
            f"{model.__name__} changed: bump its version in contracts.versions.SCHEMA_VERSIONS "
            f"and {REGENERATE}"
        )


def test_a_changed_schema_without_a_new_version_is_refused(monkeypatch: Any) -> None:
    real = schemas.message_schema

    def changed(model: Any) -> dict[str, Any]:
        schema = real(model)
        return {**schema, "title": "renamed"} if model is CustomerUpdated else schema

    monkeypatch.setattr(schemas, "message_schema", changed)
    with pytest.raises(schemas.UnversionedChange, match=r"CustomerUpdated 1\.1\.0"):
        schemas.versions_document()
    monkeypatch.setitem(SCHEMA_VERSIONS, "CustomerUpdated", "1.2.0")  # bumped: accepted
    assert "1.2.0" in schemas.versions_document()["CustomerUpdated"]


@pytest.mark.parametrize(
    ("dataschema", "accepted"),
    [
        (None, True),
        ("https://registry.example/order-paid/7", True),  # the producer's own namespace
        (schema_id("OrderPaid"), True),
        ("urn:customer-worker:schema:OrderPaid:1.9.3", True),  # same major
        ("urn:customer-worker:schema:OrderPaid:2.0.0", False),
        ("urn:customer-worker:schema:OrderCreated:1.1.0", False),  # another type's schema
        ("urn:customer-worker:schema:OrderPaid:x", False),
    ],
)
def test_input_events_may_name_the_schema_they_follow(
    dataschema: str | None, accepted: bool
) -> None:
    intake = Intake(Topics().inputs, Limits())
    event = {
        "specversion": "1.0",
        "id": "e1",
        "source": "checkout",
        "type": "order.paid",
        "time": datetime.now(UTC).isoformat(),
        "subject": "c1",
        "data": {"order_id": "o1", "amount": 10},
    }
    if dataschema is not None:
        event["dataschema"] = dataschema
    decoded = intake.decode("order.events", json.dumps(event).encode())
    if accepted:
        assert not isinstance(decoded, Rejection), decoded
    else:
        assert isinstance(decoded, Rejection)
        assert decoded.error_class == "UnsupportedSchema"
