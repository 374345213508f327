"""What a mypyc build of a package was compiled from: the sha256 of each of its sources,
kept beside the compiled modules in `native.json`. Written by `deploy/native.py`, read by
the package's `__init__` before its modules are imported (Python prefers a compiled module
to its source, so a stale one would run silently). Outside the compiled package, so that
reading it never imports what it checks."""

import hashlib
import json
from pathlib import Path

MANIFEST_NAME = "native.json"


def sources(directory: Path) -> list[Path]:
    """The modules compiled: all of the package's but its `__init__`, which stays Python."""
    return sorted(path for path in directory.glob("*.py") if path.name != "__init__.py")


def compiled(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.so")) + sorted(directory.glob("*.pyd"))


def digests(directory: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sources(directory)}


def stale_compiled(directory: Path) -> list[str]:
    """Sources in `directory` whose compiled modules were not built from them as they are
    now (or have no record of what they were built from); empty when nothing is compiled."""
    if not compiled(directory):
        return []
    manifest = directory / MANIFEST_NAME
    built: dict[str, str] = (
        json.loads(manifest.read_text()).get("sources", {}) if manifest.exists() else {}
    )
    return sorted(name for name, digest in digests(directory).items() if built.get(name) != digest)
