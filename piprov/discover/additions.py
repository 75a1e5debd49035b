"""Discovered hosts against the inventory: which node each already is, and `discover --add`'s plan.

Pure: nothing here writes. New Pis get planned names and only their
validated address and MAC; nothing an mDNS answer said reaches the inventory.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from piprov.discover.records import Host
from piprov.errors import DiscoveryError
from piprov.inventory.edit import NewNode, free_name
from piprov.inventory.schema import is_hostname_label
from piprov.inventory.model import Inventory


def inventory_match(host: Host, inv: Inventory | None) -> tuple[str | None, str | None]:
    """(node name, note) when the host is already in the inventory, by address or MAC."""
    if inv is None:
        return None, None
    for n in inv.nodes:
        if n.address == host.address or n.address in host.addresses:
            return n.name, None
    if host.mac:
        for n in inv.nodes:
            if n.mac and n.mac == host.mac:
                return n.name, f"address changed: inventory has {n.address}, the node answers from {host.address}"
    return None, None


def plan_additions(hosts: Sequence[Host], inv: Inventory, *, pattern: str = "rpi-node-{n}", role: str = "worker") -> list[NewNode]:
    """New Pis -> nodes to append, named by ``pattern`` with the next free numbers."""
    return plan_additions_why(hosts, inv, pattern=pattern, role=role)[0]


def plan_additions_why(
    hosts: Sequence[Host], inv: Inventory, *, pattern: str = "rpi-node-{n}", role: str = "worker"
) -> tuple[list[NewNode], list[tuple[str, str]]]:
    """New Pis -> nodes to append, and (host, why not) for each Pi that is not added.

    One host that cannot be added never holds back the others: each is
    decided on its own, and one whose address or MAC another addition
    already has is skipped, not allowed to make the inventory invalid.
    """
    if pattern.count("{n}") != 1 or re.search(r"\{(?!n\})", pattern):
        raise DiscoveryError(f"--name-pattern {pattern!r} must contain {{n}} exactly once", hint="e.g. rpi-node-{n}")
    used = [n.name for n in inv.nodes]
    new: list[NewNode] = []
    skipped: list[tuple[str, str]] = []
    for h in hosts:
        if not h.is_pi:
            continue
        node, _ = inventory_match(h, inv)
        why = _why_not(h, new, node)
        if why:
            skipped.append((h.hostname, why))
            continue
        name = free_name(pattern, used)
        if not is_hostname_label(name):
            raise DiscoveryError(f"--name-pattern {pattern!r} gives {name!r}, which is not a valid host name")
        used.append(name)
        new.append(NewNode(name=name, address=h.address, role=role, mac=h.mac))
    return new, skipped


def _why_not(h: Host, planned: Sequence[NewNode], node: str | None) -> str | None:
    if node is not None:
        return f"already in the inventory as {node}"
    if len([a for a in h.addresses if ipaddress.ip_address(a).version == 4]) != 1:
        return f"needs exactly one IPv4 address, it has {', '.join(h.addresses)}"
    for n in planned:
        if n.address == h.address or (h.mac and n.mac == h.mac):
            return f"same address or MAC as {n.name}, added just before it"
    return None
