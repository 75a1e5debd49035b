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
if [ $# -gt 0 ]; then echo "== pytest $*"; exec pytest -q -rs --durations=25 "$@"; fi
# The unit tests need no lab, and the lab tests mostly wait on virtual Pis:
# three at once (the suite's budget is 30 minutes): the unit tests niced so
# the labs keep the CPU they have when alone, the fault and heal suites (one
# lab of their own, mostly power cuts and boots waited on) beside the other
# lab tests. Each one's output follows the lab's.
units=$(mktemp)
faults=$(mktemp)
trap 'rm -f "$units" "$faults"' EXIT
nice -n 10 pytest -q -rs -p no:cacheprovider tests/unit >"$units" 2>&1 &
upid=$!
pytest -q -rs --durations=15 -p no:cacheprovider tests/lab/faults >"$faults" 2>&1 &
fpid=$!
echo "== pytest tests/lab (tests/unit niced and tests/lab/faults alongside)"
lab=0
pytest -q -rs --durations=25 --ignore=tests/lab/faults tests/lab || lab=$?
fault=0
wait "$fpid" || fault=$?
echo "== pytest tests/lab/faults"
cat "$faults"
unit=0
wait "$upid" || unit=$?
echo "== pytest tests/unit"
cat "$units"
echo "== lab tests: exit $lab; fault and heal suites: exit $fault; unit tests: exit $unit"
[ "$lab" -eq 0 ] && [ "$fault" -eq 0 ] && [ "$unit" -eq 0 ]
