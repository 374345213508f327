"""The pure domain: how events become changes, and how stored state becomes a record.

Nothing here does I/O, so every rule can be read and tested without Kafka or Redis.

Its modules may be compiled with mypyc (`make native`, `deploy/native.py`). Python imports
a compiled module in preference to its source, so this file, which stays Python, refuses
compiled modules built from sources that have changed since.
"""

from pathlib import Path

from worker.native_manifest import stale_compiled

_stale = stale_compiled(Path(__file__).parent)
if _stale:
    raise ImportError(
        f"worker.domain: {', '.join(_stale)} changed after it was compiled with mypyc; "
        "run `make native` to compile it again, or `make native-clean` for pure Python"
    )
