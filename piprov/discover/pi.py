"""What a Raspberry Pi looks like on mDNS: its vendor's MAC prefixes, HypriotOS's name, its services.

HypriotOS Pis run avahi, which announces ``_workstation._tcp`` (instance name
``black-pearl [b8:27:eb:xx:xx:xx]``: the MAC is in the name) and ``_ssh._tcp``.
The MAC's vendor prefix tells a Pi from other devices; the default host name
is only a hint, for a Pi that announced no MAC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from piprov.discover.records import Kind

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

_WORKSTATION_RE = re.compile(r"^(?P<name>.*) \[(?P<mac>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})\]$")


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
