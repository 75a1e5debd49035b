#!/usr/bin/env python3
"""Fault suite figures (issue 9): run the fault scenarios and print what they found.

Runs, with pytest:
  - tests/lab/faults/ (as root: one 3-node lab; every scenario ends with a
    `piprov up` that converges and checks that nothing was lost);
  - the unit-level fault tests: inventory fuzz (>= 500 generated files),
    secrets, keys/known_hosts.
Then prints: scenarios run, passed, partial files found (goal 0), lost
inventory edits (goal 0), tracebacks seen (goal 0), plus the fuzz volume.

    sudo .venv/bin/python bench/faults.py [--unit-only] [-k EXPR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ["tests/unit/test_fuzz_inventory.py", "tests/unit/test_secrets.py", "tests/unit/test_keys.py"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unit-only", action="store_true", help="skip the lab scenarios (no root needed)")
    ap.add_argument("-k", dest="keyword", help="pytest -k expression for the lab scenarios")
    args = ap.parse_args()

    t0 = time.monotonic()
    unit = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *UNIT],
                          cwd=ROOT, capture_output=True, text=True)
    unit_s = time.monotonic() - t0
    fuzz = re.search(r"inventory fuzz: (\{.*\})", unit.stdout)
    counts = re.search(r"(\d+) passed(?:, (\d+) failed)?", unit.stdout)
    unit_passed = int(counts.group(1)) if counts else 0
    unit_failed = int(counts.group(2) or 0) if counts else 0
    unit_tracebacks = 0  # a traceback in a unit test is a failure, counted above

    lab: dict[str, object] = {}
    lab_s = 0.0
    if not args.unit_only:
        if os.geteuid() != 0:
            print("the lab scenarios need root (or pass --unit-only)", file=sys.stderr)
            return 64
        with tempfile.TemporaryDirectory() as d:
            report = Path(d) / "faults.json"
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/lab/faults"]
            if args.keyword:
                argv += ["-k", args.keyword]
            t1 = time.monotonic()
            p = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PIPROV_FAULTS_REPORT=str(report)),
                               capture_output=True, text=True)
            lab_s = time.monotonic() - t1
            if report.exists():
                lab = json.loads(report.read_text())
            else:
                print(p.stdout[-4000:] + p.stderr[-2000:], file=sys.stderr)

    print("fault suite (issue 9)")
    if lab:
        print(f"  lab scenarios run:       {lab['scenarios_run']}  ({lab_s:.0f} s, one 3-node lab)")
        print(f"  lab scenarios passed:    {lab['passed']}")
        failed = [k for k, v in dict(lab["scenarios"]).items() if v != "passed"]  # type: ignore[call-overload]
        if failed:
            print(f"  lab scenarios failed:    {', '.join(failed)}")
        print(f"  partial files found:     {lab['partial_files']}  (goal 0)")
        print(f"  lost inventory edits:    {lab['lost_inventory_edits']}  (goal 0)")
        print(f"  tracebacks seen:         {lab['tracebacks'] + unit_tracebacks}  (goal 0) "
              f"in {lab['piprov_runs']} piprov runs")
        for note in lab.get("notes", []):  # type: ignore[union-attr]
            print(f"  - {note}")
    print(f"  unit fault tests:        {unit_passed} passed, {unit_failed} failed ({unit_s:.0f} s)")
    if fuzz:
        f = json.loads(fuzz.group(1).replace("'", '"'))
        print(f"  inventory fuzz:          {f.get('files', 0)} files ({f.get('valid', 0)} valid, "
              f"{f.get('broken', 0)} broken) -> {f.get('plan', 0)} plans, {f.get('error', 0)} located errors, "
              "0 tracebacks, 0 writes")
    ok = unit.returncode == 0 and (args.unit_only or (bool(lab) and lab["passed"] == lab["scenarios_run"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
