"""End to end on the real broker and Redis: commands in, `customer.updated` out."""

from tests.support.bus import Bus
from tests.support.events import at, event
from worker.store.customer_store import CustomerStore


async def test_create_then_update_publishes_version_two(
    bus: Bus, worker: None, store: CustomerStore
) -> None:
    await bus.send(
        event(
            "customer.create", "cust-1", {"name": "Jane", "email": "jane@example.com"}, time=at(1)
        ),
        event("customer.update", "cust-1", {"name": "Jane Smith", "phone": "+1 933"}, time=at(2)),
    )
    await bus.wait_for(lambda: 2 in bus.updates.versions("cust-1"), what="version 2")
    last = bus.updates.last("cust-1")
    assert last is not None
    assert last["type"] == "customer.updated"
    assert last["id"] == "cust-1:2"
    assert last["data"]["version"] == 2
    customer = last["data"]["customer"]
    assert customer["name"] == "Jane Smith"
    assert customer["email"] == "jane@example.com"
    assert customer["phone"] == "+1 933"
    assert customer["created_at"] == "2025-03-01T09:00:01.000Z"
    assert customer["updated_at"] == "2025-03-01T09:00:02.000Z"
    assert await store.version("cust-1") == 2


async def test_same_event_twice_changes_the_record_once(
    bus: Bus, worker: None, store: CustomerStore
) -> None:
    create = event("customer.create", "cust-2", {"name": "Ann"}, time=at(1))
    await bus.send(create)
    await bus.wait_for(lambda: 1 in bus.updates.versions("cust-2"), what="version 1")
    await bus.send(create)
    marker = event("customer.update", "cust-2", {"email": "ann@example.com"}, time=at(3))
    await bus.send(marker)
    await bus.wait_for(lambda: 2 in bus.updates.versions("cust-2"), what="version 2")
    assert await store.version("cust-2") == 2
    assert set(bus.updates.versions("cust-2")) == {1, 2}


async def test_older_update_after_newer_keeps_newer_values(
    bus: Bus, worker: None, store: CustomerStore
) -> None:
    await bus.send(
        event("customer.update", "cust-3", {"name": "New", "email": "new@x.io"}, time=at(10)),
        event("customer.update", "cust-3", {"name": "Old", "phone": "123"}, time=at(5)),
    )
    await bus.wait_for(
        lambda: (
            (last := bus.updates.last_or_none("cust-3")) is not None
            and "phone" in last["data"]["customer"]
        ),
        what="the older update's new field",
    )
    customer = bus.updates.last("cust-3")["data"]["customer"]  # type: ignore[index]
    assert customer["name"] == "New"
    assert customer["email"] == "new@x.io"
    assert customer["phone"] == "123"
    assert customer["created_at"] == "2025-03-01T09:00:05.000Z"
    assert customer["updated_at"] == "2025-03-01T09:00:10.000Z"
