"""The worker's garbage collection policy: automatic collection off, survivors of a batch
frozen, and a periodic full collection that still finds cyclic garbage."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from worker.collection import CollectionPolicy


@pytest.fixture
def restored() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("restored")
def test_batches_freeze_their_survivors_and_full_collections_find_cycles() -> None:
    policy = CollectionPolicy(full_every=3600)
    policy.started()
    assert not gc.isenabled()
    frozen = gc.get_freeze_count()
    survivors = [{"n": [n]} for n in range(1000)]  # tracked containers, kept by the cache
    policy.batch_done()
    assert gc.get_freeze_count() >= frozen + len(survivors)
    assert gc.get_count()[0] < len(survivors)  # nothing left for a young collection

    garbage = weakref.ref(_Cycle())  # unreachable, but only a collection frees it
    policy.batch_done()
    assert garbage() is not None  # frozen, not collected: the price, bounded by...
    due = CollectionPolicy(full_every=0)
    due.batch_done()  # ... the periodic full collection (due at once here)
    assert garbage() is None
    due.stopped()
    assert gc.isenabled()
