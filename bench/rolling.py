#!/usr/bin/env python3
"""Benchmark `piprov up --rolling` on a 4-node lab cluster under a workload.

Boots its own lab (4 nodes: 1 master + 3 workers), `piprov up`, a busybox RC
of 4 replicas with a PodDisruptionBudget allowing one unavailable, then rolls
an image-tag change (hyperkube v1.1.2 <-> v1.1.3) through the cluster a few
times, sampling ready replicas every 0.2 s from the apiserver. Prints, per
run: time per batch, total rolling time, minimum ready replicas seen.

    .venv/bin/python bench/rolling.py [--runs 2] [--batch 1] [--keep]

Needs root (the lab). The lab is taken down at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from piprov_lab.lab import Lab  # noqa: E402

PIPROV = [sys.executable, "-m", "piprov"]
TESTDATA = Path(__file__).resolve().parents[1] / "piprov_lab/images/testdata"


def ready_replicas(api: str) -> int:
    with urllib.request.urlopen(f"{api}/api/v1/namespaces/default/pods?labelSelector=app%3Dhttpd",
                                timeout=5) as r:  # noqa: S310 - the lab's apiserver
        pods = json.loads(r.read())["items"]
    return sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")
               and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--name", default="bench-roll")
    ap.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = ap.parse_args()

    lab = Lab(args.name)
    lab.down()
    lab.up(nodes=4)
    try:
        tmp = Path(tempfile.mkdtemp(prefix="piprov-bench-rolling-"))
        inv = tmp / "inventory.yaml"
        inv.write_text(lab.inventory_yaml())

        def piprov(*a: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*PIPROV, *a, "-i", str(inv)], capture_output=True, text=True, timeout=900)

        def kubectl(*a: str, input: str | None = None) -> None:
            if not kc.exists():
                p = piprov("kubeconfig", "-o", str(kc))
                assert p.returncode == 0, p.stderr
            subprocess.run(lab.kubectl_argv(kc, tmp / "kc", *a), input=input, check=True,
                           capture_output=True, text=True, timeout=60)

        kc = tmp / "kubeconfig"
        t0 = time.monotonic()
        p = piprov("up")
        if p.returncode != 0:
            print(p.stderr[-3000:], file=sys.stderr)
            return 1
        print(f"cold piprov up, 4 nodes: {time.monotonic() - t0:.1f} s")
        kubectl("create", "-f", "-", input=(TESTDATA / "rc.yaml").read_text()
                .replace("{{REGISTRY}}", lab.registry).replace("replicas: 3", "replicas: 4"))
        kubectl("create", "-f", "-", input=(TESTDATA / "pdb.yaml").read_text()
                .replace("maxUnavailable: 0", "maxUnavailable: 1"))
        deadline = time.monotonic() + 180
        while ready_replicas(api) < 4:
            if time.monotonic() > deadline:
                print("workload never reached 4 ready replicas", file=sys.stderr)
                return 1
            time.sleep(1)

        totals = []
        for run in range(args.runs):
            tag = "v1.1.3" if run % 2 == 0 else "v1.1.2"
            piprov("inventory", "set", "images.hyperkube.tag", tag)
            samples: list[int] = []
            halt = threading.Event()

            def sample() -> None:
                while not halt.is_set():
                    try:
                        samples.append(ready_replicas(api))
                    except OSError:
                        pass  # the apiserver restarts during the master's batch
                    halt.wait(0.2)

            th = threading.Thread(target=sample, daemon=True)
            th.start()
            t0 = time.monotonic()
            p = piprov("up", "--rolling", "--batch", str(args.batch), "--json")
            wall = time.monotonic() - t0
            halt.set()
            th.join()
            if p.returncode != 0:
                print(p.stderr[-3000:], file=sys.stderr)
                return 1
            report = json.loads(p.stdout)
            print(f"run {run + 1}: hyperkube -> {tag}, --batch {args.batch}")
            for b in report["batches"]:
                print(f"  batch {', '.join(b['nodes']):<24} {b['seconds']:6.1f} s  "
                      f"{'drained' if b['drain'] else 'in place'}, {len(b['evicted'])} pods evicted")
            print(f"  total rolling time {report['seconds']:.1f} s (command wall {wall:.1f} s); "
                  f"min ready replicas seen {min(samples) if samples else 'n/a'} of 4 "
                  f"({len(samples)} samples)")
            totals.append(report["seconds"])
        if len(totals) > 1:
            print(f"rolling total: median {statistics.median(totals):.1f} s over {len(totals)} runs")
        return 0
    finally:
        if not args.keep:
            lab.down()


if __name__ == "__main__":
    sys.exit(main())
