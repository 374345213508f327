"""JSON Schemas of every message of the contract, and the AsyncAPI document, as files.

`customer-worker schema export DIR` writes them; the copies checked in under
`contracts/schemas/` are compared with a fresh export by the test suite, so they cannot
go stale.
"""

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from contracts.events import INPUT_EVENT_MODELS, INPUT_TOPICS
from contracts.record import Customer
from contracts.updated import CustomerUpdated

MESSAGE_MODELS: tuple[type[BaseModel], ...] = (*INPUT_EVENT_MODELS, Customer, CustomerUpdated)


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def schema_documents(asyncapi: dict[str, Any]) -> dict[str, str]:
    """File name -> content of every exported document."""
    documents = {
        f"{model.__name__}.schema.json": _dump(model.model_json_schema())
        for model in MESSAGE_MODELS
    }
    for topic, union in INPUT_TOPICS.items():
        documents[f"{topic}.schema.json"] = _dump(TypeAdapter(union).json_schema())
    documents["asyncapi.json"] = _dump(asyncapi)
    return documents


def export(directory: Path, asyncapi: dict[str, Any]) -> list[Path]:
    """Write every document into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in schema_documents(asyncapi).items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
