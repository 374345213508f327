"""The compiled domain (`make native`): a module compiled from an older source is refused,
and the suite runs the compiled build, the code the image ships.

The rest of the suite runs whatever `make setup` left: under `make test` (and CI) that is
the compiled domain, so every promise is checked against the code the image ships.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import worker.domain
import worker.native_manifest
from worker.native_manifest import MANIFEST_NAME, stale_compiled

PACKAGE = Path(worker.domain.__file__).parent


def _package(tmp_path: Path, compiled: bool, recorded: bool) -> Path:
    """Two sources, maybe one compiled-looking module, maybe a manifest of the sources as
    written (hashed here, independently of the code under test)."""
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "fold.py").write_text("RULE = 1\n")
    (tmp_path / "record.py").write_text("RULE = 2\n")
    if compiled:
        (tmp_path / "fold.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    if recorded:
        digests = {
            name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
            for name in ("fold.py", "record.py")
        }
        (tmp_path / MANIFEST_NAME).write_text(json.dumps({"sources": digests}))
    return tmp_path


def test_pure_sources_are_never_stale(tmp_path: Path) -> None:
    assert stale_compiled(_package(tmp_path, compiled=False, recorded=False)) == []


def test_a_build_of_the_current_sources_is_accepted(tmp_path: Path) -> None:
    assert stale_compiled(_package(tmp_path, compiled=True, recorded=True)) == []


def test_a_source_edited_after_the_build_is_stale(tmp_path: Path) -> None:
    package = _package(tmp_path, compiled=True, recorded=True)
    (package / "record.py").write_text("RULE = 3\n")
    assert stale_compiled(package) == ["record.py"]


def test_compiled_modules_without_a_record_of_their_sources_are_stale(tmp_path: Path) -> None:
    assert stale_compiled(_package(tmp_path, compiled=True, recorded=False)) == [
        "fold.py",
        "record.py",
    ]


def test_the_worker_refuses_to_import_a_stale_build(tmp_path: Path) -> None:
    """The guard runs on import of the real package: a copy of it with a compiled-looking
    module and a source changed since fails with the way out in its message."""
    copy = tmp_path / "worker" / "domain"
    copy.mkdir(parents=True)
    (tmp_path / "worker" / "__init__.py").write_text("")
    manifest_module = Path(worker.native_manifest.__file__)
    (tmp_path / "worker" / manifest_module.name).write_text(manifest_module.read_text())
    (copy / "__init__.py").write_text((PACKAGE / "__init__.py").read_text())
    (copy / "fold.py").write_text("RULE = 1\n")
    (copy / "fold.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (copy / MANIFEST_NAME).write_text(json.dumps({"sources": {"fold.py": "0" * 64}}))
    result = subprocess.run(
        [sys.executable, "-c", "import worker.domain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "fold.py changed after it was compiled" in result.stderr
    assert "make native" in result.stderr


def test_the_suite_runs_the_compiled_domain() -> None:
    """`make test` compiles first, and every module built loads compiled: a build that
    Python silently passes over (another interpreter's ABI) would fail here."""
    manifest = PACKAGE / MANIFEST_NAME
    assert manifest.exists(), "worker.domain is not compiled: `make native` (make test does)"
    built = json.loads(manifest.read_text())
    assert built["cache_tag"] == sys.implementation.cache_tag
    for name in built["sources"]:
        module = __import__(f"worker.domain.{name.removesuffix('.py')}", fromlist=["_"])
        assert not str(module.__file__).endswith(".py"), module.__file__
