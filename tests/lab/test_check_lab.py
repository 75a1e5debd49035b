"""`piprov check --json` against real lab nodes (issue #14): the records parse, the facts are the node's, nothing changes.

A 2-node lab of its own (pi1 = rpi-master, pi2 = rpi-node-1), never provisioned:
the check is a preflight, it needs no `up`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from labkit import PIPROV

from piprov_lab.lab import Lab

pytestmark = pytest.mark.lab

# What the check could touch: the fsync dirs' entries, and any file under /etc, /boot or /var/lib.
SNAPSHOT = ("ls -a /var/lib /var/lib/kubernetes 2>/dev/null; "
            "find /etc /boot /var/lib -xdev -type f -newer /run/piprov-check-mark -print 2>/dev/null")


@pytest.fixture(scope="module")
def check_lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory("check", nodes=2)


def test_check_json_reads_each_node_and_changes_nothing(check_lab: Lab, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(check_lab.inventory_yaml())
    before = {}
    for n in check_lab.nodes:
        check_lab.exec(n.name, "touch /run/piprov-check-mark && sleep 1.1")
        before[n.name] = check_lab.exec(n.name, SNAPSHOT).stdout
    p = subprocess.run([*PIPROV, "check", "--json", "-i", str(inventory)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode in (0, 3), p.stderr  # judged, whatever the findings: no node left unchecked
    doc = json.loads(p.stdout)
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert list(nodes) == ["rpi-master", "rpi-node-1"]
    for name, lab_node in zip(nodes, check_lab.nodes):
        node = nodes[name]
        assert node["error"] is None, node["error"]
        facts = node["facts"]
        hostname = check_lab.exec(lab_node.name, "uname -n").stdout.strip()
        assert facts["hostname"] == hostname and facts["machine"] == "x86_64"
        assert facts["userland"] == "amd64" and facts["userland_bits"] == 64
        assert facts["os_id"] == "debian" and facts["versions"]["docker"] and facts["versions"]["systemd"]
        assert facts["hierarchy"] in ("v1", "hybrid", "v2") and facts["memory_effective"] is not None
        assert abs(facts["skew"]) < 5  # the lab's nodes share this machine's clock
        assert facts["disks"]["root"]["size_kb"] > 0
        assert facts["fsync"]["directory"] in ("/var/lib/kubernetes", "/var/lib")
        assert len(facts["fsync"]["writes_ms"]) == 5
        codes = {f["code"]: f for f in node["findings"]}
        assert set(codes) >= {"os", "arch", "cgroup.memory", "swap", "iptables", "versions", "clock", "disk.root",
                              "power", "fsync"}
        assert codes["clock"]["severity"] == "ok" and codes["arch"]["severity"] == "ok"
        for f in node["findings"]:
            assert f["severity"] == "ok" or (f["breaks"] and f["fix"]), f
        # Read-only: the fsync dirs hold what they held, no file under /etc, /boot or /var/lib was written.
        assert check_lab.exec(lab_node.name, SNAPSHOT).stdout == before[lab_node.name]
    assert "PRIVATE KEY" not in p.stdout


def test_up_refuses_a_worker_the_cheap_checks_fail_and_builds_the_master(check_lab: Lab, tmp_path: Path) -> None:
    """`up` runs the cheap checks itself (issue #14): a worker whose firmware says under-voltage is refused,
    nothing is written there, the master converges. After the read-only test above: it provisions."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(check_lab.inventory_yaml())
    master, worker = (n.name for n in check_lab.nodes)
    # An under-powered Pi's firmware, where HypriotOS keeps it (the check's second vcgencmd, outside sudo's PATH).
    check_lab.exec(worker, "mkdir -p /opt/vc/bin && printf '#!/bin/sh\\necho throttled=0x50005\\n' "
                   "> /opt/vc/bin/vcgencmd && chmod 755 /opt/vc/bin/vcgencmd && touch /run/piprov-up-mark && sleep 1.1")
    try:
        p = subprocess.run([*PIPROV, "up", "--json", "--health-timeout", "60", "-i", str(inventory)],
                           capture_output=True, text=True, timeout=300)
        written = check_lab.exec(worker, "find /etc /boot /var/lib/kubernetes -xdev -newer /run/piprov-up-mark "
                                 "-print 2>/dev/null; ls /etc/systemd/system").stdout
    finally:
        check_lab.exec(worker, "rm -f /opt/vc/bin/vcgencmd")
    assert p.returncode == 1, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    refused = doc["checks"]["rpi-node-1"]
    assert refused["refused"] is True
    power = next(f for f in refused["findings"] if f["code"] == "power")
    assert power["severity"] == "fail" and "under-voltage" in power["breaks"] and "power supply" in power["fix"]
    assert "rpi-node-1: refused by the preflight check: power and throttling (power)" in doc["plan_errors"]["rpi-node-1"]
    assert "✗ rpi-node-1: refused by the preflight check" in p.stderr and "--skip-checks" in p.stderr
    steps = {(s["node"], s["component"]): s["status"] for s in doc["steps"]}
    assert {st for (n, _), st in steps.items() if n == "rpi-master"} == {"changed"}, p.stderr[-3000:]
    assert {st for (n, _), st in steps.items() if n == "rpi-node-1"} <= {"failed", "skipped"}
    assert doc["checks"]["rpi-master"]["refused"] is False
    # Nothing was written on the refused worker: no file, no piprov unit.
    assert not [ln for ln in written.splitlines() if ln.startswith(("k8s-", "piprov-", "docker-bootstrap", "/"))], written
    assert "PRIVATE KEY" not in p.stdout + p.stderr
