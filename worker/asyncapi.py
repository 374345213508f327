"""The AsyncAPI document: FastStream's, with the input payloads filled in from the contract.

The batch handler takes raw records (it validates them itself, to dead-letter the bad ones),
so FastStream cannot infer what the input topics carry; each input channel's payload is set
here to the discriminated union of the event types its topic carries.
"""

import json
from typing import Any

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from faststream.specification.base import Specification
from pydantic import TypeAdapter

from contracts.envelope import CONTRACT_VERSION
from contracts.events import INPUT_TOPICS
from worker.settings import Topics

_REF = "#/components/schemas/{model}"
_UNION_NAMES = {
    "customer.commands": "CustomerCommand",
    "order.events": "OrderEvent",
    "redemption.events": "RedemptionEvent",
    "loyalty.events": "LoyaltyEvent",
}


class _Document:
    """A finished AsyncAPI document (FastStream's `Specification` protocol)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document

    @property
    def title(self) -> str:
        return str(self._document["info"]["title"])

    def to_jsonable(self) -> Any:
        return self._document

    def to_json(self) -> str:
        return json.dumps(self._document, indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self._document, sort_keys=True, allow_unicode=True))


class ContractAsyncAPI(AsyncAPI):
    """AsyncAPI factory that completes FastStream's document with the input event schemas."""

    def __init__(self, broker: KafkaBroker, topics: Topics) -> None:
        super().__init__(
            broker,
            title="customer-worker",
            version=CONTRACT_VERSION,
            description=(
                "Owns the customer profile: consumes upstream CloudEvents, keeps one record "
                "per customer, publishes every change on customer.updated. Invalid input goes "
                f"to <topic>{topics.dlq_suffix} with its original bytes and error headers."
            ),
        )
        self._topics = topics

    def to_specification(self) -> Specification:
        document = super().to_specification().to_jsonable()
        components = document["components"]
        schemas = components["schemas"]
        schemas.pop("EmptyPayload", None)  # FastStream's placeholder for "no body parameter"
        for channel in document["channels"].values():
            contract = self._topics.inputs.get(channel["address"])
            if contract is None:
                continue
            union = _UNION_NAMES[contract]
            schema = TypeAdapter(INPUT_TOPICS[contract]).json_schema(ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[union] = {"title": union, **schema}
            for message in channel["messages"].values():
                name = message["$ref"].rsplit("/", 1)[1].replace("%20", " ")
                components["messages"][name]["payload"] = {"$ref": _REF.format(model=union)}
        return _Document(document)
