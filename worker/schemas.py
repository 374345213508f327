"""JSON Schemas of every message of the contract, and the AsyncAPI document, as files.

`customer-worker schema export DIR` writes them; the copies checked in under
`contracts/schemas/` are compared with a fresh export by the test suite, so they cannot
go stale. Every message schema carries its versioned id (`contracts.versions`), and
`versions.json` records the digest of every (schema, version) ever exported: a schema that
changes without a new version is refused, here and by the test suite.
"""

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from contracts.events import INPUT_EVENT_MODELS, INPUT_TOPICS
from contracts.record import Customer
from contracts.updated import CustomerUpdated
from contracts.versions import SCHEMA_VERSIONS, schema_id

MESSAGE_MODELS: tuple[type[BaseModel], ...] = (*INPUT_EVENT_MODELS, Customer, CustomerUpdated)
VERSIONS = "versions.json"


class UnversionedChange(ValueError):
    """A schema changed but its version did not."""


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def message_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A message's JSON Schema, with its versioned id."""
    return {"$id": schema_id(model.__name__), **model.model_json_schema()}


def digest(schema: dict[str, Any]) -> str:
    """The SHA-256 of a schema's canonical JSON."""
    return hashlib.sha256(_dump(schema).encode()).hexdigest()


def recorded_versions() -> dict[str, dict[str, str]]:
    """The checked-in record: schema name -> version -> digest."""
    raw = files("contracts").joinpath("schemas", VERSIONS).read_text(encoding="utf-8")
    found: dict[str, dict[str, str]] = json.loads(raw)
    return found


def versions_document() -> dict[str, dict[str, str]]:
    """The record with the current version of every schema added; raises UnversionedChange
    when a schema differs from what its current version was recorded with."""
    recorded = recorded_versions()
    changed = []
    for model in MESSAGE_MODELS:
        name, version = model.__name__, SCHEMA_VERSIONS[model.__name__]
        now = digest(message_schema(model))
        known = recorded.setdefault(name, {})
        if known.setdefault(version, now) != now:
            changed.append(f"{name} {version}")
    if changed:
        raise UnversionedChange(
            "schemas changed without a new version (bump contracts.versions.SCHEMA_VERSIONS): "
            + ", ".join(changed)
        )
    return {name: dict(sorted(known.items())) for name, known in sorted(recorded.items())}


def schema_documents(asyncapi: dict[str, Any]) -> dict[str, str]:
    """File name -> content of every exported document."""
    documents = {
        f"{model.__name__}.schema.json": _dump(message_schema(model)) for model in MESSAGE_MODELS
    }
    for topic, union in INPUT_TOPICS.items():
        documents[f"{topic}.schema.json"] = _dump(TypeAdapter(union).json_schema())
    documents["asyncapi.json"] = _dump(asyncapi)
    documents[VERSIONS] = _dump(versions_document())
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
