"""`inventory export --format ansible`, parsed back by ansible-core when it is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from piprov.inventory import load
from piprov.inventory.export import to_ansible

EXAMPLE = Path(__file__).parents[2] / "inventory.example.yaml"


def test_ansible_yaml_shape() -> None:
    doc = yaml.safe_load(to_ansible(load(EXAMPLE)))
    children = doc["all"]["children"]
    assert list(children["master"]["hosts"]) == ["rpi-master"]
    assert list(children["workers"]["hosts"]) == ["rpi-node-1", "rpi-node-2"]
    n2 = children["workers"]["hosts"]["rpi-node-2"]
    assert n2["ansible_host"] == "192.0.2.102" and n2["ansible_port"] == 2222
    assert n2["ansible_user"] == "pirate"
    assert n2["ansible_ssh_private_key_file"].endswith("/.ssh/id_ed25519")
    assert "StrictHostKeyChecking=yes" in n2["ansible_ssh_common_args"]


def test_parsed_by_ansible_core(tmp_path: Path) -> None:
    pytest.importorskip("ansible")
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    out = tmp_path / "hosts.yaml"
    out.write_text(to_ansible(load(EXAMPLE)))
    im = InventoryManager(loader=DataLoader(), sources=[str(out)])
    assert sorted(h.name for h in im.get_hosts("workers")) == ["rpi-node-1", "rpi-node-2"]
    assert [h.name for h in im.get_hosts("master")] == ["rpi-master"]
    hv = im.get_host("rpi-node-2").get_vars()
    assert hv["ansible_host"] == "192.0.2.102"
    assert hv["ansible_port"] == 2222
    assert hv["piprov_arch"] == "aarch64"
