"""Names still being claimed on the LAN: mDNS probes and conflicts the stop rule must wait for.

A Pi that has just booted first probes for its host name (RFC 6762 §8.1:
queries with the proposed records in the authority section), and announces
it only when nobody objected; on a conflict it picks the next name
(``black-pearl-2``) and probes again, and after 15 conflicts in ten seconds
it waits five seconds before probing once more. A browse that stops while
any device is between its first probe and its announcement misses that
device. :class:`Claims` (pure) keeps, per source address, whether it has a
claim in flight; :class:`ProbeWatch` feeds it from the wire.

The watch binds its socket to the mDNS group address itself, not to
INADDR_ANY: it then shares only multicast with the browser's socket and can
never take a unicast reply meant for the browser (SO_REUSEPORT would hand
each such datagram to one socket of the group only).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
TYPE_A = 1


@dataclass(frozen=True)
class Packet:
    """What the stop rule needs of one mDNS datagram."""

    source: str
    query: bool
    probe: bool  # a query with authority records: a name being claimed
    a_names: tuple[str, ...] = ()  # names of A records in a response (announcements, answers)


@dataclass
class Claims:
    """Which sources have a claim in flight (probed, not yet announced), and when anything last moved."""

    in_flight: set[str] = field(default_factory=set)
    owners: dict[str, set[str]] = field(default_factory=dict)  # A record name -> sources that answered it
    last_event: float = 0.0
    conflicts: int = 0

    def saw(self, p: Packet, now: float) -> None:
        if p.query:
            if p.probe:
                self.in_flight.add(p.source)
                self.last_event = now
            return
        for name in p.a_names:
            owners = self.owners.setdefault(name, set())
            if owners and p.source not in owners:
                # Two devices answer for one name: one of them is about to rename.
                self.conflicts += 1
                self.last_event = now
            owners.add(p.source)
        if p.a_names and p.source in self.in_flight:
            # The source announces what it claimed: its probing is over.
            self.in_flight.discard(p.source)
            self.last_event = now

    @property
    def pending(self) -> int:
        return len(self.in_flight)


def parse_packet(data: bytes, source: str) -> Packet | None:
    """An mDNS datagram as a :class:`Packet`, or None when it is not one."""
    from zeroconf._protocol.incoming import DNSIncoming  # re-exported by zeroconf, but not in __all__

    # python-zeroconf 0.154.0 src/zeroconf/_protocol/incoming.py: DNSIncoming.is_query
    # (QR flag), is_probe (authority records present, RFC 6762 §8.2) and answers()
    # (the records of all sections).
    msg = DNSIncoming(data, (source, MDNS_PORT))
    if not msg.valid:
        return None
    if msg.is_query():
        return Packet(source, True, msg.is_probe())
    names = tuple(sorted({r.name.lower() for r in msg.answers() if r.type == TYPE_A}))
    return Packet(source, False, False, names)


class ProbeWatch:
    """A socket on the mDNS group of the browsed interfaces, reporting every datagram's Packet."""

    def __init__(self, interfaces: Sequence[str], accept: Callable[[str], bool], on_packet: Callable[[Packet], None]) -> None:
        self.accept = accept
        self.on_packet = on_packet
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((MDNS_GROUP, MDNS_PORT))
            for itf in interfaces:
                if ipaddress.ip_address(itf).version == 4:
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                 struct.pack("4s4s", socket.inet_aton(MDNS_GROUP), socket.inet_aton(itf)))
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            except OSError:
                pass  # older kernels: accept() still drops what is off the browsed subnets
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self.sock = s

    def readable(self) -> None:
        """Drain the socket (the event loop calls this when data is waiting)."""
        while True:
            try:
                data, (src, _port) = self.sock.recvfrom(9000)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not self.accept(src):
                continue
            try:
                p = parse_packet(data, src)
            except Exception:  # noqa: BLE001 - hostile bytes must never end a browse
                continue
            if p is not None:
                self.on_packet(p)

    def close(self) -> None:
        self.sock.close()
