"""What discovery hands back: the raw answers as received, and the hosts made of them.

A :class:`ServiceAnswer` is untrusted, exactly as it came off the wire; a
:class:`Host` or :class:`Rejected` holds only validated or escaped strings, so
every field of them is safe to show. :func:`escape` is how an untrusted
string becomes one that is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["pi", "other"]

MAX_SHOWN = 80  # characters of an untrusted string shown to the user


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
    mac_checked: bool = False  # the MAC is the one its address answers ARP with

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
            "mac_checked": self.mac_checked,
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
    skipped_interfaces: tuple[tuple[str, str], ...] = ()  # (interface, why it was not browsed)
    claiming: tuple[str, ...] = ()  # sources still probing for a name when the browse ended

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
            "skipped_interfaces": [{"interface": n, "reason": r} for n, r in self.skipped_interfaces],
            "claiming": list(self.claiming),
        }


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
