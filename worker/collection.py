"""Garbage collection policy of the worker process.

The record cache keeps hundreds of thousands of long-lived objects. Python's collector
traverses the objects that survived since the last collection again and again: with its
default thresholds a quarter of the worker's CPU went there, and a collection of the older
generations paused the event loop for up to a tenth of a second. Almost nothing the worker
creates is cyclic garbage: a batch's objects are freed by reference counting when the batch
is done (collections of those generations collected nothing in profiles). So:

* automatic collection is off; after each batch, what survived it is moved out of the
  collector's generations (`gc.freeze`, O(1)): the collector never traverses it again;
* every `FULL_COLLECTION_SECONDS` one full collection runs (`gc.unfreeze`, `gc.collect`,
  `gc.freeze`), so that any cyclic garbage (an exception's traceback after a failure, say)
  is bounded; its pause and what it collected are logged.
"""

import gc
import logging
import time

log = logging.getLogger(__name__)

#: How often cyclic garbage is looked for.
FULL_COLLECTION_SECONDS = 600.0


class CollectionPolicy:
    """Call `started` once the app is up and `batch_done` after every batch."""

    def __init__(self, full_every: float = FULL_COLLECTION_SECONDS) -> None:
        self._full_every = full_every
        self._next_full = time.monotonic() + full_every

    def started(self) -> None:
        """Everything alive now (modules, the app, connections) lives as long as the process."""
        gc.collect()
        gc.freeze()
        gc.disable()

    def stopped(self) -> None:
        """Back to Python's defaults (the app may run inside a longer-lived process)."""
        gc.unfreeze()
        gc.enable()

    def batch_done(self) -> None:
        """What survived the batch is long-lived: out of the collector's way."""
        now = time.monotonic()
        if now < self._next_full:
            gc.freeze()
            return
        self._next_full = now + self._full_every
        gc.unfreeze()
        began = time.perf_counter()
        collected = gc.collect()
        gc.freeze()
        log.info(
            "full garbage collection: %d objects collected in %.3f s",
            collected,
            time.perf_counter() - began,
        )
