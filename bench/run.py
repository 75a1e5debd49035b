#!/usr/bin/env python3
"""piprov beside ansible-core and pyinfra on the virtual Pi lab: one command, table and plots.

    sudo .venv/bin/python bench/run.py --quick          # 3 nodes, 0 ms, every tool (< 15 min)
    sudo .venv/bin/python bench/run.py                  # 3 and 6 nodes, 0 and +20 ms RTT
    sudo .venv/bin/python bench/run.py --nodes 3,6,12   # the full matrix (~2 h, Ansible most of it)
    sudo .venv/bin/python bench/run.py --tools piprov,pyinfra --into bench/results/run-X.json
                                                        # more records into an earlier run
    sudo .venv/bin/python bench/run.py --report-only    # redo docs/benchmarks.md + plots from results

For every tool x N x RTT: fresh lab nodes (lab down + up: the fastest reset),
one cold run, time until every node is Ready (polled from outside, the same
for every tool), then 5 no-op re-runs. SSH connections and commands per node
are counted on the node from sshd's journal at LogLevel VERBOSE (bench/lib.py).
Tools: piprov (`piprov up`), pyinfra and ansible-core (default and tuned) from
the bench venv (/var/cache/piprov-bench/venv, not .venv) running the same
deploy taken from piprov's own rendering (bench/peers/). For Ansible, python3
is first installed into each node (timed apart: Ansible's design needs it).

Results: bench/results/run-<UTC time>.json; docs/benchmarks.md and
docs/bench-*.png are regenerated from every results file of the latest run.
Timings are noisy on this shared 2-core machine: medians and ranges, and tools
compared only within one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lib  # noqa: E402
import report  # noqa: E402

TOOLS = ["piprov", "pyinfra", "ansible-tuned", "ansible-default"]


def bench_one(lab_name: str, tool: str, nodes: int, rtt: float, noops: int) -> dict[str, Any]:
    lab, inv = lib.fresh_lab(lab_name, nodes, rtt)
    spec = lib.write_peer_files(lab, inv, [tool])
    rec: dict[str, Any] = {"tool": tool, "nodes": nodes, "rtt_ms": rtt,
                           "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if tool.startswith("ansible"):
        rec["python_install_seconds"] = round(lib.install_python(lab), 2)
    c = lib.cursors(lab)
    cold = lib.run_tool(tool, lab, inv, spec)
    after = lib.wait_ready(lab, 300)
    cold["ready_seconds"] = None if after is None else round(cold["wall"] + after, 3)
    cold["ssh"] = lib.ssh_counts(lab, c)
    rec["cold"] = cold
    rec["noop"] = []
    for _ in range(noops):
        c = lib.cursors(lab)
        r = lib.run_tool(tool, lab, inv, spec)
        r["ssh"] = lib.ssh_counts(lab, c)
        rec["noop"].append(r)
    ok = cold["ok"] and all(r["ok"] for r in rec["noop"])
    print(f"  {tool:16} N={nodes:<2} rtt={rtt:g} ms: cold {cold['wall']:.1f} s (ready {cold['ready_seconds']}), "
          f"no-op median {report.med([r['wall'] for r in rec['noop']]):.2f} s{'' if ok else '  FAILED'}", flush=True)
    if not ok:
        print((cold.get("error") or next((r.get("error") for r in rec["noop"] if not r["ok"]), ""))[-1500:])
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 nodes, 0 ms RTT only")
    ap.add_argument("--nodes", default="3,6", help="node counts (default 3,6)")
    ap.add_argument("--rtt", default="0,20", help="added SSH round-trip times in ms (default 0,20)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--noops", type=int, default=5)
    ap.add_argument("--lab", default=os.environ.get("PIPROV_LAB", "bench"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--into", type=Path, metavar="RESULTS_JSON",
                    help="add the records to this earlier run (a record of the same tool, N and RTT is replaced): "
                         "one table from several sittings, e.g. to redo a failed cell")
    a = ap.parse_args()
    if a.report_only:
        report.write_docs()
        return
    lib.prepare()
    nodes = [3] if a.quick else [int(x) for x in a.nodes.split(",")]
    rtts = [0.0] if a.quick else [float(x) for x in a.rtt.split(",")]
    tools = a.tools.split(",")
    started = dt.datetime.now(dt.timezone.utc)
    sitting = {"started": started.isoformat(timespec="seconds"), "tools": tools, "nodes": nodes, "rtt_ms": rtts}
    if a.into:
        out = a.into.resolve()
        doc: dict[str, Any] = json.loads(out.read_text())
        recs = doc["records"]
        first = {"started": doc["started"], "tools": sorted({r["tool"] for r in recs}, key=TOOLS.index),
                 "nodes": sorted({r["nodes"] for r in recs}), "rtt_ms": sorted({r["rtt_ms"] for r in recs})}
        doc.setdefault("sittings", [first]).append(sitting)
    else:
        out = Path(__file__).resolve().parent / "results" / f"run-{started:%Y%m%dT%H%M%SZ}.json"
        doc = {"started": started.isoformat(timespec="seconds"), "quick": a.quick,
               "versions": lib.versions(), "records": [], "sittings": [sitting]}

    def keep(rec: dict[str, Any]) -> None:
        key = (rec["tool"], rec["nodes"], rec["rtt_ms"])
        doc["records"] = [r for r in doc["records"] if (r["tool"], r["nodes"], r["rtt_ms"]) != key] + [rec]
        doc["records"].sort(key=lambda r: (r["nodes"], r["rtt_ms"], TOOLS.index(r["tool"])))
        doc["seconds"] = round(seconds_before + time.monotonic() - t0, 1)
        out.write_text(json.dumps(doc, indent=1))

    seconds_before = doc.get("seconds", 0)  # of the earlier sittings (--into)
    t0 = time.monotonic()
    try:
        for n in nodes:
            for rtt in rtts:
                for tool in tools:
                    keep(bench_one(a.lab, tool, n, rtt, a.noops))
    finally:
        from piprov_lab.lab import Lab

        Lab(a.lab).down()
    print(f"results: {out} ({time.monotonic() - t0:.0f} s)")
    print(report.table(doc))
    report.write_docs()


if __name__ == "__main__":
    main()
