#!/usr/bin/env python3
"""Where a no-op `piprov up` spends its wall time, step by step, on every thread.

    .venv/bin/python bench/noop_timeline.py [--nodes 3] [--runs 5] [--lab bench-tl]

Boots fresh lab nodes, runs one cold `piprov up`, then `--runs` no-op runs, each
a fresh process (as a user runs it) in which the main steps of `up` are wrapped
to record when they start and end and on which thread: loading the inventory
and playbooks, the PKI, the run lock, the label read (its own thread), each
node's connection (TCP + key exchange + auth), its facts command, the parse and
the plan, and what follows. cProfile sees only the main thread and hides the
SSH workers; this shows the overlap. Prints, per step, the median start and
end (ms since the interpreter started) and its median duration; the process's
own start-up (interpreter + imports) is the gap before the first step.
Writes bench/results/noop-timeline-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

# (module, attribute path, label): what a no-op `up` does, in about the order it does it.
WRAPPED = [
    ("piprov.cli.cluster", "_load", "load inventory + playbooks"),
    ("piprov.cli.labels_view", "label_plan", "label read (its thread)"),
    ("piprov.pki", "cluster_pki", "PKI (CA + leaves judged)"),
    ("piprov.fleet", "Fleet.connect", "open transports"),
    ("piprov.transport", "SshTransport.connection", "connect {node}"),
    ("piprov.transport", "SshTransport.run", "command {node}"),
    ("piprov.provision", "parse_facts", "parse facts"),
    ("piprov.provision", "plan_one", "plan {node}"),
    ("piprov.cli.cluster", "_nothing_else", "labels wait + summary"),
]


def _child(inventory: str, out: str) -> None:
    """Runs in the measured process: wrap, run `up --json`, dump the spans."""
    import importlib

    born = _process_start()
    spans: list[dict[str, Any]] = []
    lock = threading.Lock()

    def wrap(owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def timed(*a: Any, **kw: Any) -> Any:
            nodes = [getattr(x, "node", x) for x in a]
            node = next((n.name for n in nodes if hasattr(n, "address") and hasattr(n, "name")), "?")
            name = label.format(node=node)
            t0 = time.time()
            try:
                return fn(*a, **kw)
            finally:
                with lock:
                    spans.append({"step": name, "thread": threading.current_thread().name,
                                  "start": (t0 - born) * 1e3, "end": (time.time() - born) * 1e3})

        setattr(owner, attr, timed)

    for mod, path, label in WRAPPED:
        m = importlib.import_module(mod)
        *outer, attr = path.split(".")
        owner = m
        for o in outer:
            owner = getattr(owner, o)
        wrap(owner, attr, label)
    import piprov.cli.app as app

    t_run = (time.time() - born) * 1e3
    code = app.run(["up", "--json", "-i", inventory])
    done = (time.time() - born) * 1e3
    Path(out).write_text(json.dumps({"code": code, "run_called_ms": t_run, "done_ms": done, "spans": spans}))


def _process_start() -> float:
    """This process's start, wall clock: /proc/self/stat starttime (clock ticks since boot)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - uptime + start


def _summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        for s in r["spans"]:
            by.setdefault(s["step"], []).append(s)
    rows = []
    for step, ss in by.items():
        med: Callable[[str], float] = lambda k: statistics.median(s[k] for s in ss)  # noqa: E731
        rows.append({"step": step, "start_ms": med("start"), "end_ms": med("end"),
                     "ms": statistics.median(s["end"] - s["start"] for s in ss), "calls": len(ss) / len(runs),
                     "threads": sorted({s["thread"].split("_")[0] for s in ss})})
    return sorted(rows, key=lambda r: r["start_ms"])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    import lib

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lab", default=os.environ.get("PIPROV_LAB", "bench-tl"))
    ap.add_argument("--keep", action="store_true", help="leave the lab up (and reuse it if it is up)")
    a = ap.parse_args()
    lab, inv = lib.fresh_lab(a.lab, a.nodes, 0)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    try:
        cold = subprocess.run([lib.PY, "-m", "piprov", "up", "--json", "-i", str(inv)], env=env,
                              capture_output=True, text=True)
        assert cold.returncode == 0, cold.stderr[-2000:]
        runs, walls = [], []
        for i in range(a.runs + 1):  # the first one warms the page cache and .pyc files, not counted
            out = lib.WORK / f"timeline-{i}.json"
            t0 = time.monotonic()
            p = subprocess.run([lib.PY, __file__, "--child", str(inv), str(out)], env=env, capture_output=True,
                               text=True)
            wall = time.monotonic() - t0
            r = json.loads(out.read_text())
            assert r["code"] == 0, p.stderr[-2000:]
            if i:
                runs.append(r)
                walls.append(wall)
    finally:
        if not a.keep:
            lab.down()
    rows = _summarise(runs)
    print(f"no-op `up --json`, {a.nodes} nodes, {a.runs} runs: wall median {statistics.median(walls):.3f} s "
          f"({min(walls):.3f}-{max(walls):.3f})")
    print(f"  interpreter + imports until the CLI runs: {statistics.median(r['run_called_ms'] for r in runs):.0f} ms;"
          f" run returned at {statistics.median(r['done_ms'] for r in runs):.0f} ms")
    print(f"  {'step':34} {'start':>7} {'end':>7} {'ms':>7}  calls  threads")
    for row in rows:
        print(f"  {row['step']:34} {row['start_ms']:7.0f} {row['end_ms']:7.0f} {row['ms']:7.1f}  {row['calls']:5.1f}"
              f"  {','.join(row['threads'])}")
    res = Path(__file__).resolve().parent / "results"
    res.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (res / f"noop-timeline-{stamp}.json").write_text(json.dumps(
        {"nodes": a.nodes, "walls": walls, "steps": rows, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
