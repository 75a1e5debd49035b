#!/usr/bin/env python3
"""Node-side cost of a no-op: CPU time and processes on each node, piprov beside pyinfra and ansible-core.

    sudo .venv/bin/python bench/nodecost.py                      # 3 nodes, --cpu-quota 10, 4 no-ops each
    sudo .venv/bin/python bench/nodecost.py --cpu-quota 25 --tools piprov,pyinfra --noops 5

For every tool, as bench/run.py does: fresh lab nodes (here capped at --cpu-quota percent of one
core each), the same deploy (bench/peers/), one cold run, then the no-ops; python3 first into the
nodes for Ansible (not measured). Around every run the bench reads each node from the HOST, so the
reading itself starts no process inside the node:

- CPU, whole node: the node's cgroup's cpuacct.usage (the lab puts each node in a cpu and cpuacct
  cgroup of its own, which its systemd, sshd and dockerd cannot leave: cgroup namespace). It
  includes what daemons do for the tool (systemd answering `systemctl`, dockerd answering `docker`)
  and the node's own background (kubelet, etcd, flannel...): an idle window before the no-ops and
  one after give the background rate, subtracted as rate x window ("net").
- CPU, the tool's sessions, exact: everything started over SSH descends from sshd's listener
  (ssh.service's main process). A process's CPU moves into its parent's cutime/cstime when it is
  reaped, so the listener's cutime + cstime plus the own + reaped CPU of its descendants still alive
  (a ControlPersist connection kept open) counts every SSH session's CPU once, background excluded
  (but not what daemons do on the tool's behalf).
- Processes: BSD process accounting (acct(2)) switched on inside the node's PID namespace only: the
  kernel writes one record per process that exits (threads are not counted; exec is not a new
  process), with its pid and parent pid as the node sees them and its command name. Records of the
  window plus processes alive at its end that were not at its start = processes started. Those
  whose parent chain reaches sshd's listener are the tool's ("forks"); the rest are background.
  (The pid cursor of the node's PID namespace, /proc/loadavg's last field read inside it, would
  count threads too and cannot tell the tool's processes from kubelet's; a cgroup's task list
  shows only the processes alive when it is read.)

Writes bench/results/nodecost-<UTC time>.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lib  # noqa: E402

TOOLS = ["piprov", "pyinfra", "ansible-tuned"]
TICK = os.sysconf("SC_CLK_TCK")
# struct acct_v3 (linux/acct.h): flag, version, tty, exitcode, uid, gid, pid, ppid, btime,
# etime (float), utime, stime, mem, io, rw, minflt, majflt, swaps (comp_t), comm[16]: 64 bytes.
ACCT_V3 = struct.Struct("<BBHIIIIIIf8H16s")
SETTLE = 1.5  # after a run: sshd reaps the connection's processes (slower on a throttled node)
IDLE = 12.0  # each idle window (background rate), one before the no-ops and one after


@dataclass(frozen=True)
class Proc:
    """A process of the node as the host's /proc shows it (CPU in clock ticks)."""

    host_pid: int
    ns_pid: int
    host_ppid: int
    start: int
    comm: str
    own: int  # utime + stime
    reaped: int  # cutime + cstime: its children's, once it has waited for them


def parse_acct(data: bytes) -> list[tuple[int, int, str]]:
    """(pid, ppid, comm) of each acct v3 record; a torn last record is left for the next read."""
    out = []
    for off in range(0, len(data) - ACCT_V3.size + 1, ACCT_V3.size):
        f = ACCT_V3.unpack_from(data, off)
        if f[1] & 0x7F != 3:
            raise ValueError(f"acct record at {off} is version {f[1] & 0x7f}, not 3")
        out.append((f[6], f[7], f[-1].split(b"\0", 1)[0].decode(errors="replace")))
    return out


def parse_stat(text: str) -> tuple[str, int, int, int, int]:
    """(comm, ppid, own ticks, reaped ticks, start time) from /proc/PID/stat."""
    comm = text[text.index("(") + 1 : text.rindex(")")]
    f = text[text.rindex(")") + 2 :].split()
    return comm, int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]), int(f[19])


def ns_pid(status: str) -> int:
    """The innermost pid of /proc/PID/status's NSpid line (the pid the node sees)."""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise ValueError("no NSpid line")


def reaches(pid: int, root: int, parents: dict[int, int]) -> bool:
    """True when ``root`` is ``pid`` or one of its ancestors by ``parents`` (pid -> parent pid)."""
    seen = set()
    while pid not in seen:
        if pid == root:
            return True
        seen.add(pid)
        if pid not in parents:
            return False
        pid = parents[pid]
    return False


def session_ticks(procs: dict[int, Proc], listener: int) -> int:
    """CPU of everything under the listener: its reaped children plus the live descendants' own + reaped."""
    parents = {p.host_pid: p.host_ppid for p in procs.values()}
    total = procs[listener].reaped
    for p in procs.values():
        if p.host_pid != listener and reaches(p.host_pid, listener, parents):
            total += p.own + p.reaped
    return total


def window_processes(records: list[tuple[int, int, str]], before: dict[int, Proc], after: dict[int, Proc],
                     listener_ns: int) -> dict[str, Any]:
    """Processes started in a window (records + new live ones), and how many of them descend from sshd."""
    started_live = [p for k, p in after.items() if k not in before or before[k].start != p.start]
    host_to_ns = {p.host_pid: p.ns_pid for p in (*before.values(), *after.values())}
    parents = {p.ns_pid: host_to_ns.get(p.host_ppid, 0) for p in (*before.values(), *after.values())}
    parents.update({pid: ppid for pid, ppid, _ in records})
    started = [(pid, comm) for pid, _, comm in records] + [(p.ns_pid, p.comm) for p in started_live]
    mine = [(pid, comm) for pid, comm in started if reaches(pid, listener_ns, parents)]
    return {"all": len(started), "sessions": len(mine), "commands": dict(Counter(c for _, c in mine).most_common())}


class NodeProbe:
    """Reads one node's accounting from the host; switches process accounting on in its PID namespace."""

    def __init__(self, lab: Any, node: str) -> None:
        self.node = node
        self.machine = f"{lab.name}-{node}"
        pid1 = lab.node(node).pid1
        assert pid1 is not None, f"{node} is not running"
        self.pid1 = pid1
        self.pidns = os.readlink(f"/proc/{pid1}/ns/pid")
        self.acct = lib.WORK / f"acct-{self.machine}"
        from piprov_lab.system import node_cgroup

        acct_cg, cpu_cg = node_cgroup(self.machine, "cpuacct"), node_cgroup(self.machine, "cpu")
        assert acct_cg is not None and cpu_cg is not None, "no cgroup v1 cpu/cpuacct hierarchy"
        self.usage, self.cpu_stat = acct_cg / "cpuacct.usage", cpu_cg / "cpu.stat"

    def _acct(self, path: Path | None) -> None:
        # nsenter forks the interpreter into the node's PID namespace (the host's mounts and
        # files): acct() applies to the caller's PID namespace and those below it.
        code = ("import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True)\n"
                "arg = sys.argv[1].encode() if len(sys.argv) > 1 else None\n"
                "sys.exit(0 if libc.acct(arg) == 0 else 'acct: ' + os.strerror(ctypes.get_errno()))")
        subprocess.run(["nsenter", "-t", str(self.pid1), "-p", "--", sys.executable, "-c", code,
                        *([str(path)] if path else [])], check=True, capture_output=True, text=True)

    def acct_on(self) -> None:
        self.acct.parent.mkdir(parents=True, exist_ok=True)
        self.acct.write_bytes(b"")
        self._acct(self.acct)

    def acct_off(self) -> None:
        self._acct(None)

    def procs(self) -> dict[int, Proc]:
        out = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{d}/ns/pid") != self.pidns:
                    continue
                comm, ppid, own, reaped, start = parse_stat(Path(f"/proc/{d}/stat").read_text())
                nsp = ns_pid(Path(f"/proc/{d}/status").read_text())
            except (OSError, ValueError):
                continue  # gone while we read it
            out[int(d)] = Proc(int(d), nsp, ppid, start, comm, own, reaped)
        return out

    def listener(self, procs: dict[int, Proc]) -> Proc:
        found = [p for p in procs.values() if p.comm == "sshd" and p.host_ppid == self.pid1]
        assert len(found) == 1, f"{self.node}: sshd listeners {found}"
        return found[0]

    def snap(self) -> dict[str, Any]:
        procs = self.procs()
        stat = dict(line.split() for line in self.cpu_stat.read_text().splitlines())
        return {"t": time.monotonic(), "usage": int(self.usage.read_text()), "throttled": int(stat["throttled_time"]),
                "procs": procs, "acct": self.acct.stat().st_size}

    def cost(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        la, lb = self.listener(a["procs"]), self.listener(b["procs"])
        assert la.host_pid == lb.host_pid, f"{self.node}: sshd restarted in the window"
        with open(self.acct, "rb") as f:
            f.seek(a["acct"])
            records = parse_acct(f.read(b["acct"] - a["acct"]))
        forks = window_processes(records, a["procs"], b["procs"], lb.ns_pid)
        return {
            "window": round(b["t"] - a["t"], 3),
            "cgroup_cpu": round((b["usage"] - a["usage"]) / 1e9, 4),
            "throttled": round((b["throttled"] - a["throttled"]) / 1e9, 3),
            "session_cpu": round((session_ticks(b["procs"], lb.host_pid) - session_ticks(a["procs"], la.host_pid))
                                 / TICK, 3),
            "forks": forks["sessions"], "forks_all": forks["all"], "commands": forks["commands"],
        }


def measured(probes: list[NodeProbe], fn: Any) -> tuple[Any, dict[str, Any]]:
    a = {p.node: p.snap() for p in probes}
    out = fn()
    time.sleep(SETTLE)
    b = {p.node: p.snap() for p in probes}
    return out, {p.node: p.cost(a[p.node], b[p.node]) for p in probes}


def idle(probes: list[NodeProbe]) -> dict[str, Any]:
    return measured(probes, lambda: time.sleep(IDLE - SETTLE))[1]


def net(run: dict[str, Any], background: dict[str, dict[str, float]]) -> None:
    """Each node's CPU and processes net of its background rate over the run's window."""
    for node, c in run["node"].items():
        bg = background[node]
        c["cpu_net"] = round(c["cgroup_cpu"] - bg["cpu_per_s"] * c["window"], 4)
        c["forks_all_net"] = round(c["forks_all"] - bg["forks_all_per_s"] * c["window"], 1)


def rates(windows: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for w in windows:
        for node, c in w.items():
            r = out.setdefault(node, {"seconds": 0.0, "cpu": 0.0, "forks_all": 0.0, "forks": 0.0})
            r["seconds"] += c["window"]
            r["cpu"] += c["cgroup_cpu"]
            r["forks_all"] += c["forks_all"]
            r["forks"] += c["forks"]
    return {node: {"cpu_per_s": round(r["cpu"] / r["seconds"], 5),
                   "forks_all_per_s": round(r["forks_all"] / r["seconds"], 3),
                   "session_forks_idle": r["forks"]} for node, r in out.items()}


def cap(lab: Any, pct: int) -> None:
    from piprov_lab.system import set_cpu_quota

    for n in lab.nodes:
        set_cpu_quota(f"{lab.name}-{n.name}", pct)


def bench_tool(lab_name: str, tool: str, nodes: int, quota: int, noops: int, cold_uncapped: bool) -> dict[str, Any]:
    lab, inv = lib.fresh_lab(lab_name, nodes, 0, cpu_quota_pct=quota)
    spec = lib.write_peer_files(lab, inv, [tool])
    rec: dict[str, Any] = {"tool": tool, "nodes": nodes, "cpu_quota_pct": quota,
                           "cold_cpu_quota_pct": 0 if cold_uncapped else quota,
                           "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if tool.startswith("ansible"):
        # Not measured (as in bench/run.py): the cap is lifted meanwhile, dpkg at 10% takes minutes.
        cap(lab, 0)
        rec["python_install_seconds"] = round(lib.install_python(lab), 2)
        cap(lab, quota)
    if cold_uncapped:
        cap(lab, 0)
    probes = [NodeProbe(lab, n.name) for n in lab.nodes]
    for p in probes:
        p.acct_on()
    try:
        c = lib.cursors(lab)
        cold, rec["cold_node"] = measured(probes, lambda: lib.run_tool(tool, lab, inv, spec))
        after = lib.wait_ready(lab, 300)
        cold["ready_seconds"] = None if after is None else round(cold["wall"] + after, 3)
        cold["ssh"] = lib.ssh_counts(lab, c)
        rec["cold"] = cold
        # A throttled node may miss a tool's own timeouts on the first run: runs again until one
        # succeeds (at most 2, recorded), so the no-ops below are no-ops of a converged cluster.
        rec["converge"] = []
        while not (rec["converge"][-1] if rec["converge"] else cold)["ok"] and len(rec["converge"]) < 2:
            rec["converge"].append(lib.run_tool(tool, lab, inv, spec))
            lib.wait_ready(lab, 300)
        if cold_uncapped:
            cap(lab, quota)
        rec["idle"] = [idle(probes)]
        rec["noop"] = []
        for _ in range(noops):
            c = lib.cursors(lab)
            r, r["node"] = measured(probes, lambda: lib.run_tool(tool, lab, inv, spec))
            r["ssh"] = lib.ssh_counts(lab, c)
            rec["noop"].append(r)
        rec["idle"].append(idle(probes))
    finally:
        for p in probes:
            p.acct_off()
    rec["background"] = rates(rec["idle"])
    for r in rec["noop"]:
        net(r, rec["background"])
    print(line(rec), flush=True)
    if not (cold["ok"] and all(r["ok"] for r in rec["noop"])):
        print((cold.get("error") or next((r.get("error") for r in rec["noop"] if not r["ok"]), ""))[-1500:])
    return rec


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def per_noop(rec: dict[str, Any], key: str) -> float:
    """Median over the no-ops of the per-node mean of ``key``."""
    return med([statistics.mean(c[key] for c in r["node"].values()) for r in rec["noop"]])


def line(rec: dict[str, Any]) -> str:
    ok = rec["cold"]["ok"] and all(r["ok"] for r in rec["noop"])
    return (f"  {rec['tool']:14} N={rec['nodes']} quota {rec['cpu_quota_pct']}%: cold {rec['cold']['wall']:.1f} s, "
            f"no-op {med([r['wall'] for r in rec['noop']]):.2f} s, per node: CPU net {per_noop(rec, 'cpu_net'):.3f} s "
            f"(sessions {per_noop(rec, 'session_cpu'):.3f} s), forks {per_noop(rec, 'forks'):.0f}"
            f"{'' if ok else '  FAILED'}")


def table(doc: dict[str, Any]) -> str:
    rows = ["| tool | no-op wall (s), median (min–max) | node CPU per no-op, per node (s): net of background "
            "· SSH sessions | processes per no-op, per node: from SSH · all, net | throttled per node (s) |",
            "|---|---|---|---|---|"]
    for rec in doc["records"]:
        w = [r["wall"] for r in rec["noop"]]
        rows.append(f"| {rec['tool']} | {med(w):.2f} ({min(w):.2f}–{max(w):.2f}) | "
                    f"{per_noop(rec, 'cpu_net'):.3f} · {per_noop(rec, 'session_cpu'):.3f} | "
                    f"{per_noop(rec, 'forks'):.0f} · {per_noop(rec, 'forks_all_net'):.0f} | "
                    f"{per_noop(rec, 'throttled'):.2f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--cpu-quota", type=int, default=10, help="percent of one core per node (0: no cap)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--noops", type=int, default=4)
    ap.add_argument("--ansible-noops", type=int, default=1,
                    help="no-ops for ansible-*: each takes minutes on a capped node (a Python module per task)")
    ap.add_argument("--lab", default=os.environ.get("PIPROV_LAB", "nodecost"))
    ap.add_argument("--cold-uncapped", action="store_true",
                    help="the cold run (and any converging run) without the cap; the no-ops with it")
    ap.add_argument("--into", type=Path, metavar="RESULTS_JSON", help="add the records to this earlier run")
    a = ap.parse_args()
    lib.prepare()
    started = dt.datetime.now(dt.timezone.utc)
    out = a.into.resolve() if a.into else (
        Path(__file__).resolve().parent / "results" / f"nodecost-{started:%Y%m%dT%H%M%SZ}.json")
    doc: dict[str, Any] = json.loads(out.read_text()) if a.into else {
        "started": started.isoformat(timespec="seconds"), "versions": lib.versions(),
        "nodes": a.nodes, "cpu_quota_pct": a.cpu_quota, "records": []}
    doc.setdefault("sittings", []).append({"started": started.isoformat(timespec="seconds"), "tools": a.tools,
                                           "cold_uncapped": a.cold_uncapped})
    t0 = time.monotonic()
    try:
        for tool in a.tools.split(","):
            doc["records"].append(bench_tool(a.lab, tool, a.nodes, a.cpu_quota,
                                             a.ansible_noops if tool.startswith("ansible") else a.noops,
                                             a.cold_uncapped))
            doc["seconds"] = round(doc.get("seconds", 0) + time.monotonic() - t0, 1)
            t0 = time.monotonic()
            out.write_text(json.dumps(doc, indent=1))
    finally:
        from piprov_lab.lab import Lab

        Lab(a.lab).down()
    print(f"results: {out} ({time.monotonic() - t0:.0f} s)")
    print(table(doc))


if __name__ == "__main__":
    main()
