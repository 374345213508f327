"""The pure domain: how events become changes, and how stored state becomes a record.

Nothing here does I/O, so every rule can be read and tested without Kafka or Redis.

Its modules may be compiled with mypyc (`make native`, `deploy/native.py`). Python imports
a compiled module in preference to its source, so this file, which stays Python, refuses
compiled modules built from sources that have changed since.
"""

import hashlib
import json
from pathlib import Path

MANIFEST_NAME = "native.json"


def stale_compiled(directory: Path) -> list[str]:
    """Sources in `directory` whose compiled modules were not built from them as they are
    now (or have no record of what they were built from); empty when nothing is compiled."""
    if not any(directory.glob("*.so")) and not any(directory.glob("*.pyd")):
        return []
    manifest = directory / MANIFEST_NAME
    built: dict[str, str] = (
        json.loads(manifest.read_text()).get("sources", {}) if manifest.exists() else {}
    )
    return sorted(
        path.name
        for path in directory.glob("*.py")
        if path.name != "__init__.py"
        and built.get(path.name) != hashlib.sha256(path.read_bytes()).hexdigest()
    )


_stale = stale_compiled(Path(__file__).parent)
if _stale:
    raise ImportError(
        f"worker.domain: {', '.join(_stale)} changed after it was compiled with mypyc; "
        "run `make native` to compile it again, or `make native-clean` for pure Python"
    )
