#!/usr/bin/env bash
# Set everything up, then run every check: mypy, the unit tests (no root
# needed) and the lab tests (root: they boot virtual Pis on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# In CI, a lab left behind by an interrupted run would only waste memory; on a
# shared development machine other people's labs are not ours to take down.
if [ "${CI:-}" = "true" ]; then piprov lab down --all >/dev/null 2>&1 || true; fi
echo "== mypy"
mypy
echo "== pytest"
exec pytest -q -rs --durations=25 "$@"
