"""The controller's side of the LAN: which interfaces are a real LAN, and its neighbour table.

Facts (each a reader plus a parser, the parsers pure and tested from data):
the interfaces (``/sys/class/net`` + their IPv4 addresses) and the kernel's
neighbour table (``/proc/net/arp``). Decisions: :func:`choose_lan` keeps the
interfaces a Pi can be plugged into and says why the others were skipped.

A browse on every interface hears docker's, CNI's and flannel's bridges and
loopback too, where anything can answer: only interfaces backed by a device
(or a bridge/VLAN with a device under it) count by default; anything else
must be asked for by address (``--interface``), the virtual Pi lab's bridge
included.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SYS_NET = Path("/sys/class/net")
PROC_ARP = Path("/proc/net/arp")
# Container and overlay networks: never a LAN with Pis on it, whatever the
# kernel says about them (a veth or a bridge of nothing but veths).
VIRTUAL_PREFIXES = ("docker", "br-", "veth", "cni", "flannel", "cali", "vxlan", "weave", "virbr", "lxcbr",
                    "lxdbr", "podman", "kube", "cilium", "tun", "tap", "wg", "ifb", "dummy", "zt")  # fmt: skip
# include/uapi/linux/if_arp.h: ATF_COM 0x02, "completed entry (ha valid)".
ATF_COM = 0x02
DISCARD_PORT = 9  # RFC 863: a datagram here is dropped by design; all it does is make the kernel ARP


@dataclass(frozen=True)
class Interface:
    """One network interface of the controller, as /sys/class/net describes it."""

    name: str
    ipv4: tuple[str, ...]  # "192.168.1.10/24"
    loopback: bool = False
    device: bool = False  # backed by hardware (/sys/class/net/<if>/device exists)
    lower_devices: tuple[str, ...] = ()  # bridge ports / lower links that are backed by hardware
    up: bool = True


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str
    device: str


def choose_lan(interfaces: Iterable[Interface]) -> tuple[list[tuple[str, ipaddress.IPv4Interface]], list[tuple[str, str]]]:
    """The (interface, address/prefix) pairs to browse by default, and (interface, why not) for the rest."""
    chosen: list[tuple[str, ipaddress.IPv4Interface]] = []
    skipped: list[tuple[str, str]] = []
    for itf in interfaces:
        why = _not_lan(itf)
        addrs = [ipaddress.IPv4Interface(a) for a in itf.ipv4]
        usable = [a for a in addrs if not (a.ip.is_link_local or a.ip.is_loopback or a.network.prefixlen >= 31)]
        if why is None and not usable:
            why = "no IPv4 address (link-local 169.254/16 only)" if addrs else "no IPv4 address"
        if why is not None:
            skipped.append((itf.name, why))
            continue
        chosen.extend((itf.name, a) for a in usable)
    return chosen, skipped


def _not_lan(itf: Interface) -> str | None:
    if itf.loopback:
        return "loopback"
    if itf.name.startswith(VIRTUAL_PREFIXES):
        return "a container or overlay network"
    if not itf.up:
        return "down"
    if not itf.device and not itf.lower_devices:
        return "virtual (no network device behind it); name its address with --interface to browse it"
    return None


def explicit_problem(addr: str, local: Collection[str]) -> str | None:
    """Why ``--interface addr`` cannot be browsed, or None."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return f"--interface {addr!r} is not an IP address"
    if str(ip) not in local:
        return f"--interface {addr} is not an address of this machine"
    if ip.is_loopback:
        return f"--interface {addr} is loopback: only this machine answers there"
    if ip.version == 4 and ip.is_link_local:
        return f"--interface {addr} is link-local (169.254/16): that interface has no working LAN address"
    return None


def parse_arp(text: str) -> dict[str, Neighbour]:
    """``/proc/net/arp`` -> complete entries by IP (incomplete ones, MAC 00:00:..., are no answer)."""
    out: dict[str, Neighbour] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 6:
            continue
        ip, _hwtype, flags, mac, _mask, dev = cols[:6]
        try:
            ipaddress.IPv4Address(ip)
            complete = int(flags, 16) & ATF_COM
        except ValueError:
            continue
        mac = mac.lower()
        if complete and len(mac) == 17 and mac != "00:00:00:00:00:00":
            out[ip] = Neighbour(ip, mac, dev)
    return out


def read_neighbours(path: Path = PROC_ARP) -> dict[str, Neighbour] | None:
    """The neighbour table, or None where there is none to read (not Linux)."""
    try:
        return parse_arp(path.read_text())
    except OSError:
        return None


def probe_neighbours(addresses: Sequence[str], networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
                     timeout: float = 1.5) -> dict[str, Neighbour] | None:
    """Make the kernel resolve each address (one datagram to its discard port), then read the table.

    Only addresses on ``networks`` (the browsed subnets) are probed: never a
    packet towards anything beyond the LAN segment. Waits until every address
    has a complete entry or ``timeout`` passes.
    """
    wanted = [a for a in dict.fromkeys(addresses) if _on(a, networks)]
    table = read_neighbours()
    if table is None or not wanted:
        return table
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for a in wanted:
            if a not in table:
                try:
                    s.sendto(b"", (a, DISCARD_PORT))
                except OSError:
                    pass  # no route / unreachable: the table will simply not have it
    deadline = time.monotonic() + timeout
    while any(a not in table for a in wanted) and time.monotonic() < deadline:
        time.sleep(0.05)
        table = read_neighbours() or {}
    return table


def _on(addr: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.version == 4 and any(ip in n for n in networks)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def read_interfaces(adapters: Mapping[str, Sequence[str]], root: Path = SYS_NET) -> list[Interface]:
    """Interfaces from ``/sys/class/net`` and ``adapters`` (name -> "ip/prefix" IPv4 addresses)."""
    out: list[Interface] = []
    for name in sorted(set(adapters) | {p.name for p in root.iterdir()} if root.is_dir() else set(adapters)):
        d = root / name
        lowers = [p.name.removeprefix("lower_") for p in d.glob("lower_*")] if d.is_dir() else []
        ports = [p.name for p in (d / "brif").iterdir()] if (d / "brif").is_dir() else []
        hw = tuple(sorted(x for x in {*lowers, *ports} if (root / x / "device").exists()))
        flags = _read(d / "flags")
        up = bool(int(flags, 16) & 0x1) if flags else True  # IFF_UP
        out.append(Interface(
            name=name, ipv4=tuple(adapters.get(name, ())), loopback=_read(d / "type") == "772" or name == "lo",
            device=(d / "device").exists(), lower_devices=hw, up=up,
        ))  # fmt: skip
    return out


def local_interfaces() -> tuple[list[Interface], list[tuple[str, int]]]:
    """This machine's interfaces, and every (ip, prefix) it has (IPv6 included)."""
    import ifaddr

    by_name: dict[str, list[str]] = {}
    pairs: list[tuple[str, int]] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            pairs.append((str(addr), int(ip.network_prefix)))
            if isinstance(ip.ip, str):
                by_name.setdefault(str(adapter.name), []).append(f"{addr}/{ip.network_prefix}")
    root = SYS_NET if os.path.isdir(SYS_NET) else Path("/nonexistent")
    return read_interfaces(by_name, root), pairs
