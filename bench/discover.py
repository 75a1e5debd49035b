#!/usr/bin/env python3
"""How fast does `piprov discover` find a shelf of Pis, beside avahi-browse?

    sudo .venv/bin/python bench/discover.py [--nodes 8] [--runs 20] [--keep]

Boots a lab of N Pis (name `bench-discover`, or $PIPROV_LAB), then per run:

- piprov: ``piprov.discover.discover([bridge_ip])`` from the host, a fresh
  zeroconf instance (cold cache) every run. "time to all" = when the last of the
  N Pis had an address; "run time" = until discover returned (quiet period
  included).
- avahi-browse: the host runs no avahi-daemon, so the bench plugs an extra
  network namespace into the lab bridge (veth, address .250) with a private
  mount namespace holding its own dbus system bus and a fresh avahi-daemon
  (IPv4 only, publishing nothing) started for every run, so its cache is as
  cold as piprov's. Then ``avahi-browse -rpt _workstation._tcp`` runs there;
  "time to all" = the last Pi's resolved ('=') line, "run time" = until it
  exited (-t: after avahi's "all for now").

Runs are 1.2 s apart: mDNS responders may not multicast the same record twice
within a second, which would penalise back-to-back runs.

``--boot-runs K`` (default 20; 0 skips it) then measures discovery the moment a
fleet boots: K times, a fresh lab of ``--boot-nodes`` (4) Pis, all starting as
black-pearl and renaming themselves on the wire, and ``discover`` with its
defaults the moment ``lab up`` returns; a run counts when every Pi is listed.
Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from piprov.discover import discover  # noqa: E402
from piprov_lab.lab import Lab  # noqa: E402

AVAHI_CONF = """[server]
host-name=piprov-bench
use-ipv4=yes
use-ipv6=no
allow-interfaces=bd0
[publish]
disable-publishing=yes
[wide-area]
enable-wide-area=no
"""


class AvahiBrowser:
    """A throwaway avahi-daemon + dbus in their own netns on the lab bridge."""

    def __init__(self, lab: Lab) -> None:
        st = lab.status()
        self.bridge = str(st["bridge"])
        prefix = str(st["subnet"]).split("/")[1]
        base = str(st["subnet"]).split("/")[0].rsplit(".", 1)[0]
        tag = f"{os.getpid() % 100000}"
        self.ns = f"pbd{tag}"
        self.host_if = f"pbd{tag}h"
        self.conf = Path(tempfile.mkstemp(prefix="piprov-bench-avahi-", suffix=".conf")[1])
        self.conf.write_text(AVAHI_CONF)
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
        run("ip", "netns", "add", self.ns)
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "bd0", "netns", self.ns)
        run("ip", "link", "set", self.host_if, "master", self.bridge, "up")
        run("ip", "-n", self.ns, "addr", "add", f"{base}.250/{prefix}", "dev", "bd0")
        run("ip", "-n", self.ns, "link", "set", "bd0", "up")
        run("ip", "-n", self.ns, "link", "set", "lo", "up")
        # A private /run: the daemon's socket and pid file and the bus live there.
        script = (
            "mount -t tmpfs none /run && mkdir -p /run/dbus /run/avahi-daemon && "
            "(dbus-daemon --system --nofork --nopidfile &) && exec sleep infinity"
        )
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not self._exists("/run/dbus/system_bus_socket"):
            if time.monotonic() > deadline:
                raise SystemExit("private dbus did not start")
            time.sleep(0.05)

    def _in(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", *argv]

    def _exists(self, path: str) -> bool:
        return subprocess.run(self._in("test", "-S", path), capture_output=True).returncode == 0

    def run(self, want: set[str], timeout: float = 20.0) -> tuple[float | None, float]:
        """One cold browse: (time until every address in ``want`` resolved, total run time)."""
        subprocess.run(self._in("avahi-daemon", "-f", str(self.conf), "--no-chroot", "-D"), check=True, capture_output=True)
        try:
            t0 = time.monotonic()
            p = subprocess.Popen(self._in("avahi-browse", "-rpt", "_workstation._tcp"), stdout=subprocess.PIPE, text=True)
            seen: set[str] = set()
            t_all: float | None = None
            assert p.stdout is not None
            for line in p.stdout:
                f = line.rstrip("\n").split(";")
                if f[0] == "=" and len(f) > 7 and f[7] in want:
                    seen.add(f[7])
                    if t_all is None and seen >= want:
                        t_all = time.monotonic() - t0
                if time.monotonic() - t0 > timeout:
                    p.kill()
                    break
            p.wait()
            return t_all, time.monotonic() - t0
        finally:
            subprocess.run(self._in("avahi-daemon", "-k"), capture_output=True)
            time.sleep(0.2)

    def close(self) -> None:
        try:
            os.killpg(self.holder.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.holder.wait(5)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        self.conf.unlink(missing_ok=True)


def summary(name: str, found: list[float | None], totals: list[float], goal: str) -> str:
    ok = [t for t in found if t is not None]
    med = f"{statistics.median(ok):.2f}" if ok else "-"
    mx = f"{max(ok):.2f}" if ok else "-"
    return (
        f"{name:<14} {len(ok):>3}/{len(found):<3} {med:>8} {mx:>8} "
        f"{statistics.median(totals):>9.2f} {max(totals):>8.2f}   {goal}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--lab", default=os.environ.get("PIPROV_LAB", "bench-discover"))
    ap.add_argument("--keep", action="store_true", help="leave the lab up (and reuse one that is)")
    ap.add_argument("--skip-avahi", action="store_true")
    ap.add_argument("--boot-runs", type=int, default=20)
    ap.add_argument("--boot-nodes", type=int, default=4)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/discover.py needs root (it boots a lab)")

    if a.runs:
        settled_runs(a)
    if a.boot_runs:
        print(boot_runs(f"{a.lab}-boot", a.boot_nodes, a.boot_runs))


def settled_runs(a: argparse.Namespace) -> None:
    """The classic figure: a lab whose names have settled, discovered ``a.runs`` times (and avahi-browse)."""
    lab = Lab(a.lab)
    booted = False
    if not lab.is_up:
        t = time.monotonic()
        lab.up(nodes=a.nodes)
        booted = True
        print(f"lab {a.lab}: {a.nodes} nodes up in {time.monotonic() - t:.1f} s", file=sys.stderr)
    browser: AvahiBrowser | None = None
    try:
        t_settle = time.monotonic()
        lab.wait_mdns()
        print(f"mDNS names settled after {time.monotonic() - t_settle:.1f} s", file=sys.stderr)
        bridge_ip = lab.bridge_ip
        want = {n.ip for n in lab.nodes}
        n_pis = len(want)

        p_found: list[float | None] = []
        p_total: list[float] = []
        for i in range(a.runs):
            r = discover([bridge_ip], timeout=5.0)
            pis = {h.address: h for h in r.pis}
            p_found.append(max(pis[x].first_seen for x in want) if want <= set(pis) else None)
            p_total.append(r.duration)
            print(f"  piprov run {i + 1:2}: all={p_found[-1]} total={r.duration:.2f} s "
                  f"({len(pis)} Pis, settled={r.settled})", file=sys.stderr)  # fmt: skip
            time.sleep(1.2)

        a_found: list[float | None] = []
        a_total: list[float] = []
        if not a.skip_avahi:
            browser = AvahiBrowser(lab)
            for i in range(a.runs):
                t_all, total = browser.run(want)
                a_found.append(t_all)
                a_total.append(total)
                print(f"  avahi-browse run {i + 1:2}: all={t_all} total={total:.2f} s", file=sys.stderr)
                time.sleep(1.2)

        print(f"\ndiscovery of {n_pis} lab Pis, {a.runs} cold runs each (seconds)")
        print(f"{'tool':<14} {'all found':>7} {'median':>8} {'max':>8} {'run med':>9} {'run max':>8}   goal")
        print(summary("piprov", p_found, p_total, "time to all <= 1.5 s, 20/20"))
        if a_found:
            print(summary("avahi-browse", a_found, a_total, "(-rpt _workstation._tcp, fresh daemon)"))
    finally:
        if browser is not None:
            browser.close()
        if booted and not a.keep:
            lab.down()


def boot_runs(name: str, nodes: int, runs: int) -> str:
    """K fresh labs, each discovered the moment `lab up` returns: how many list every Pi."""
    complete = 0
    durations: list[float] = []
    for i in range(runs):
        lab = Lab(name)
        lab.down()
        lab.up(nodes=nodes)
        try:
            r = discover([lab.bridge_ip])
            found = {h.address for h in r.pis}
            want = {n.ip for n in lab.nodes}
            complete += want <= found
            durations.append(r.duration)
            print(f"  boot run {i + 1:2}: {len(found & want)}/{len(want)} Pis in {r.duration:.2f} s "
                  f"(settled={r.settled})", file=sys.stderr)  # fmt: skip
        finally:
            lab.down()
    return (f"\ndiscovered the moment `lab up --nodes {nodes}` returned: {complete}/{runs} complete, "
            f"run median {statistics.median(durations):.2f} s, max {max(durations):.2f} s")


if __name__ == "__main__":
    main()
