"""Compile the pure domain (`worker.domain`) with mypyc, in place, next to its sources.

Why: the fold and the renderer are most of the worker's CPU per event, and compiled they
cost less (see README, "Performance"). The Python sources stay the truth: a module compiled
from an older source is refused at import (`worker.native_manifest.stale_compiled`), so an edit
followed by a plain `pytest` fails loudly instead of running the old code. Without the
compiled modules the worker runs the same sources as pure Python.

    python deploy/native.py          compile if a source changed since the last build
    python deploy/native.py --clean  remove the compiled modules (pure Python again)

Without a C compiler it says so and leaves the domain pure, unless `--strict` (the image).

Run by `make setup` (hence by `make run` and `make test`) and by the image's builder stage.
Needs mypy and setuptools (the `native` dependency group) and a C compiler.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the image's builder runs this before the project is installed

from worker.native_manifest import (  # noqa: E402
    MANIFEST_NAME,
    compiled,
    digests,
    sources,
    stale_compiled,
)

PACKAGE = ROOT / "worker" / "domain"
MANIFEST = PACKAGE / MANIFEST_NAME
#: One shared library for the group, inside the package (not at the top level, where a
#: wheel would not carry it).
GROUP = "worker.domain.native"


def fresh() -> bool:
    """The last build is of these sources, by this interpreter, and its modules are there."""
    if not compiled(PACKAGE) or stale_compiled(PACKAGE):
        return False
    return json.loads(MANIFEST.read_text()).get("cache_tag") == sys.implementation.cache_tag


def clean() -> None:
    for path in [*compiled(PACKAGE), MANIFEST]:
        path.unlink(missing_ok=True)


def build() -> None:
    # Imported here: `--clean` and an up-to-date check need neither.
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    relative = [str(path.relative_to(ROOT)) for path in sources(PACKAGE)]
    os.chdir(ROOT)  # mypy reads its settings from pyproject.toml here
    with tempfile.TemporaryDirectory() as scratch:
        setup(
            name="customer-worker-native",
            packages=[],
            ext_modules=mypycify(relative, opt_level="3", group_name=GROUP, target_dir=scratch),
            script_args=[
                "--quiet",
                "build_ext",
                "--inplace",
                "--build-temp",
                scratch,
                "--build-lib",
                scratch,
            ],
        )
    MANIFEST.write_text(
        json.dumps(
            {"cache_tag": sys.implementation.cache_tag, "sources": digests(PACKAGE)}, indent=1
        )
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--force", action="store_true", help="compile even if up to date")
    parser.add_argument(
        "--strict", action="store_true", help="fail when it cannot compile (the image build)"
    )
    args = parser.parse_args()
    if args.clean:
        clean()
        print("native: removed the compiled modules of worker.domain (pure Python)")
        return 0
    if fresh() and not args.force:
        print("native: worker.domain is compiled and up to date")
        return 0
    print(f"native: compiling worker.domain with mypyc ({len(sources(PACKAGE))} modules) ...")
    try:
        build()
    except (Exception, SystemExit) as error:  # setuptools reports a compiler error by exit
        clean()
        if args.strict:
            raise
        print(
            f"native: could not compile ({error!r}); the worker runs as pure Python, the same"
            " rules at a higher CPU cost. Install a C compiler and run `make native`.",
            file=sys.stderr,
        )
        return 0
    print(f"native: {len(compiled(PACKAGE))} compiled modules in {PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
