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
