"""Find Raspberry Pis on the LAN over mDNS/DNS-SD, and tell them from other devices.

HypriotOS Pis run avahi, which announces ``_workstation._tcp`` (instance name
``black-pearl [b8:27:eb:xx:xx:xx]``: the MAC is in the name) and ``_ssh._tcp``.
Every fresh HypriotOS Pi is called ``black-pearl``; avahi resolves the
collisions itself (``black-pearl-2``), so hosts are told apart by address and
MAC, never by name alone.

Everything an mDNS answer carries is untrusted: any device on the LAN can
send anything. The pure functions here (:func:`merge`, :func:`classify`,
:func:`escape`, :func:`check_hostname`) turn raw answers into records, reject
what cannot be used (a host name with shell or YAML metacharacters, addresses
off the browsed subnet, one name claimed by two devices) with a reason, and
escape what is only shown. Nothing from an answer goes to a shell or the
inventory: ``discover --add`` writes planned names, the validated address and
the validated MAC only.

This module writes nothing; :func:`discover` returns records.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from piprov.errors import DiscoveryError
from piprov.inventory.edit import NewNode
from piprov.inventory.load import is_hostname_label
from piprov.inventory.model import Inventory

Kind = Literal["pi", "other"]

# IEEE OUIs of Raspberry Pi Foundation / Raspberry Pi (Trading) Ltd.
PI_OUIS: Mapping[str, str] = {
    "b8:27:eb": "Raspberry Pi Foundation",
    "dc:a6:32": "Raspberry Pi Trading",
    "e4:5f:01": "Raspberry Pi Trading",
    "28:cd:c1": "Raspberry Pi Trading",
    "d8:3a:dd": "Raspberry Pi Trading",
    "2c:cf:67": "Raspberry Pi Trading",
}
HYPRIOT_DEFAULT_NAME = "black-pearl"

PI_SERVICE_TYPES = ("_workstation._tcp.local.", "_ssh._tcp.local.")
# With --all: what printers, laptops, TVs and NASes on a home LAN announce.
OTHER_SERVICE_TYPES = (
    "_device-info._tcp.local.",
    "_http._tcp.local.",
    "_https._tcp.local.",
    "_ipp._tcp.local.",
    "_ipps._tcp.local.",
    "_printer._tcp.local.",
    "_pdl-datastream._tcp.local.",
    "_scanner._tcp.local.",
    "_uscan._tcp.local.",
    "_sftp-ssh._tcp.local.",
    "_smb._tcp.local.",
    "_afpovertcp._tcp.local.",
    "_airplay._tcp.local.",
    "_raop._tcp.local.",
    "_googlecast._tcp.local.",
    "_rfb._tcp.local.",
    "_companion-link._tcp.local.",
)

MAX_TXT_BYTES = 1024  # a Pi's TXT records are empty; more than this is junk or hostile
MAX_TXT_ENTRIES = 32
MAX_SHOWN = 80  # characters of an untrusted string shown to the user

_WORKSTATION_RE = re.compile(r"^(?P<name>.*) \[(?P<mac>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})\]$")


# ---------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class ServiceAnswer:
    """One resolved DNS-SD service instance, exactly as received (untrusted)."""

    type: str  # "_ssh._tcp.local."
    name: str  # "black-pearl._ssh._tcp.local."
    server: str | None  # "black-pearl.local."
    addresses: tuple[str, ...]
    port: int | None = None
    txt: Mapping[bytes, bytes | None] = field(default_factory=dict)
    txt_size: int = 0  # bytes of the raw TXT rdata
    seen_at: float = 0.0  # seconds since the browse started


@dataclass(frozen=True)
class Host:
    """One device: all its services merged. Every string field is safe to show."""

    hostname: str  # validated host name without ".local" (e.g. black-pearl-2)
    addresses: tuple[str, ...]  # validated, on the browsed subnet
    mac: str | None  # validated, lower case
    kind: Kind
    reason: str  # why it is (or is not) a Pi
    services: tuple[str, ...]  # "_ssh._tcp", ...
    instances: tuple[str, ...]  # escaped instance names
    txt: Mapping[str, str]  # escaped, bounded
    warnings: tuple[str, ...] = ()
    first_seen: float = 0.0  # seconds until the host had an address

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def is_pi(self) -> bool:
        return self.kind == "pi"

    def as_dict(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "address": self.address,
            "addresses": list(self.addresses),
            "mac": self.mac,
            "kind": self.kind,
            "reason": self.reason,
            "services": list(self.services),
            "instances": list(self.instances),
            "txt": dict(self.txt),
            "warnings": list(self.warnings),
            "first_seen_s": round(self.first_seen, 3),
        }


@dataclass(frozen=True)
class Rejected:
    """An answer that cannot be used, with the reason (``what`` is escaped)."""

    what: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"what": self.what, "reason": self.reason}


@dataclass(frozen=True)
class DiscoveryResult:
    hosts: tuple[Host, ...]
    rejected: tuple[Rejected, ...]
    duration: float
    interfaces: tuple[str, ...]
    settled: bool  # True: answers stopped changing; False: stopped by the timeout

    @property
    def pis(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.is_pi)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hosts": [h.as_dict() for h in self.hosts],
            "rejected": [r.as_dict() for r in self.rejected],
            "duration_s": round(self.duration, 3),
            "interfaces": list(self.interfaces),
            "settled": self.settled,
        }


# ---------------------------------------------------------------------------
# Pure functions


def escape(s: str, limit: int = MAX_SHOWN) -> str:
    """Show an untrusted string: control and other non-printable characters as
    escapes, backslashes doubled, cut at ``limit`` characters."""
    outp: list[str] = []
    for ch in s:
        if ch == "\\":
            outp.append("\\\\")
        elif ch.isprintable():
            outp.append(ch)
        else:
            cp = ord(ch)
            outp.append(f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}")
    text = "".join(outp)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def check_hostname(server: str | None) -> tuple[str | None, str | None]:
    """``black-pearl-2.local.`` -> (``black-pearl-2``, None), or (None, reason)."""
    if not server:
        return None, "no host name (SRV record) in the answer"
    name = server[:-1] if server.endswith(".") else server
    if name.lower().endswith(".local"):
        name = name[: -len(".local")]
    labels = name.split(".")
    if not name or len(name) > 253 or not all(is_hostname_label(label) for label in labels):
        return None, (
            f"host name {escape(server)!r} is not a valid host name "
            "(only letters, digits and hyphens are allowed); ignored"
        )
    return name.lower(), None


def mac_from_workstation(instance: str) -> str | None:
    """The MAC avahi puts in a ``_workstation._tcp`` instance name, lower case."""
    label = instance.split("._workstation.", 1)[0]
    m = _WORKSTATION_RE.match(label)
    return m.group("mac").lower() if m else None


def classify(mac: str | None, hostname: str) -> tuple[Kind, str]:
    """Pi or not, and why. The MAC's OUI decides when known; the HypriotOS default
    host name is only a hint when no MAC was seen."""
    if mac:
        oui = mac[:8]
        vendor = PI_OUIS.get(oui)
        if vendor:
            return "pi", f"MAC {oui} is {vendor}"
        return "other", f"MAC {oui} is not a Raspberry Pi's"
    if hostname.startswith(HYPRIOT_DEFAULT_NAME):
        return "pi", f"HypriotOS host name {hostname!r} (no MAC announced)"
    return "other", "no Raspberry Pi MAC and not a HypriotOS host name"


def _short_type(t: str) -> str:
    return t[: -len(".local.")] if t.endswith(".local.") else t


def _instance_label(a: ServiceAnswer) -> str:
    suffix = "." + a.type
    return a.name[: -len(suffix)] if a.name.endswith(suffix) else a.name


def _txt(a: ServiceAnswer) -> tuple[dict[str, str], str | None]:
    if a.txt_size > MAX_TXT_BYTES or len(a.txt) > MAX_TXT_ENTRIES:
        return {}, f"TXT record of {a.txt_size} bytes / {len(a.txt)} entries ignored (limit {MAX_TXT_BYTES} bytes)"
    out: dict[str, str] = {}
    for k, v in a.txt.items():
        key = escape(k.decode("utf-8", "replace"), 40)
        out[key] = "" if v is None else escape(v.decode("utf-8", "replace"))
    return out, None


def networks_of(addresses: Iterable[str], adapters: Iterable[tuple[str, int]]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets of the browsing interfaces, from (ip, prefix length) pairs of local adapters."""
    wanted = {ipaddress.ip_address(a) for a in addresses}
    nets = []
    for ip, prefix in adapters:
        try:
            addr = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            continue
        if not wanted or addr in wanted:
            nets.append(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    return nets


def _on_networks(raw: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(raw.split("%")[0])
    except ValueError:
        return False
    return any(ip in n for n in networks)


def merge(
    answers: Iterable[ServiceAnswer],
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> tuple[list[Host], list[Rejected]]:
    """Merge the services of each host into ONE record; reject what cannot be trusted.

    Hosts are keyed by their host name (avahi keeps those unique on a LAN). A
    name claimed by devices with different MACs is rejected: which address
    belongs to which device cannot be known.
    """
    rejected: list[Rejected] = []
    groups: dict[str, list[ServiceAnswer]] = {}
    off_net: dict[str, set[str]] = {}
    for a in answers:
        hostname, why = check_hostname(a.server)
        if hostname is None:
            rejected.append(Rejected(escape(_instance_label(a)), why or "unusable"))
            continue
        if networks and a.addresses and not any(_on_networks(x, networks) for x in a.addresses):
            # Heard from another segment (or lying): it must not count as a
            # claim on a name that a host of this subnet holds.
            off_net.setdefault(hostname, set()).update(escape(x) for x in a.addresses)
            continue
        groups.setdefault(hostname, []).append(a)
    for hostname, addrs in sorted(off_net.items()):
        if hostname not in groups:
            rejected.append(
                Rejected(hostname, f"no address on the browsed subnet (it announced {', '.join(sorted(addrs))})")
            )

    hosts: list[Host] = []
    for hostname, group in sorted(groups.items()):
        macs = sorted({m for m in (mac_from_workstation(a.name) for a in group) if m})
        if len(macs) > 1:
            rejected.append(
                Rejected(hostname, f"host name claimed by {len(macs)} devices ({', '.join(macs)}); ignored")
            )
            continue
        mac = macs[0] if macs else None
        warnings: list[str] = []
        addresses: list[str] = []
        off: list[str] = []
        for a in group:
            for raw in a.addresses:
                try:
                    ip = ipaddress.ip_address(raw.split("%")[0])
                except ValueError:
                    off.append(escape(raw))
                    continue
                if ip.is_link_local and ip.version == 6:
                    continue  # usable only with a scope; the IPv4 address is what SSH uses
                if networks and not any(ip in n for n in networks):
                    off.append(str(ip))
                    continue
                if str(ip) not in addresses:
                    addresses.append(str(ip))
        if off:
            warnings.append(f"ignored addresses off the browsed subnet: {', '.join(sorted(set(off)))}")
        if not addresses:
            reason = "no address on the browsed subnet"
            if off:
                reason += f" (it announced {', '.join(sorted(set(off)))})"
            rejected.append(Rejected(hostname, reason))
            continue
        addresses.sort(key=lambda s: (ipaddress.ip_address(s).version, ipaddress.ip_address(s)))
        v4 = [x for x in addresses if ipaddress.ip_address(x).version == 4]
        if len(v4) > 1:
            warnings.append(f"several IPv4 addresses ({', '.join(v4)}): not added automatically")
        txt: dict[str, str] = {}
        for a in group:
            t, why = _txt(a)
            if why:
                warnings.append(f"{_short_type(a.type)}: {why}")
            txt.update(t)
        kind, reason = classify(mac, hostname)
        hosts.append(
            Host(
                hostname=hostname,
                addresses=tuple(addresses),
                mac=mac,
                kind=kind,
                reason=reason,
                services=tuple(sorted({_short_type(a.type) for a in group})),
                instances=tuple(sorted({escape(_instance_label(a)) for a in group})),
                txt=txt,
                warnings=tuple(warnings),
                first_seen=min(a.seen_at for a in group),
            )
        )
    hosts.sort(key=lambda h: ipaddress.ip_address(h.address))
    return hosts, rejected


# ---------------------------------------------------------------------------
# Inventory matching and `discover --add` planning (pure)


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
    used = {n.name.lower() for n in inv.nodes}
    new: list[NewNode] = []
    k = 1
    for h in hosts:
        if not h.is_pi or inventory_match(h, inv)[0] is not None:
            continue
        if len([a for a in h.addresses if ipaddress.ip_address(a).version == 4]) != 1:
            continue
        while pattern.replace("{n}", str(k)).lower() in used:
            k += 1
        name = pattern.replace("{n}", str(k))
        if not is_hostname_label(name):
            raise DiscoveryError(f"--name-pattern {pattern!r} gives {name!r}, which is not a valid host name")
        used.add(name.lower())
        new.append(NewNode(name=name, address=h.address, role=role, mac=h.mac))
    return new


# ---------------------------------------------------------------------------
# Browsing (python-zeroconf)


def local_adapters() -> list[tuple[str, int]]:
    import ifaddr

    pairs: list[tuple[str, int]] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            pairs.append((str(addr), int(ip.network_prefix)))
    return pairs


def discover(
    interfaces: Sequence[str] = (),
    *,
    timeout: float = 5.0,
    quiet: float = 0.7,
    all_types: bool = False,
    on_update: Callable[[DiscoveryResult], None] | None = None,
) -> DiscoveryResult:
    """Browse mDNS on ``interfaces`` (local IP addresses; empty = all) and return what answered.

    Ends ``quiet`` seconds after the last new or changed answer, or at
    ``timeout``. ``on_update`` is called with the records so far on every change.
    """
    adapters = local_adapters()
    local = {a for a, _ in adapters}
    for addr in interfaces:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise DiscoveryError(f"--interface {addr!r} is not an IP address", hint="give a local address, e.g. 192.168.1.10") from None
        if addr not in local:
            raise DiscoveryError(
                f"--interface {addr} is not an address of this machine",
                hint=f"local addresses: {', '.join(sorted(a for a in local if ':' not in a))}",
            )
    networks = networks_of(interfaces, adapters)
    types = list(PI_SERVICE_TYPES) + (list(OTHER_SERVICE_TYPES) if all_types else [])
    try:
        return asyncio.run(_browse(list(interfaces), types, networks, timeout, quiet, on_update))
    except OSError as e:
        raise DiscoveryError(f"mDNS browsing failed: {e.strerror or e}", hint="is multicast allowed on this interface?") from None


# Linux delivers a multicast datagram to every socket bound to the port that
# joined the group on ANY interface (IP_MULTICAST_ALL defaults to 1), so a
# browser bound to one LAN hears mDNS from every other bridge or LAN where some
# process joined 224.0.0.251. Turning it off limits the listen socket to the
# interfaces it joined, i.e. the ones the user chose.
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


def _only_joined_interfaces(zc: Any) -> None:
    sock = getattr(getattr(zc, "engine", None), "_listen_socket", None)
    if isinstance(sock, socket.socket) and sock.family == socket.AF_INET and sys.platform.startswith("linux"):
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        except OSError:
            pass  # older kernels: the subnet check in merge() still applies


async def _browse(
    interfaces: list[str],
    types: list[str],
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    timeout: float,
    quiet: float,
    on_update: Callable[[DiscoveryResult], None] | None,
) -> DiscoveryResult:
    from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    start = time.monotonic()
    v4only = bool(interfaces) and all(":" not in i for i in interfaces)
    azc = AsyncZeroconf(
        interfaces=interfaces or InterfaceChoice.All,
        ip_version=IPVersion.V4Only if v4only or not interfaces else IPVersion.All,
    )
    if interfaces:
        _only_joined_interfaces(azc.zeroconf)
    answers: dict[str, ServiceAnswer] = {}
    pending: set[asyncio.Task[None]] = set()
    last_change = start
    changed = asyncio.Event()

    def snapshot(settled: bool) -> DiscoveryResult:
        hosts, rejected = merge(answers.values(), networks)
        return DiscoveryResult(tuple(hosts), tuple(rejected), time.monotonic() - start, tuple(interfaces), settled)

    async def resolve(type_: str, name: str) -> None:
        nonlocal last_change
        info = AsyncServiceInfo(type_, name)
        await info.async_request(azc.zeroconf, 1500)
        text = info.text or b""
        a = ServiceAnswer(
            type=type_,
            name=name,
            server=info.server,
            addresses=tuple(info.parsed_addresses()),
            port=info.port,
            txt=dict(info.properties or {}),
            txt_size=len(text),
            seen_at=time.monotonic() - start,
        )
        old = answers.get(name)
        if old is None or replace(old, seen_at=0.0) != replace(a, seen_at=0.0):
            if old is not None:
                a = replace(a, seen_at=old.seen_at)
            answers[name] = a
            last_change = time.monotonic()
            changed.set()

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        nonlocal last_change
        last_change = time.monotonic()
        if state_change is ServiceStateChange.Removed:
            answers.pop(name, None)
            changed.set()
            return
        task = asyncio.ensure_future(resolve(service_type, name))
        pending.add(task)
        task.add_done_callback(pending.discard)

    browser = AsyncServiceBrowser(azc.zeroconf, types, handlers=[on_change])
    settled = False
    try:
        while True:
            now = time.monotonic()
            if now - start >= timeout:
                break
            if not pending and answers and now - last_change >= quiet:
                settled = True
                break
            try:
                await asyncio.wait_for(changed.wait(), timeout=0.05)
            except asyncio.TimeoutError:
                pass
            if changed.is_set():
                changed.clear()
                if on_update is not None:
                    on_update(snapshot(False))
    finally:
        await browser.async_cancel()
        for t in list(pending):
            t.cancel()
        await azc.async_close()
    return snapshot(settled)
