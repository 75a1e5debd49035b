"""Export the inventory for other tools (today: Ansible), so users keep their playbooks."""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from piprov.inventory.model import Inventory, Node

FORMATS = ("ansible",)


def _ansible_host_vars(inv: Inventory, node: Node) -> dict[str, Any]:
    ssh = node.ssh
    hv: dict[str, Any] = {
        "ansible_host": node.address,
        "ansible_user": ssh.user,
        "ansible_port": ssh.port,
    }
    if ssh.identity_file:
        hv["ansible_ssh_private_key_file"] = ssh.identity_file
    # Same host-key rules as piprov: the pinned known_hosts, strict unless the
    # inventory asked for trust-on-first-use (OpenSSH's accept-new).
    checking = "yes" if ssh.host_key_policy == "strict" else "accept-new"
    hv["ansible_ssh_common_args"] = (
        f"-o UserKnownHostsFile={shlex.quote(str(inv.known_hosts))} -o StrictHostKeyChecking={checking}"
    )
    hv["ansible_ssh_timeout"] = int(ssh.connect_timeout)
    hv["piprov_role"] = node.role
    if node.arch:
        hv["piprov_arch"] = node.arch
    if node.labels:
        hv["piprov_labels"] = dict(node.labels)
    return hv


def to_ansible(inv: Inventory) -> str:
    """An Ansible YAML inventory: groups ``master`` and ``workers`` under ``all``."""

    def hosts(nodes: tuple[Node, ...]) -> dict[str, Any]:
        return {n.name: _ansible_host_vars(inv, n) for n in nodes}

    doc = {
        "all": {
            "vars": {"piprov_cluster": inv.cluster_name},
            "children": {
                "master": {"hosts": hosts((inv.master,))},
                "workers": {"hosts": hosts(inv.workers)},
            },
        }
    }
    header = f"# Ansible inventory exported by `piprov inventory export` from {inv.path}.\n# Edit that file, not this one.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def export(inv: Inventory, fmt: str) -> str:
    if fmt == "ansible":
        return to_ansible(inv)
    from piprov.errors import InventoryError

    raise InventoryError(f"unknown export format {fmt!r}", hint=f"formats: {', '.join(FORMATS)}")
