#!/usr/bin/env python3
"""Fault suite figures (issues 9 and 18): run the fault scenarios and print what they found.

Runs, with pytest:
  - tests/lab/faults/ (as root: one 3-node lab per module): the fault
    scenarios (each ends with a `piprov up` that converges and checks that
    nothing was lost) and the heal suite (test_heal_lab.py: each scenario must
    heal with NO piprov run; its heal time is recorded);
  - the unit-level fault tests: inventory fuzz (>= 500 generated files),
    secrets, keys/known_hosts.
Then prints: scenarios run, passed, partial files found (goal 0), lost
inventory edits (goal 0), tracebacks seen (goal 0), plus the fuzz volume;
and per heal scenario its heal time ("cause removed" -> every unit active and
every Node Ready; median and max over --runs runs of the heal suite) and the
number of heal scenarios that needed a piprov run (goal 0).

    sudo .venv/bin/python bench/faults.py [--unit-only | --heal-only | --life] [--runs N] [-k EXPR]

--life (issue 17): a cluster's life, each on a lab of its own: reset of a worker, the worker back,
reset of the whole cluster, the cluster rebuilt (tests/lab/test_up.py), and a dead master's card
re-flashed then `piprov restore` until every node is Ready with the workload back, and the
master moved to a former worker by `piprov up` after the roles' swap, until the same
(tests/lab/test_profiles_lab.py, seed); their times, median and max over --runs runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ["tests/unit/test_fuzz_inventory.py", "tests/unit/test_secrets.py", "tests/unit/test_keys.py"]
HEAL = "tests/lab/faults/test_heal_lab.py"
LIFE = [("tests/lab/test_up.py", "cold or workload or reset"),
        ("tests/lab/test_profiles_lab.py", "seed and (up_makes or backup_holds or restore_onto or master_moves)")]


def run_lab(paths: list[str], keyword: str | None) -> tuple[dict[str, object], float]:
    """One pytest session over ``paths``; its figures (conftest's $PIPROV_FAULTS_REPORT) and seconds."""
    with tempfile.TemporaryDirectory() as d:
        report = Path(d) / "faults.json"
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths]
        if keyword:
            argv += ["-k", keyword]
        t1 = time.monotonic()
        p = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PIPROV_FAULTS_REPORT=str(report)),
                           capture_output=True, text=True)
        took = time.monotonic() - t1
        if report.exists():
            return json.loads(report.read_text()), took
        print(p.stdout[-4000:] + p.stderr[-2000:], file=sys.stderr)
        return {}, took


def print_heal(runs: list[dict[str, object]]) -> int:
    """Per heal scenario: median and max heal time over the runs; returns how many needed piprov."""
    times: dict[str, list[float | None]] = {}
    for lab in runs:
        for name, h in dict(lab.get("heal", {})).items():  # type: ignore[call-overload]
            times.setdefault(name, []).append(h["heal_s"])
    if not times:
        return 0
    needed = [n for n, ts in times.items() if any(t is None for t in ts)]
    print(f"  heal scenarios ({len(runs)} run(s); heal time = cause removed -> every unit active, every Node Ready):")
    width = max(len(n) for n in times)
    for name, ts in times.items():
        ok = [t for t in ts if t is not None]
        med = f"{statistics.median(ok):6.1f} s" if ok else "     -  "
        mx = f"{max(ok):6.1f} s" if ok else "     -  "
        miss = f"  NOT healed in {len(ts) - len(ok)} of {len(ts)} (piprov up needed)" if len(ok) < len(ts) else ""
        print(f"    {name:<{width}}  median {med}  max {mx}{miss}")
    print(f"  heal scenarios that needed a piprov run: {len(needed)} of {len(times)}  (goal 0)")
    return len(needed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unit-only", action="store_true", help="skip the lab scenarios (no root needed)")
    ap.add_argument("--heal-only", action="store_true", help="only the heal suite (issue 18), no unit tests")
    ap.add_argument("--life", action="store_true", help="only reset and restore (issue 17): their times")
    ap.add_argument("--runs", type=int, default=1, metavar="N",
                    help="run the heal suite N times (heal time median/max over them; the first run is "
                         "part of the whole fault suite unless --heal-only)")
    ap.add_argument("-k", dest="keyword", help="pytest -k expression for the lab scenarios")
    args = ap.parse_args()

    if args.heal_only:
        return heal_only(args.runs, args.keyword)
    if args.life:
        return life(args.runs)
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
    heal_runs: list[dict[str, object]] = []
    if not args.unit_only:
        if os.geteuid() != 0:
            print("the lab scenarios need root (or pass --unit-only)", file=sys.stderr)
            return 64
        lab, lab_s = run_lab(["tests/lab/faults"], args.keyword)
        heal_runs = [lab] + [run_lab([HEAL], args.keyword)[0] for _ in range(args.runs - 1)]

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
        needed = print_heal(heal_runs)
    else:
        needed = 0
    print(f"  unit fault tests:        {unit_passed} passed, {unit_failed} failed ({unit_s:.0f} s)")
    if fuzz:
        f = json.loads(fuzz.group(1).replace("'", '"'))
        print(f"  inventory fuzz:          {f.get('files', 0)} files ({f.get('valid', 0)} valid, "
              f"{f.get('broken', 0)} broken) -> {f.get('plan', 0)} plans, {f.get('error', 0)} located errors, "
              "0 tracebacks, 0 writes")
    ok = unit.returncode == 0 and (args.unit_only or (bool(lab) and lab["passed"] == lab["scenarios_run"]))
    return 0 if ok and needed == 0 else 1


def heal_only(runs: int, keyword: str | None) -> int:
    if os.geteuid() != 0:
        print("the heal suite needs root", file=sys.stderr)
        return 64
    results = []
    t0 = time.monotonic()
    for _ in range(runs):
        results.append(run_lab([HEAL], keyword)[0])
    print(f"heal suite (issue 18): {runs} run(s) in {time.monotonic() - t0:.0f} s, one 3-node lab each")
    if not all(results):
        print("  a run produced no figures (see the pytest output above)")
        return 1
    failed = sorted({k for r in results for k, v in dict(r["scenarios"]).items() if v != "passed"})  # type: ignore[call-overload]
    if failed:
        print(f"  failed: {', '.join(failed)}")
    needed = print_heal(results)
    return 0 if needed == 0 and not failed else 1


def life(runs: int) -> int:
    """The `life:` lines the reset and restore lab tests print, per scenario over ``runs`` runs."""
    if os.geteuid() != 0:
        print("the lab scenarios need root", file=sys.stderr)
        return 64
    times: dict[str, list[float]] = {}
    failed = 0
    for _ in range(runs):
        for path, keyword in LIFE:
            p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", path,
                                "-k", keyword], cwd=ROOT, capture_output=True, text=True)
            failed += p.returncode != 0
            for m in re.finditer(r"life: (.*?): ([0-9.]+) s", p.stdout):  # -s: after the progress dots
                times.setdefault(m.group(1), []).append(float(m.group(2)))
            if p.returncode != 0:
                print(p.stdout[-3000:], file=sys.stderr)
    print(f"a cluster's life (issue 17): {runs} run(s)")
    width = max((len(k) for k in times), default=0)
    for what, ts in times.items():
        print(f"  {what:<{width}}  median {statistics.median(ts):6.1f} s  max {max(ts):6.1f} s")
    print(f"  runs that failed: {failed}")
    return 1 if failed or not times else 0


if __name__ == "__main__":
    sys.exit(main())
