#!/usr/bin/env python3
"""Where `piprov plan --json` spends its time at scale, on every thread: a sampling profile.

    sudo .venv/bin/python bench/profile_plan.py -i INVENTORY [--interval 0.002] [--top 25]

Runs `piprov plan --json` in this process (stdout discarded) while a sampler
thread takes every other thread's stack each ``--interval`` s
(sys._current_frames). A thread whose innermost frame is a wait (select,
recv, lock/condition/event waits, sleep) is counted as waiting; the others as
running Python: with one GIL, that is the CPU the controller's Python uses,
and what bounds a plan of many nodes on few cores. Prints the share of
running samples per innermost function ("self") and per function anywhere on
the stack ("inclusive"), and a coarse split by subsystem (paramiko, jinja2,
cryptography via piprov.pki, piprov's planner, ...). cProfile sees only the
main thread (bench/profile_up.py); py-spy is not installed here.
"""

from __future__ import annotations

import argparse
import collections
import io
import sys
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WAITS = {"select", "recv", "wait", "acquire", "sleep", "_wait_for_tstate_lock", "join", "poll", "accept",
         "read", "readinto", "_recv_into", "recv_into", "sendall", "connect", "create_connection", "result"}
# The subsystem a running sample belongs to: the first of these found walking out from the innermost frame.
SUBSYSTEMS = [("paramiko/", "paramiko"), ("cryptography/", "cryptography"), ("jinja2/", "jinja2"),
              ("piprov/pki/", "piprov.pki"), ("piprov/facts/", "piprov.facts (parse)"),
              ("piprov/plan/", "piprov.plan"), ("piprov/render", "piprov.render"), ("piprov/graph/", "piprov.graph"),
              ("piprov/ssh/", "piprov.ssh"), ("piprov/transport", "piprov.transport"), ("ruamel/", "ruamel (inventory)"),
              ("yaml/", "yaml (playbooks)"), ("piprov/cli/", "piprov.cli (output)"), ("json/", "json"),
              ("piprov/", "piprov (other)")]


def where(f: FrameType) -> str:
    return f"{Path(f.f_code.co_filename).name}:{f.f_code.co_name}"


def subsystem(stack: list[FrameType]) -> str:
    for f in stack:
        name = f.f_code.co_filename
        for key, label in SUBSYSTEMS:
            if key in name:
                return label
    return "other (stdlib, threads)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-i", "--inventory", required=True)
    ap.add_argument("--interval", type=float, default=0.002)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    subs: collections.Counter[str] = collections.Counter()
    waiting = running = ticks = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal waiting, running, ticks
        while not stop.is_set():
            ticks += 1
            for tid, frame in sys._current_frames().items():
                if tid == sampler.ident:
                    continue
                if frame.f_code.co_name in WAITS:
                    waiting += 1
                    continue
                running += 1
                stack = []
                f: FrameType | None = frame
                while f is not None:
                    stack.append(f)
                    f = f.f_back
                self_c[where(frame)] += 1
                for w in {where(x) for x in stack}:
                    incl[w] += 1
                subs[subsystem(stack)] += 1
            time.sleep(a.interval)

    from piprov.cli.app import run

    # The main thread is sampled too: it loads the inventory and playbooks and writes the output.
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    with redirect_stdout(io.StringIO()):
        code = run(["plan", "--json", "-i", a.inventory])
    wall = time.monotonic() - t0
    stop.set()
    sampler.join()
    print(f"plan: {wall:.2f} s in-process (exit {code}); {ticks} ticks, samples: running {running}, waiting {waiting}"
          f" (running samples per tick: {running / max(1, ticks):.2f}; above 1 means threads queue for the GIL)")
    total = max(1, running)
    print("\nrunning samples by subsystem:")
    for k, v in subs.most_common():
        print(f"  {100 * v / total:5.1f} %  {k}")
    print(f"\ntop {a.top} by self (innermost frame):")
    for k, v in self_c.most_common(a.top):
        print(f"  {100 * v / total:5.1f} %  {k}")
    print(f"\ntop {a.top} inclusive:")
    for k, v in incl.most_common(a.top):
        print(f"  {100 * v / total:5.1f} %  {k}")


if __name__ == "__main__":
    main()
