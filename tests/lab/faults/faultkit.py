"""Helpers and figures for the fault suite (issue 9); fixtures in conftest.py.

``faults`` (module scope) is ONE 3-node lab for the whole module, provisioned
once by a cold `piprov up`; scenarios run in file order and each ends with
:meth:`FaultCluster.converge`: one more `piprov up` that must succeed, then
the checks that nothing was lost (plan empty, no temp files on any node,
inventory as the test left it, every node Ready, etcd's data there).

The suite's figures (scenarios run/passed, partial files, lost inventory
edits, tracebacks) are printed at the end of the session and written as JSON
to ``$PIPROV_FAULTS_REPORT`` when set (bench/faults.py reads it).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import PIPROV, kubeconfig_of, wait_for

from piprov_lab.errors import LabError
from piprov_lab.lab import Lab

TRACEBACK = "Traceback (most recent call last)"
NETWORK_KEY = "/coreos.com/network/config"
# Where piprov writes on a node; temp files of an interrupted write would be here.
MANAGED_DIRS = "/etc/systemd/system /etc/kubernetes /etc /boot /etc/ssh /etc/ssh/sshd_config.d /home/pirate/.ssh"


@dataclass
class Figures:
    scenarios: dict[str, str] = field(default_factory=dict)  # nodeid -> passed/failed/skipped
    partial_files: int = 0
    lost_inventory_edits: int = 0
    tracebacks: int = 0
    piprov_runs: int = 0
    notes: list[str] = field(default_factory=list)
    # heal suite (issue 18): scenario -> {"heal_s": seconds or None, "needed_piprov": bool, "detail": str}
    heal: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        vals = list(self.scenarios.values())
        return {
            "scenarios_run": len(vals),
            "passed": vals.count("passed"),
            "failed": vals.count("failed"),
            "skipped": vals.count("skipped"),
            "partial_files": self.partial_files,
            "lost_inventory_edits": self.lost_inventory_edits,
            "tracebacks": self.tracebacks,
            "piprov_runs": self.piprov_runs,
            "scenarios": self.scenarios,
            "notes": self.notes,
            "heal": self.heal,
            "heal_needed_piprov": sum(1 for h in self.heal.values() if h["needed_piprov"]),
        }


FIGURES = Figures()


class Background:
    """A `piprov` process running while the test breaks something; stderr read live."""

    def __init__(self, argv: list[str], env: dict[str, str] | None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._out = ""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_line(self, fragment: str, timeout: float = 60) -> None:
        wait_for(f"{fragment!r} in piprov's output", lambda: any(fragment in ln for ln in self.lines)
                 or self.proc.poll() is not None, timeout, 0.02)
        assert any(fragment in ln for ln in self.lines), "".join(self.lines)

    def finish(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        out, _ = self.proc.communicate(timeout=timeout)
        self._t.join(timeout=5)
        return _record(subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out or "",
                                                   "".join(self.lines)))


def _record(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    FIGURES.piprov_runs += 1
    if TRACEBACK in p.stdout or TRACEBACK in p.stderr:
        FIGURES.tracebacks += 1
    return p


class FaultCluster:
    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.dir = workdir
        self.inventory = workdir / "inventory.yaml"
        # Our own copy of the pinned host keys: forget-key must not touch the lab's.
        self.known_hosts = workdir / "known_hosts"
        self.known_hosts.write_bytes(lab.known_hosts.read_bytes())
        text = "".join(
            f"  known_hosts: {self.known_hosts}\n" if ln.startswith("  known_hosts:") else ln
            for ln in lab.inventory_yaml().splitlines(keepends=True)
        )
        self.inventory.write_text(text)
        self.expected_inventory = text
        self.master_ip = lab.nodes[0].ip
        self.api = f"https://{self.master_ip}:6443"
        self.kube_cache = workdir / "kube-cache"

    # -- running piprov
    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PIPROV_SSH_PASSWORD"}
        env.update(extra or {})
        return env

    def piprov(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None,
               inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
        return _record(subprocess.run([*PIPROV, *args, "-i", str(inventory or self.inventory)], capture_output=True,
                                      text=True, timeout=timeout, env=self.env(env), stdin=subprocess.DEVNULL))

    def background(self, *args: str, env: dict[str, str] | None = None) -> Background:
        return Background([*PIPROV, *args, "-i", str(self.inventory)], self.env(env))

    def edit_inventory(self, *args: str) -> None:
        """An edit through the CLI; the suite then expects it in the file forever."""
        p = self.piprov("inventory", "set", *args)
        assert p.returncode == 0, p.stderr
        self.expected_inventory = self.inventory.read_text()

    # -- looking at the cluster
    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        kc = kubeconfig_of(self.inventory, self.dir / "kubeconfig")
        return subprocess.run(self.lab.kubectl_argv(kc, self.kube_cache, *args),
                              capture_output=True, text=True, timeout=60)

    def all_ready(self) -> bool:
        p = self.kubectl("get", "nodes", "-o", "json")
        if p.returncode != 0:
            return False
        ready = set()
        for n in json.loads(p.stdout)["items"]:
            conds = {c["type"]: c["status"] for c in n["status"].get("conditions", [])}
            if conds.get("Ready") == "True":
                ready.add(n["metadata"]["name"])
        return ready >= {n.ip for n in self.lab.nodes}

    def sha(self, node: str, path: str) -> str:
        return self.lab.exec(node, f"sha256sum {path} 2>/dev/null | cut -c1-64 || true").stdout.strip()

    def temp_files(self) -> dict[str, list[str]]:
        """Leftovers of interrupted writes on every node (piprov's temp files, cut uploads)."""
        found = {}
        for n in self.lab.nodes:
            out = self.lab.exec(n.name, f"for d in {MANAGED_DIRS}; do ls -A $d 2>/dev/null | "
                                "sed -n \"s|^\\.piprov-tmp\\..*|$d/&|p\"; done; ls /tmp/piprov-apply.* 2>/dev/null; "
                                "true").stdout.split()
            if out:
                found[n.name] = out
        return found

    def etcd_network(self) -> str:
        return self.lab.exec("pi1", self.lab.etcdctl + f"get {NETWORK_KEY}", check=False).stdout

    # -- the end of every scenario
    def converge(self, *, up_args: tuple[str, ...] = (), ready: bool = True) -> None:
        """One more `piprov up` converges, and nothing was lost."""
        p = self.piprov("up", *up_args)
        assert p.returncode == 0, p.stderr[-4000:]
        plan = self.piprov("plan", "--no-diff")
        assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-2000:]
        leftovers = self.temp_files()
        FIGURES.partial_files += sum(len(v) for v in leftovers.values())
        assert not leftovers, f"temp files left behind: {leftovers}"
        if self.inventory.read_text() != self.expected_inventory:
            FIGURES.lost_inventory_edits += 1
            raise AssertionError("the inventory is not what the last edit left")
        assert "10.0.0.0/16" in self.etcd_network()
        if ready:
            wait_for("every node Ready", self.all_ready, 180, 2)


K8S_CONF = "/etc/kubernetes/k8s.conf"


def drift(fc: FaultCluster, node: str, tag: str = "drift") -> tuple[str, str]:
    """Hand-edit the node's k8s.conf (so `up` has a write + restart to do); return (desired, drifted) sha."""
    desired = fc.sha(node, K8S_CONF)
    fc.lab.exec(node, f"echo '# {tag} {time.time()}' >> {K8S_CONF}")
    return desired, fc.sha(node, K8S_CONF)


class EtcdBlocked:
    """``with EtcdBlocked(fc, node):`` the node cannot reach the master's etcd, so its
    flannel health gate holds `up` in the middle of its apply for as long as we like."""

    def __init__(self, fc: FaultCluster, node: str) -> None:
        self.fc, self.node = fc, node
        self.rule = f"OUTPUT -d {fc.master_ip} -p tcp --dport 4001 -j REJECT"

    def __enter__(self) -> EtcdBlocked:
        self.fc.lab.exec(self.node, f"iptables -I {self.rule}")
        return self

    def unblock(self) -> None:
        # The rule lives in the node's network namespace, which outlives a power cut.
        self.fc.lab.exec(self.node, f"while iptables -D {self.rule} 2>/dev/null; do :; done")

    def __exit__(self, *exc: object) -> None:
        try:
            self.unblock()
        except LabError:
            pass  # the node is off (power cut): unblock() again once it is back


def lock_holder_pid(fc: FaultCluster) -> int | None:
    lock = fc.inventory.with_name(fc.inventory.name + ".up.lock")
    try:
        return int(json.loads(lock.read_text() or "{}").get("pid", 0)) or None
    except (OSError, ValueError):
        return None


def shim(fc: FaultCluster, node: str, program: str, body: str) -> None:
    """Put a wrapper for ``program`` in /usr/local/bin (first in the PATH of SSH and sudo)."""
    fc.lab.put_file(node, f"/usr/local/bin/{program}", "#!/bin/sh\n" + body, mode=0o755)


def unshim(fc: FaultCluster, node: str, program: str) -> None:
    fc.lab.exec(node, f"rm -f /usr/local/bin/{program}")
