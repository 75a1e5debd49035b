"""Helpers for the heal suite (issue 18): break something, remove the cause, then wait
WITHOUT any `piprov up` until the stack is whole again, and time it.

"Whole" (:meth:`Healer.broken` returns None) means, on every node, every unit
piprov manages (the files in /etc/systemd/system carrying piprov's header, so
the list follows the templates) is ``active``, every Node is Ready in the
apiserver, and every process the scenario killed has been replaced (a process
with the same command line and another pid runs), so a poll that lands before
systemd has even noticed a kill does not pass for a heal.

The heal time is measured from "cause removed" (the kill itself for an instant
fault; the power coming back, the address re-added, etcd unblocked for the
others) to the first poll that finds the stack whole. A scenario that is not
whole within the bound is restored with one `piprov up` (counted: the
scenarios that needed a piprov run, goal 0) so the next scenario starts from a
healthy cluster, and then fails naming what stayed down.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

from faultkit import FIGURES, FaultCluster
from labkit import wait_for

from piprov_lab.errors import LabError

# The lab's node names (pi1 = rpi-master, pi2 = rpi-node-1, pi3 = rpi-node-2).
MASTER, WORKER, WORKER2 = "pi1", "pi2", "pi3"
BOOTSTRAP = "docker -H unix:///var/run/docker-bootstrap.sock"
MAIN = "docker -H unix:///var/run/docker.sock"
# The units piprov wrote on this node: every file carrying the header of templates/_header.j2.
UNITS_SH = ("cd /etc/systemd/system && u=$(grep -l '^# Managed by piprov' *.service *.socket 2>/dev/null); "
            "for x in $u; do echo \"$x $(systemctl is-active $x)\"; done")
# systemd's own restart counts of those units, one `systemctl show` for them all.
RESTARTS_SH = ("cd /etc/systemd/system && u=$(grep -l '^# Managed by piprov' *.service 2>/dev/null); "
               '[ -z "$u" ] || systemctl show -p Id -p NRestarts $u')
POLL_S = 1.0


@dataclass(frozen=True)
class Killed:
    """A process the scenario killed: healed once the same command line runs under another pid."""

    node: str
    pid: int
    cmdline: str


def pid_of(fc: FaultCluster, node: str, kind: str, name: str) -> int:
    """The main pid of a unit (kind "unit"), of a container on the bootstrap ("bootstrap") or
    main ("main") docker daemon, or of a pod's container (kind "pod", by container name)."""
    if kind == "unit":
        cmd = f"systemctl show -p MainPID --value {name}"
    elif kind == "bootstrap":
        cmd = f"{BOOTSTRAP} inspect -f '{{{{.State.Pid}}}}' {name}"
    elif kind == "main":
        cmd = f"{MAIN} inspect -f '{{{{.State.Pid}}}}' {name}"
    else:
        cmd = (f"{MAIN} inspect -f '{{{{.State.Pid}}}}' "
               f"$({MAIN} ps -q --filter label=io.kubernetes.container.name={name} | head -n 1)")
    pid = int(fc.lab.exec(node, cmd).stdout.strip() or 0)
    assert pid > 0, f"{name} has no running process on {node}"
    return pid


def kill9(fc: FaultCluster, node: str, pid: int) -> Killed:
    cmdline = node_cmdlines(fc, node).get(pid)
    assert cmdline, f"pid {pid} has no command line on {node}"
    fc.lab.exec(node, f"kill -9 {pid}")
    return Killed(node, pid, cmdline)


def node_cmdlines(fc: FaultCluster, node: str) -> dict[int, str]:
    """Every process of ``node`` (its pids, containers' processes included) -> its command line,
    NULs as spaces; read on the host through the node's own /proc (/proc/<its PID 1>/root/proc),
    so a poll starts no process at all (it forked a `tr` for every /proc entry in the node)."""
    pid1 = fc.lab.node(node).pid1
    if pid1 is None:
        return {}
    proc = f"/proc/{pid1}/root/proc"
    out: dict[int, str] = {}
    try:
        entries = os.listdir(proc)
    except OSError:  # powered off meanwhile
        return {}
    for d in entries:
        if d.isdigit():
            try:
                with open(f"{proc}/{d}/cmdline", "rb") as f:
                    out[int(d)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # gone meanwhile
                pass
    return out


class Healer:
    def __init__(self, fc: FaultCluster, bound_s: float) -> None:
        self.fc = fc
        self.bound_s = bound_s
        self.pool = ThreadPoolExecutor(max_workers=len(fc.lab.nodes))
        # When the running scenario began (the cluster whole): its failures come after it.
        self.started = time.monotonic()

    # -- what is still broken
    def _node(self, node: str, killed: tuple[Killed, ...]) -> list[str]:
        try:
            out = self.fc.lab.exec(node, UNITS_SH, check=False, timeout=30).stdout
        except LabError as e:  # powered off, or not booted far enough for nsenter
            return [f"{node}: {e}"]
        units = [ln.split() for ln in out.splitlines() if ln.strip()]
        bad = [f"{node}: {u[0]} {u[1] if len(u) > 1 else '?'}" for u in units if u[1:] != ["active"]]
        if not units:
            bad.append(f"{node}: no piprov units found")
        for k in killed:
            if k.node == node and not self._replaced(k):
                bad.append(f"{node}: killed pid {k.pid} ({k.cmdline[:60]}...) not replaced yet")
        return bad

    def _replaced(self, k: Killed) -> bool:
        return any(pid != k.pid and cmd == k.cmdline for pid, cmd in node_cmdlines(self.fc, k.node).items())

    def _ready_since(self, since: float) -> bool:
        """Every Node Ready with a heartbeat at or after ``since`` (wall clock; the nodes share
        the host's): after a power cut the apiserver still holds the Ready=True written
        before it, until the node-monitor grace period runs out."""
        p = self.fc.kubectl("get", "nodes", "-o", "json")
        if p.returncode != 0:
            return False
        fresh = set()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(since)))
        for n in json.loads(p.stdout)["items"]:
            for c in n["status"].get("conditions", []):
                if c["type"] == "Ready" and c["status"] == "True" and c.get("lastHeartbeatTime", "") >= stamp:
                    fresh.add(n["metadata"]["name"])
        return fresh >= {n.ip for n in self.fc.lab.nodes}

    def broken(self, killed: tuple[Killed, ...] = (), fresh_since: float | None = None) -> str | None:
        """None when the stack is whole; else what is not (units, Nodes, killed processes).
        With ``fresh_since`` (wall clock), a Node counts as Ready only on a heartbeat since then."""
        names = [n.name for n in self.fc.lab.nodes]
        bad = [b for part in self.pool.map(lambda n: self._node(n, killed), names) for b in part]
        if not bad and not self.fc.all_ready():
            bad.append("not every Node is Ready")
        if not bad and fresh_since is not None and not self._ready_since(fresh_since):
            bad.append("not every Node has posted Ready since the cause was removed")
        return "; ".join(bad) or None

    def wait_whole(self, what: str, timeout: float) -> None:
        wait_for(what, lambda: self.broken() is None, timeout, 2)

    # -- one scenario's measurement
    def measure(self, scenario: str, t0: float, killed: tuple[Killed, ...] = (), detail: str = "",
                fresh: bool = False, shows: Iterable[tuple[str, str]] = ()) -> float:
        """Poll (no piprov up) from ``t0`` = cause removed (time.monotonic()) until whole; record and
        return the heal time. ``fresh``: nodes went down, so stale Ready conditions do not count.
        Then `piprov plan` must show no change and `piprov status` what happened (see
        :meth:`_status_problem`; ``shows``: the (node, unit)s the scenario surely failed)."""
        since = time.time() - (time.monotonic() - t0) if fresh else None
        last: str | None = "not polled yet"
        while time.monotonic() - t0 < self.bound_s:
            last = self.broken(killed, since)
            if last is None:
                break
            time.sleep(POLL_S)
        if last is not None:
            self._record(scenario, None, True, f"{detail} still down after {self.bound_s:.0f} s: {last}")
            self._restore()
            raise AssertionError(f"{scenario}: not healed without piprov within {self.bound_s:.0f} s: {last}")
        heal_s = time.monotonic() - t0
        # plan and status at once (neither takes the run lock): the check of status costs
        # the suite the time status takes beyond plan's, not all of it.
        planned = self.pool.submit(self.fc.piprov, "plan", "--no-diff")
        before = self.restarts()
        status = self.fc.piprov("status", "--json")
        problem = self._status_problem(status.stdout, before, self.restarts(), tuple(shows))
        plan = planned.result()
        self._record(scenario, heal_s, False, detail + ("" if plan.returncode == 0 else " plan NOT empty")
                     + (f" status: {problem}" if problem else ""))
        assert plan.returncode == 0, f"healed, but plan shows changes:\n{plan.stdout[-3000:]}{plan.stderr[-1000:]}"
        assert problem is None, f"healed, but `piprov status` does not show what happened: {problem}"
        return heal_s

    # -- what `piprov status` tells afterwards
    def restarts(self) -> dict[tuple[str, str], int]:
        """(node, unit) -> systemd's NRestarts, for every service piprov manages, read on the nodes."""
        def one(node: str) -> dict[tuple[str, str], int]:
            try:
                out = self.fc.lab.exec(node, RESTARTS_SH, check=False).stdout
            except LabError:
                return {}
            got: dict[tuple[str, str], int] = {}
            for block in out.split("\n\n"):
                props = dict(line.partition("=")[::2] for line in block.splitlines())
                if props.get("Id") and props.get("NRestarts", "").isdigit():
                    got[(node, props["Id"])] = int(props["NRestarts"])
            return got

        return {k: v for part in self.pool.map(one, [n.name for n in self.fc.lab.nodes]) for k, v in part.items()}

    def _status_problem(self, status_json: str, before: dict[tuple[str, str], int],
                        after: dict[tuple[str, str], int], shows: tuple[tuple[str, str], ...]) -> str | None:
        """What `status --json` gets wrong about the scenario, None when nothing.

        Every unit piprov manages, on every node, shows the restart count systemd has
        (NRestarts: after a reboot, the count of the new boot), read just before or just after
        status read its facts; each unit the scenario surely failed shows a restart, active
        again, and a last failure since the scenario began."""
        try:
            rows = {r["address"]: r for r in json.loads(status_json)["nodes"]}
        except (ValueError, KeyError, TypeError):
            return f"no status JSON: {status_json[-300:]!r}"
        units: dict[tuple[str, str], dict[str, Any]] = {}
        for n in self.fc.lab.nodes:
            for unit, h in rows.get(n.ip, {}).get("units", {}).items():
                units[(n.name, unit)] = h
        if not before and not after:
            return "no NRestarts read from any node"
        bad = []
        for key in sorted(set(before) | set(after)):
            shown = units.get(key, {}).get("restarts")
            if shown not in (before.get(key), after.get(key)):
                bad.append(f"{key[0]} {key[1]}: restarts {shown}, systemd says {before.get(key)}/{after.get(key)}")
        window = time.monotonic() - self.started + 1
        for key in shows:
            h = units.get(key, {})
            ago = h.get("last_failure_seconds_ago")
            if (h.get("restarts") or 0) < 1 or h.get("active") != "active" or ago is None or ago > window:
                bad.append(f"{key[0]} {key[1]}: failed in this scenario ({window:.0f} s), status shows {h}")
        return "; ".join(bad) or None

    def _record(self, scenario: str, heal_s: float | None, needed_piprov: bool, detail: str) -> None:
        FIGURES.heal[scenario] = {"heal_s": None if heal_s is None else round(heal_s, 1),
                                  "needed_piprov": needed_piprov, "detail": detail.strip()}

    def _restore(self) -> None:
        """The scenario failed: one `piprov up` so the next one starts from a whole cluster. Should
        even that leave a node broken (a start job hanging for ever is no drift to piprov), the
        nodes still broken are power-cycled and `up` runs once more: a baseline for the next
        scenario, noted in the figures."""
        p = self.fc.piprov("up")
        if p.returncode != 0:
            FIGURES.notes.append(f"heal restore: piprov up failed: {' '.join(p.stderr.split())[-300:]}")
        try:
            self.wait_whole("the cluster to be whole after the restoring piprov up", 90)
            return
        except AssertionError as e:
            FIGURES.notes.append(f"heal restore: piprov up did not make it whole: {str(e)[-300:]}")
        names = [n.name for n in self.fc.lab.nodes]
        for n in [n for n, bad in zip(names, self.pool.map(lambda n: self._node(n, ()), names)) if bad]:
            try:
                self.fc.lab.kill(n)
            except LabError:
                pass  # already off
            self.fc.lab.start(n)
        self.fc.piprov("up")
        self.wait_whole("the cluster to be whole after power-cycling the broken nodes and piprov up", 180)
