"""The mDNS browse itself (python-zeroconf): ask, resolve, stop once the answers settle.

Ends ``quiet`` seconds after the last new or changed answer, or at the
timeout. Each change is merged into records at once, so a caller can show
hosts as they appear; the records are what :func:`discover` returns.
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

from piprov.discover.hosts import Network, merge, networks_of
from piprov.discover.pi import OTHER_SERVICE_TYPES, PI_SERVICE_TYPES
from piprov.discover.records import DiscoveryResult, ServiceAnswer
from piprov.errors import DiscoveryError


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


class _Answers:
    """The answers of one browse so far, and when they last changed."""

    def __init__(self, zc: Any, interfaces: list[str], networks: list[Network], start: float) -> None:
        from zeroconf import ServiceStateChange

        self.zc = zc
        self.interfaces = interfaces
        self.networks = networks
        self.removed = ServiceStateChange.Removed
        self.start = start
        self.last_change = start
        self.answers: dict[str, ServiceAnswer] = {}
        self.pending: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()

    def snapshot(self, settled: bool) -> DiscoveryResult:
        hosts, rejected = merge(self.answers.values(), self.networks)
        return DiscoveryResult(tuple(hosts), tuple(rejected), time.monotonic() - self.start,
                               tuple(self.interfaces), settled)

    def on_change(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        """zeroconf's browser handler: a service came, changed or went."""
        self.last_change = time.monotonic()
        if state_change is self.removed:
            self.answers.pop(name, None)
            self.changed.set()
            return
        task = asyncio.ensure_future(self._resolve(service_type, name))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _resolve(self, type_: str, name: str) -> None:
        from zeroconf.asyncio import AsyncServiceInfo

        info = AsyncServiceInfo(type_, name)
        await info.async_request(self.zc, 1500)
        text = info.text or b""
        a = ServiceAnswer(
            type=type_,
            name=name,
            server=info.server,
            addresses=tuple(info.parsed_addresses()),
            port=info.port,
            txt=dict(info.properties or {}),
            txt_size=len(text),
            seen_at=time.monotonic() - self.start,
        )
        old = self.answers.get(name)
        if old is None or replace(old, seen_at=0.0) != replace(a, seen_at=0.0):
            if old is not None:
                a = replace(a, seen_at=old.seen_at)
            self.answers[name] = a
            self.last_change = time.monotonic()
            self.changed.set()

    async def until_settled(
        self, timeout: float, quiet: float, on_update: Callable[[DiscoveryResult], None] | None
    ) -> bool:
        """Wait for the answers to stop changing (True) or for the timeout (False)."""
        while True:
            now = time.monotonic()
            if now - self.start >= timeout:
                return False
            if not self.pending and self.answers and now - self.last_change >= quiet:
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
    timeout: float,
    quiet: float,
    on_update: Callable[[DiscoveryResult], None] | None,
) -> DiscoveryResult:
    from zeroconf import InterfaceChoice, IPVersion
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    start = time.monotonic()
    v4only = bool(interfaces) and all(":" not in i for i in interfaces)
    azc = AsyncZeroconf(
        interfaces=interfaces or InterfaceChoice.All,
        ip_version=IPVersion.V4Only if v4only or not interfaces else IPVersion.All,
    )
    if interfaces:
        _only_joined_interfaces(azc.zeroconf)
    answers = _Answers(azc.zeroconf, interfaces, networks, start)
    browser = AsyncServiceBrowser(azc.zeroconf, types, handlers=[answers.on_change])
    settled = False
    try:
        settled = await answers.until_settled(timeout, quiet, on_update)
    finally:
        await browser.async_cancel()
        for t in list(answers.pending):
            t.cancel()
        await azc.async_close()
    return answers.snapshot(settled)
