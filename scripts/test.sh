#!/usr/bin/env bash
# Set everything up, then run every check: mypy, the unit tests (no root
# needed) and the lab tests (root: they boot virtual Pis on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# A lab left behind by an interrupted run would collide with the tests' labs.
piprov lab down --all >/dev/null 2>&1 || true
echo "== mypy"
mypy
echo "== pytest"
exec pytest -q -rs "$@"
