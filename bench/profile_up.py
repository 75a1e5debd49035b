#!/usr/bin/env python3
"""Where does `piprov up` spend its time? cProfile of a cold run and a no-op re-run on the lab.

    sudo .venv/bin/python bench/profile_up.py [--nodes 3] [--top 18]

Runs `python -m cProfile -m piprov up` on fresh lab nodes, then again with
nothing to change, and prints the top functions by cumulative time (threads:
cProfile sees the main thread, so the cold run shows the waits in run_dag;
the worker threads' split is in `up --json`'s apply/wait seconds). Also
prints the import time of the CLI, a fixed cost of every run.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lib  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("--lab", default=os.environ.get("PIPROV_LAB", "bench-prof"))
    a = ap.parse_args()
    lab, inv = lib.fresh_lab(a.lab, a.nodes, 0)
    try:
        imp = []
        for _ in range(3):
            t0 = time.monotonic()
            subprocess.run([lib.PY, "-c", "import piprov.cli.app, piprov.cli.cluster"], check=True)
            imp.append(time.monotonic() - t0)
        print(f"interpreter start + CLI imports: {lib.summary(imp)} s")
        for label in ("cold", "no-op", "no-op"):
            prof = lib.WORK / f"profile-{label}.prof"
            t0 = time.monotonic()
            p = subprocess.run([lib.PY, "-m", "cProfile", "-o", str(prof), "-m", "piprov", "up", "-i", str(inv)],
                               capture_output=True, text=True)
            print(f"\n== {label}: {time.monotonic() - t0:.2f} s (exit {p.returncode}) under cProfile")
            st = pstats.Stats(str(prof))
            st.sort_stats("cumulative").print_stats(a.top)
            st.sort_stats("tottime").print_stats(10)
    finally:
        lab.down()


if __name__ == "__main__":
    main()
