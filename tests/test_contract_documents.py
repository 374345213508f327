"""The checked-in JSON Schemas and AsyncAPI document are exactly what the code exports."""

import json
from pathlib import Path

from typer.testing import CliRunner

from worker.cli import cli

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
