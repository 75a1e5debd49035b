#!/usr/bin/env python3
"""Benchmark the lab's OS matrix (`lab up --os`, issue 14): what each release costs.

Prints (as root; run it under `flock /work/lab.lock`):
  1. each release's node image build into a scratch cache with an EMPTY .deb cache, so
     the download is in it, as on a CI machine that starts with an empty /var/cache;
  2. a mixed lab (`--os` as given, pi1 the first): boot until every node has booted,
     a cold `piprov up`, then a `piprov plan` (must exit 0), a few runs on fresh labs.

    .venv/bin/python bench/lab_os.py [--releases bullseye,bookworm,trixie] [--runs 2] [--skip-build]

Writes bench/results/lab-os-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from piprov_lab import image  # noqa: E402
from piprov_lab.lab import Lab  # noqa: E402

PIPROV = str(Path(sys.executable).with_name("piprov"))


def bench_build(release: str) -> dict[str, float]:
    real_root = image.CACHE_ROOT
    with tempfile.TemporaryDirectory(prefix="piprov-lab-os-", dir="/var/tmp") as tmp:
        image.CACHE_ROOT = Path(tmp)  # no debs/: debootstrap downloads every package
        try:
            t0 = time.monotonic()
            base = image.ensure_base(None, release)
            took = time.monotonic() - t0
            size = int(subprocess.run(["du", "-sm", str(base.root)], capture_output=True, text=True).stdout.split()[0])
        finally:
            image.CACHE_ROOT = real_root
    print(f"{release}: image build with an empty cache (download + debootstrap + customise): {took:.1f} s, {size} MB",
          flush=True)
    return {"seconds": round(took, 1), "mb": size}


def bench_mixed(name: str, releases: list[str], runs: int, work: Path) -> list[dict[str, float]]:
    out = []
    for r in releases:
        image.ensure_base(None, r)  # warm: builds are measured above
    for _ in range(runs):
        lab = Lab(name)
        lab.down()
        t0 = time.monotonic()
        lab.up(nodes=len(releases), releases=releases)
        boot = time.monotonic() - t0
        try:
            inv = work / "inventory.yaml"
            for p in work.iterdir():
                p.unlink()
            inv.write_text(lab.inventory_yaml())
            t1 = time.monotonic()
            up = subprocess.run([PIPROV, "up", "-i", str(inv)], capture_output=True, text=True)
            t_up = time.monotonic() - t1
            if up.returncode != 0:
                sys.exit(f"piprov up failed:\n{up.stderr[-3000:]}")
            t2 = time.monotonic()
            plan = subprocess.run([PIPROV, "plan", "-i", str(inv)], capture_output=True, text=True)
            t_plan = time.monotonic() - t2
            if plan.returncode != 0:
                sys.exit(f"piprov plan exited {plan.returncode}:\n{plan.stdout[-2000:]}{plan.stderr[-2000:]}")
        finally:
            lab.down()
        out.append({"boot_s": round(boot, 2), "up_s": round(t_up, 2), "plan_s": round(t_plan, 2)})
        print(f"mixed lab --os {','.join(releases)}: boot {boot:.1f} s, cold piprov up {t_up:.1f} s, "
              f"plan (no change) {t_plan:.1f} s", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--releases", default=",".join(image.RELEASES))
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--skip-build", action="store_true")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/lab_os.py needs root (it builds images and boots labs)")
    releases = [r for r in a.releases.split(",") if r]
    started = datetime.datetime.now(datetime.timezone.utc)
    res: dict[str, object] = {"machine_cores": os.cpu_count(), "releases": releases}
    if not a.skip_build:
        res["build"] = {r: bench_build(r) for r in releases}
    with tempfile.TemporaryDirectory(prefix="piprov-lab-os-run-", dir="/var/tmp") as work:
        runs = bench_mixed(f"bos{os.getpid() % 100000}", releases, a.runs, Path(work))
    res["mixed"] = runs
    for key in ("boot_s", "up_s", "plan_s"):
        print(f"median {key}: {statistics.median(r[key] for r in runs):.1f}")
    out = Path(__file__).resolve().parent / "results" / f"lab-os-{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
