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

The rooms: ``records`` (what is handed back), ``pi`` (what a Pi looks like),
``hosts`` (answers merged into hosts), ``additions`` (hosts against the inventory),
``browse`` (python-zeroconf). This package writes nothing; :func:`discover`
returns records.
"""

from __future__ import annotations

from piprov.discover.additions import inventory_match, plan_additions, plan_additions_why
from piprov.discover.browse import discover, local_adapters
from piprov.discover.hosts import MAX_TXT_BYTES, MAX_TXT_ENTRIES, check_hostname, merge, networks_of
from piprov.discover.pi import (
    DEFAULT_NAMES,
    HYPRIOT_DEFAULT_NAME,
    OTHER_SERVICE_TYPES,
    PI_OUIS,
    PI_SERVICE_TYPES,
    classify,
    mac_from_workstation,
    pi_vendor,
)
from piprov.discover.records import MAX_SHOWN, DiscoveryResult, Host, Kind, Rejected, ServiceAnswer, escape

__all__ = [
    "DEFAULT_NAMES",
    "HYPRIOT_DEFAULT_NAME",
    "MAX_SHOWN",
    "MAX_TXT_BYTES",
    "MAX_TXT_ENTRIES",
    "OTHER_SERVICE_TYPES",
    "PI_OUIS",
    "PI_SERVICE_TYPES",
    "DiscoveryResult",
    "Host",
    "Kind",
    "Rejected",
    "ServiceAnswer",
    "check_hostname",
    "classify",
    "discover",
    "escape",
    "inventory_match",
    "local_adapters",
    "mac_from_workstation",
    "pi_vendor",
    "merge",
    "networks_of",
    "plan_additions",
    "plan_additions_why",
]
