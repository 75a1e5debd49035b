"""`piprov lab replace` without root: the verb's surface and the key it reports (the lab test
in tests/lab/test_lab.py re-flashes a real node)."""

from __future__ import annotations

import base64
from pathlib import Path

import paramiko
from click.testing import CliRunner

from piprov.ssh.hostkeys import fingerprint
from piprov_lab import inventory
from piprov_lab.cli import lab
from piprov_lab.lab import NodeInfo
from piprov_lab.state import LabState
from piprov_lab.system import write_ssh_keypair


def test_replace_is_a_lab_verb_that_can_leave_the_node_off() -> None:
    result = CliRunner().invoke(lab, ["replace", "--help"])
    assert result.exit_code == 0 and "--no-start" in result.output and "forget-key" in result.output


def test_the_reported_fingerprint_is_piprovs(tmp_path: Path) -> None:
    kind, blob = write_ssh_keypair(tmp_path / "ssh_host_ed25519_key", "root@black-pearl").split()[:2]
    info = NodeInfo("pi1", "rpi-master", "10.0.0.11", "b8:27:eb:00:00:01", None, True, False, 0.0, 0.0, 1, "ns",
                    host_key=f"{kind} {blob}")
    assert info.host_key_fingerprint == fingerprint(paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))


def test_the_inventory_says_its_known_hosts_keeps_a_replaced_nodes_old_key() -> None:
    text = inventory.inventory_yaml("t", LabState(name="t", dir="/x", bridge_ip="10.231.1.1"), Path("/k"), Path("/kh"))
    assert "lab replace" in text and "forget-key" in text and "  known_hosts: /kh\n" in text
