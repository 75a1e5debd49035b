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
    if pattern.count("{n}") != 1 or re.search(r"\{(?!n\})", pattern):
        raise DiscoveryError(f"--name-pattern {pattern!r} must contain {{n}} exactly once", hint="e.g. rpi-node-{n}")
    used = [n.name for n in inv.nodes]
    new: list[NewNode] = []
    for h in hosts:
        if not h.is_pi or inventory_match(h, inv)[0] is not None:
            continue
        if len([a for a in h.addresses if ipaddress.ip_address(a).version == 4]) != 1:
            continue
        name = free_name(pattern, used)
        if not is_hostname_label(name):
            raise DiscoveryError(f"--name-pattern {pattern!r} gives {name!r}, which is not a valid host name")
        used.append(name)
        new.append(NewNode(name=name, address=h.address, role=role, mac=h.mac))
    return new
