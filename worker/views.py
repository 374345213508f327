"""A customer's record as downstream sees it once the worker has caught up, read from the
stored truth: its own fields; for the customer with an explicit id that holds a
`source_id` whose implicit customer has a record, both joined (`worker.domain.merge`);
for that implicit customer, nothing (merged into the holder)."""

from dataclasses import dataclass
from typing import Any

import orjson

from contracts.identity import is_implicit
from worker.domain import fields as f
from worker.domain.merge import joined_fields
from worker.domain.record import render
from worker.store.customer_store import CustomerStore


@dataclass(frozen=True, slots=True)
class View:
    """The stored version, the record (None: none, erased or merged) and, for a merged
    implicit customer, the customer it was merged into."""

    version: int
    record: dict[str, Any] | None
    merged_into: str | None = None


async def customer_view(store: CustomerStore, customer_id: str) -> View:
    """The customer's record as the worker publishes it (see the module)."""
    fields = await store.state(customer_id)
    version = int(fields.get(f.VERSION, 0))
    own = fields.get(f.SOURCE_ID)
    if own is not None:
        holding = await store.index.holding(orjson.loads(own))
        if is_implicit(customer_id) and holding.claimant is not None:
            return View(version, None, holding.claimant)
        if holding.joined_by(customer_id) is not None:
            other = await store.state(holding.implicit_id)
            joined = joined_fields(fields, other)
            if joined is not None:
                return View(version, render(customer_id, joined))
    return View(version, render(customer_id, fields))
