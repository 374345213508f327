#!/usr/bin/env bash
# Prints the path of a uv binary at the pinned version, installing it first if needed.
# uv turns uv.lock into the exact environment (`uv sync --frozen`): reproducible installs.
# Installed with pip into a cache outside the repo; only PyPI is contacted.
set -euo pipefail
UV_VERSION="${CW_UV_VERSION:-0.13.9}"
CACHE_DIR="${CW_CACHE_DIR:-${HOME:-/tmp}/.cache/customer-worker}"
TARGET="$CACHE_DIR/uv-$UV_VERSION"

if command -v uv >/dev/null 2>&1 && [ "$(uv --version | cut -d' ' -f2)" = "$UV_VERSION" ]; then
  command -v uv
  exit 0
fi
if [ ! -x "$TARGET/bin/uv" ]; then
  echo "installing uv $UV_VERSION into $TARGET" >&2
  python3 -m pip install --quiet --disable-pip-version-check --target "$TARGET" "uv==$UV_VERSION" >&2 \
    || { echo "cannot install uv: needs python3 (>= 3.11) with pip and access to PyPI" >&2; exit 1; }
fi
echo "$TARGET/bin/uv"
