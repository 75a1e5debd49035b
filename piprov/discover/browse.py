"""The mDNS browse itself (python-zeroconf): ask, resolve, stop once the answers settle.

Browses the LAN interfaces (:func:`piprov.discover.lan.choose_lan`) or the
addresses given. Ends ``quiet`` seconds after the last new or changed answer
once no device is still claiming a name (:mod:`piprov.discover.claims`), or
at the timeout. Besides the services, it asks for the A records of the
default host names (Raspberry Pi OS announces no service). Then every
answer's address is checked against the neighbour table and the controller's
own addresses (:func:`piprov.discover.trust.vet`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from piprov.discover.claims import Claims, Packet, ProbeWatch
from piprov.discover.hosts import Network, merge, networks_of
from piprov.discover.lan import DISCARD_PORT, choose_lan, explicit_problem, local_interfaces, probe_neighbours
from piprov.discover.pi import DEFAULT_NAMES, OTHER_SERVICE_TYPES, PI_SERVICE_TYPES
from piprov.discover.records import DiscoveryResult, Host, Rejected, ServiceAnswer
from piprov.discover.scan import scan, scan_targets
from piprov.discover.trust import vet
from piprov.errors import DiscoveryError

A_RECORD = "A record"  # the "service type" of an answer that is only a host name's address
NAME_BATCH = 8  # numbered variants of a default name asked at a time (raspberrypi-2 ... -9)
MAX_VARIANT = 64
SCAN_SECONDS = 10.0  # --scan ends here whatever is still unanswered (a /24 takes ~3 s at 100 connections/s)


def local_adapters() -> list[tuple[str, int]]:
    return local_interfaces()[1]


def choose_interfaces(interfaces: Sequence[str]) -> tuple[list[str], list[tuple[str, int]], tuple[tuple[str, str], ...]]:
    """The addresses to browse on, every local (ip, prefix), and the interfaces skipped with why."""
    itfs, adapters = local_interfaces()
    local = {a for a, _ in adapters}
    if interfaces:
        for addr in interfaces:
            why = explicit_problem(addr, local)
            if why:
                raise DiscoveryError(why, hint=f"local addresses: {', '.join(sorted(a for a in local if ':' not in a))}")
        return list(interfaces), adapters, ()
    chosen, skipped = choose_lan(itfs)
    if not chosen:
        raise DiscoveryError(
            "no LAN interface to browse (" + "; ".join(f"{n}: {why}" for n, why in skipped) + ")",
            hint="name one with --interface ADDR (the virtual Pi lab's bridge, for example)",
        )
    return list(dict.fromkeys(str(a.ip) for _, a in chosen)), adapters, tuple(skipped)


def discover(
    interfaces: Sequence[str] = (),
    *,
    timeout: float = 10.0,
    quiet: float = 0.7,
    all_types: bool = False,
    ssh_scan: bool = False,
    on_update: Callable[[DiscoveryResult], None] | None = None,
) -> DiscoveryResult:
    """Browse mDNS on ``interfaces`` (local IP addresses; empty = the LAN ones) and return what passed.

    ``on_update`` is called with the records so far (not yet checked against
    the neighbour table) on every change.
    """
    chosen, adapters, skipped = choose_interfaces(interfaces)
    own = {a.split("%")[0] for a, _ in adapters}
    networks = networks_of(chosen, adapters)
    types = list(PI_SERVICE_TYPES) + (list(OTHER_SERVICE_TYPES) if all_types else [])
    try:
        result = asyncio.run(_browse(chosen, types, networks, own, timeout, quiet, ssh_scan, on_update))
    except OSError as e:
        raise DiscoveryError(f"mDNS browsing failed: {e.strerror or e}", hint="is multicast allowed on this interface?") from None
    v4nets = [n for n in networks if n.version == 4]
    neighbours = probe_neighbours([h.address for h in result.hosts], v4nets)
    hosts, rejected = vet(result.hosts, own=own, neighbours=neighbours)
    return replace(result, hosts=tuple(hosts), rejected=(*result.rejected, *rejected), skipped_interfaces=skipped)


# Linux delivers a multicast datagram to every socket bound to the port that
# joined the group on ANY interface (IP_MULTICAST_ALL defaults to 1), so a
# browser bound to one LAN hears mDNS from every other bridge or LAN where some
# process joined 224.0.0.251. Turning it off limits the listen socket to the
# interfaces it joined, i.e. the ones chosen.
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


def _only_joined_interfaces(zc: Any) -> None:
    sock = getattr(getattr(zc, "engine", None), "_listen_socket", None)
    if isinstance(sock, socket.socket) and sock.family == socket.AF_INET and sys.platform.startswith("linux"):
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        except OSError:
            pass  # older kernels: the subnet check in merge() still applies


def _nudge(addresses: Sequence[str], networks: Sequence[Network]) -> None:
    """One datagram to each address's discard port, so the kernel ARPs for it while the browse goes on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for a in addresses:
            ip = ipaddress.ip_address(a)
            if ip.version == 4 and any(ip in n for n in networks):
                try:
                    s.sendto(b"", (a, DISCARD_PORT))
                except OSError:
                    pass


class _Answers:
    """The answers of one browse so far, the claims in flight, and when anything last changed."""

    def __init__(self, zc: Any, interfaces: list[str], networks: list[Network], own: set[str], start: float) -> None:
        from zeroconf import ServiceStateChange

        self.zc = zc
        self.interfaces = interfaces
        self.networks = networks
        self.own = own
        self.removed = ServiceStateChange.Removed
        self.start = start
        self.last_change = start
        self.answers: dict[str, ServiceAnswer] = {}
        self.pending: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()
        self.claims = Claims()

    def snapshot(self, settled: bool) -> DiscoveryResult:
        hosts, rejected = merge(self.answers.values(), self.networks)
        return DiscoveryResult(tuple(hosts), tuple(rejected), time.monotonic() - self.start,
                               tuple(self.interfaces), settled, claiming=tuple(sorted(self.claims.in_flight)))

    def from_lan(self, source: str) -> bool:
        try:
            ip = ipaddress.ip_address(source)
        except ValueError:
            return False
        return source not in self.own and any(ip in n for n in self.networks)

    def on_packet(self, p: Packet) -> None:
        before = self.claims.last_event
        self.claims.saw(p, time.monotonic())
        if self.claims.last_event != before:
            self.last_change = self.claims.last_event
            self.changed.set()

    def on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        """zeroconf's browser handler: a service came, changed or went."""
        self.last_change = time.monotonic()
        if state_change is self.removed:
            self.answers.pop(name, None)
            self.changed.set()
            return
        self.spawn(self._resolve(service_type, name))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    def record(self, a: ServiceAnswer) -> None:
        old = self.answers.get(a.name)
        if old is None or replace(old, seen_at=0.0) != replace(a, seen_at=0.0):
            if old is not None:
                a = replace(a, seen_at=old.seen_at)
            self.answers[a.name] = a
            self.last_change = time.monotonic()
            self.changed.set()
            _nudge(a.addresses, self.networks)

    async def _resolve(self, type_: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(type_, name)
        await info.async_request(self.zc, 1500)
        text = info.text or b""
        self.record(ServiceAnswer(
            type=type_, name=name, server=info.server, addresses=tuple(info.parsed_addresses()), port=info.port,
            txt=dict(info.properties or {}), txt_size=len(text), seen_at=time.monotonic() - self.start,
        ))  # fmt: skip

    async def default_names(self) -> None:
        """The A records of raspberrypi.local, raspberrypi-2.local, ... (and HypriotOS's), a batch at a time."""
        from zeroconf._services.info import AddressResolverIPv4  # re-exported by zeroconf, not in __all__

        async def one(host: str) -> bool:
            r = AddressResolverIPv4(f"{host}.local.")
            if not await r.async_request(self.zc, 1500):
                return False
            self.record(ServiceAnswer(type=A_RECORD, name=f"{host}.local.", server=f"{host}.local.",
                                      addresses=tuple(r.parsed_addresses()), seen_at=time.monotonic() - self.start))
            return True

        for base in DEFAULT_NAMES:
            first = 2
            found = await asyncio.gather(one(base), *(one(f"{base}-{i}") for i in range(first, first + NAME_BATCH)))
            while found[-1] and first + NAME_BATCH <= MAX_VARIANT:  # the batch's last name taken: there may be more
                first += NAME_BATCH
                found = await asyncio.gather(*(one(f"{base}-{i}") for i in range(first, first + NAME_BATCH)))

    async def until_settled(
        self, timeout: float, quiet: float, on_update: Callable[[DiscoveryResult], None] | None
    ) -> bool:
        """Wait for the answers to stop changing and every claim to end (True), or for the timeout (False)."""
        while True:
            now = time.monotonic()
            if now - self.start >= timeout:
                return False
            if not self.pending and not self.claims.pending and self.answers and now - self.last_change >= quiet:
                return True
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=0.05)
            except asyncio.TimeoutError:
                pass
            if self.changed.is_set():
                self.changed.clear()
                if on_update is not None:
                    on_update(self.snapshot(False))


async def _browse(
    interfaces: list[str],
    types: list[str],
    networks: list[Network],
    own: set[str],
    timeout: float,
    quiet: float,
    ssh_scan: bool,
    on_update: Callable[[DiscoveryResult], None] | None,
) -> DiscoveryResult:
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    start = time.monotonic()
    v4 = [i for i in interfaces if ":" not in i]
    azc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only if len(v4) == len(interfaces) else IPVersion.All)
    _only_joined_interfaces(azc.zeroconf)
    answers = _Answers(azc.zeroconf, interfaces, networks, own, start)
    watch = ProbeWatch(v4, answers.from_lan, answers.on_packet) if v4 else None
    loop = asyncio.get_running_loop()
    if watch is not None:
        loop.add_reader(watch.sock, watch.readable)
    browser = AsyncServiceBrowser(azc.zeroconf, types, handlers=[answers.on_change])
    answers.spawn(answers.default_names())
    settled = False
    try:
        settled = await answers.until_settled(timeout, quiet, on_update)
        result = answers.snapshot(settled)
        if ssh_scan:
            result = await _with_scan(result, networks, own, time.monotonic() + SCAN_SECONDS)
    finally:
        if watch is not None:
            loop.remove_reader(watch.sock)
            watch.close()
        await browser.async_cancel()
        for t in list(answers.pending):
            t.cancel()
        await azc.async_close()
    return result


async def _with_scan(result: DiscoveryResult, networks: list[Network], own: set[str], deadline: float) -> DiscoveryResult:
    """The browse's hosts plus one host per SSH banner at an address no answer had."""
    from piprov.discover.pi import classify

    known = {a for h in result.hosts for a in h.addresses}
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    targets = scan_targets(v4, own, skip=known)
    banners = await scan(targets, deadline=deadline)
    extra = []
    for b in banners:
        name = "ssh-" + b.address.replace(".", "-")
        kind, reason = classify(None, name)
        extra.append(Host(name, (b.address,), None, kind, reason, ("ssh banner",), (b.banner,), {}))
    hosts = sorted((*result.hosts, *extra), key=lambda h: ipaddress.ip_address(h.address))
    return replace(result, hosts=tuple(hosts))
