#!/usr/bin/env bash
# Set up a virtualenv with builder and its test tools, then run the whole check: ruff, mypy, pytest.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${BUILDER_TEST_VENV:-$repo/.venv}"
cd "$repo"
scripts/system-deps.sh

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv
# Not editable: the tests run against the installed package, templates included.
"$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --reinstall-package builder ".[test]"

export PATH="$venv/bin:$PATH"
echo "== ruff"
ruff check --no-cache .
ruff check --no-cache tests/golden/*/  # generated code, under its own pyproject.toml
ruff format --no-cache --check tests/golden/*/
ruff format --no-cache --check builder.py builder_core scripts tests bench --exclude tests/golden
echo "== mypy"
mypy --cache-dir=/dev/null builder.py builder_core scripts tests bench
echo "== pytest"
python -m pytest "$@"
