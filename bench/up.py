#!/usr/bin/env python3
"""`piprov up` on the lab: cold converge vs the stack's critical path, and the no-op re-run.

    sudo .venv/bin/python bench/up.py [--nodes 3,6] [--noops 5] [--rtt 0]

For each N: fresh lab nodes, one cold `piprov up --json`, then no-op re-runs.
Prints per N:
- cold converge: wall time of the whole command (connect, facts, plan, apply);
- the critical path from `up --json` (critical_path_seconds): the longest
  chain of dependent (node x component) steps, each costing its measured apply
  plus readiness wait, i.e. the least time any scheduler could take given how
  long the stack itself took to become healthy in this run;
- wall / critical path (goal <= 1.15), also for the apply phase alone;
- no-op re-run: median (min-max) wall time, SSH round trips per node as piprov
  counts them, and SSH connections/commands per node as the node's sshd logged
  them (bench/lib.py).
Writes bench/results/up-<UTC time>.json. Noisy shared machine: medians and ranges.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lib  # noqa: E402
from report import per_node, rng  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="3,6")
    ap.add_argument("--noops", type=int, default=5)
    ap.add_argument("--rtt", type=float, default=0.0)
    ap.add_argument("--lab", default=os.environ.get("PIPROV_LAB", "bench-up"))
    a = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc)
    doc: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "rtt_ms": a.rtt, "records": []}
    out = Path(__file__).resolve().parent / "results" / f"up-{started:%Y%m%dT%H%M%SZ}.json"
    try:
        for n in (int(x) for x in a.nodes.split(",")):
            lab, inv = lib.fresh_lab(a.lab, n, a.rtt)
            c = lib.cursors(lab)
            cold = lib.run_tool("piprov", lab, inv, None)
            cold["ssh"] = lib.ssh_counts(lab, c)
            noops = []
            for _ in range(a.noops if cold["ok"] else 0):  # a failed cold run: its error is the figure
                c = lib.cursors(lab)
                r = lib.run_tool("piprov", lab, inv, None)
                r["ssh"] = lib.ssh_counts(lab, c)
                noops.append(r)
            doc["records"].append({"nodes": n, "cold": cold, "noop": noops})
            out.write_text(json.dumps(doc, indent=1))
            cp = cold.get("critical_path") or float("nan")
            nw = [x["wall"] for x in noops]
            if not cold["ok"]:
                print(f"N={n}: cold run FAILED after {cold['wall']:.1f} s:\n{cold.get('error', '')[-1200:]}")
                continue
            print(f"N={n}: cold converge {cold['wall']:.1f} s ({'ok' if cold['ok'] else 'FAILED'}); "
                  f"critical path {cp:.1f} s ({' -> '.join(cold.get('critical_chain', []))}); "
                  f"wall/critical {cold['wall'] / cp:.2f} (apply phase {cold.get('apply_wall', 0) / cp:.2f}; goal <= 1.15)")
            print(f"      cold SSH per node (sshd): connections {per_node(cold['ssh'], 'connections')}, "
                  f"commands {per_node(cold['ssh'], 'commands')}")
            print(f"      no-op re-run {rng(nw)} s over {len(nw)} runs; round trips per node (piprov): "
                  f"{sorted(set((noops[-1].get('round_trips') or {}).values()))}; sshd: connections "
                  f"{per_node(noops[-1]['ssh'], 'connections')}, commands {per_node(noops[-1]['ssh'], 'commands')}"
                  f"{'' if all(x['ok'] for x in noops) else '  (some FAILED)'}", flush=True)
    finally:
        from piprov_lab.lab import Lab

        Lab(a.lab).down()
    print(f"results: {out}")


if __name__ == "__main__":
    main()
