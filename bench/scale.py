#!/usr/bin/env python3
"""Controller scale: facts + plan for 50 and 100 light lab nodes, wall time and peak RSS.

    sudo .venv/bin/python bench/scale.py [--nodes 50,100] [--runs 3]

Light nodes: lab nodes as booted (systemd + sshd + avahi, no docker daemon
running, ~58 MB each). `piprov plan --json` reads every node's facts (one SSH
command each, in parallel) and plans the whole seed stack for all of them;
the bench records its wall time and peak RSS (GNU time's %M) and checks that
every node was planned. Writes bench/results/scale-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lib  # noqa: E402
from piprov_lab.lab import Lab  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="50,100")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lab", default=os.environ.get("PIPROV_LAB", "bench-scale"))
    a = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc)
    out = Path(__file__).resolve().parent / "results" / f"scale-{started:%Y%m%dT%H%M%SZ}.json"
    doc: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "records": []}
    lab = Lab(a.lab)
    try:
        lab.down()
        for n in (int(x) for x in a.nodes.split(",")):
            t0 = time.monotonic()
            lab.down()
            lab.up(nodes=n)
            boot = time.monotonic() - t0
            inv = lib.WORK / f"{a.lab}-inventory.yaml"
            lib.WORK.mkdir(parents=True, exist_ok=True)
            inv.write_text(lab.inventory_yaml())
            walls, rss, planned = [], [], []
            for _ in range(a.runs):
                t0 = time.monotonic()
                p = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", lib.PY, "-m", "piprov", "plan", "--json",
                                    "-i", str(inv)], capture_output=True, text=True, timeout=600)
                walls.append(time.monotonic() - t0)
                rss.append(int(p.stderr.rsplit("MAXRSS ", 1)[-1].split()[0]) / 1024)
                try:
                    plan = json.loads(p.stdout)
                    planned.append(len(plan["nodes"]))
                except (json.JSONDecodeError, KeyError):
                    planned.append(0)
            rec = {"nodes": n, "lab_boot_seconds": round(boot, 1), "wall": lib.summary(walls),
                   "peak_rss_mb": lib.summary(rss), "planned": planned}
            doc["records"].append(rec)
            out.write_text(json.dumps(doc, indent=1))
            print(f"N={n}: facts + plan {lib.summary(walls)} s, peak RSS {lib.summary(rss)} MB, "
                  f"nodes planned {planned} (lab boot {boot:.0f} s)", flush=True)
    finally:
        lab.down()
    print(f"results: {out}")


if __name__ == "__main__":
    main()
