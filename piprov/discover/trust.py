"""What an answer claims against what the controller can see: its own addresses, the neighbour table.

Pure. Any device can announce any name, address and MAC; these checks need
nothing from the answer to be true:

- an address of the controller itself is never a node (``up`` would
  provision this machine);
- several names on one address are one device, whatever it calls itself:
  flagged once, none of them passes (which name is the Pi cannot be known);
- a MAC claimed in a ``_workstation._tcp`` name must be the one the address
  answers ARP with; no ARP answer at all means nothing holds the address;
- a host that announced no MAC gets the one the neighbour table has, and is
  classified by it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from piprov.discover.lan import Neighbour
from piprov.discover.pi import classify
from piprov.discover.records import Host, Rejected


def vet(
    hosts: Sequence[Host], *, own: Collection[str], neighbours: Mapping[str, Neighbour] | None
) -> tuple[list[Host], list[Rejected]]:
    """The hosts that pass, with the MAC the LAN confirms; the rest rejected with the reason.

    ``neighbours`` None: no neighbour table on this system; the hosts pass
    with a warning that their MAC is unchecked.
    """
    rejected: list[Rejected] = []
    keep: list[Host] = []
    for h in hosts:
        mine = sorted(a for a in h.addresses if a in own)
        if mine:
            rejected.append(Rejected(h.hostname, f"answers with this machine's own address {', '.join(mine)}: not a node"))
        else:
            keep.append(h)
    keep, shared = _one_name_per_address(keep)
    rejected.extend(shared)
    passed: list[Host] = []
    for h in keep:
        one = _check_mac(h, neighbours)
        (rejected if isinstance(one, Rejected) else passed).append(one)  # type: ignore[arg-type]
    return passed, rejected


def _one_name_per_address(hosts: Sequence[Host]) -> tuple[list[Host], list[Rejected]]:
    names: dict[str, list[str]] = {}
    for h in hosts:
        for a in h.addresses:
            names.setdefault(a, []).append(h.hostname)
    crowded = {a: ns for a, ns in names.items() if len(ns) > 1}
    rejected = [
        Rejected(a, f"{len(ns)} names on one address ({', '.join(sorted(ns))}): one device claiming several names; "
                    "none of them is taken")
        for a, ns in sorted(crowded.items(), key=lambda kv: ipaddress.ip_address(kv[0]))
    ]  # fmt: skip
    return [h for h in hosts if not any(a in crowded for a in h.addresses)], rejected


def _check_mac(h: Host, neighbours: Mapping[str, Neighbour] | None) -> Host | Rejected:
    if neighbours is None:
        return replace(h, warnings=(*h.warnings, "MAC not checked: no neighbour table on this system"))
    if ipaddress.ip_address(h.address).version != 4:
        return replace(h, warnings=(*h.warnings, "MAC not checked: no IPv4 address"))
    seen = neighbours.get(h.address)
    if seen is None:
        claim = f"it claims MAC {h.mac}, " if h.mac else ""
        return Rejected(h.hostname, f"{claim}but nothing at {h.address} answered ARP: no device holds that address")
    if h.mac and h.mac != seen.mac:
        return Rejected(h.hostname, f"claims MAC {h.mac}, but {h.address} answers ARP as {seen.mac}")
    kind, reason = classify(seen.mac, h.hostname)
    return replace(h, mac=seen.mac, kind=kind, reason=reason, mac_checked=True)
