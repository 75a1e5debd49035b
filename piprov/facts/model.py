"""What the facts say about a node: typed values, and what a well-formed name in them looks like."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

OCCIDENTALIS = "/boot/occidentalis.txt"
# HypriotOS 1.0-1.6: device-init reads `hostname:` from this file at every boot (hypriot/device-init
# cmd/root.go: the --config default; cmd/hostname_set.go: config.GetString("hostname")).
DEVICE_INIT = "/boot/device-init.yaml"
# cloud-init cards: NoCloud's user-data on the FAT partition, read at every boot. HypriotOS 1.7-1.12
# link the seed to /boot (image-builder-rpi v1.7.0 builder/chroot-script.sh:196-202); Raspberry Pi OS
# keeps its boot files in /boot/firmware since Bookworm.
CLOUD_INIT_USER_DATA = ("/boot/user-data", "/boot/firmware/user-data")
# cloud-init's pickled datasource. While it exists and meta-data's instance-id is unchanged, a
# boot restores it and runs on the user-data it cached, not the file in /boot (stages.py
# _restore_from_checked_cache; seen on the lab: an edited hostname: came back as the old one).
# Without it the boot reads the seed again; same instance-id, so no first-boot modules rerun.
CLOUD_INIT_CACHE = "/var/lib/cloud/instance/obj.pkl"

# The names the command may ask about and the parser accepts back. The script
# interpolates them unquoted, so these patterns are also what keeps it safe.
PATH_RE = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
UNIT_RE = re.compile(r"^[A-Za-z0-9@_.:-]+$")
WORD_RE = re.compile(r"^[A-Za-z0-9._@:+/-]+$")

EtcdKeyState = Literal["ok", "missing", "unavailable"]


@dataclass(frozen=True)
class FileFacts:
    path: str
    exists: bool
    sha256: str | None = None
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    size: int | None = None
    # None when missing, larger than MAX_CONTENT, or secret (only its checksum is read).
    content: bytes | None = None
    is_regular: bool = True

    @property
    def text(self) -> str | None:
        if self.content is None:
            return None
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass(frozen=True)
class UnitFacts:
    name: str
    active: str  # active, inactive, failed, activating, deactivating, reloading, unknown
    enabled: str  # enabled, disabled, static, masked, not-found, ...
    # Health over time, from the same `systemctl show` (the ``unithistory``
    # record): how often systemd restarted the unit by its Restart= since it
    # was last started or restarted by hand (by piprov too) or reset-failed,
    # within this boot (a systemd before 235 has no NRestarts: there it is
    # the restarts of the whole boot, from the journal, the ``unitjournal``
    # record; None: a unit type without it, or not known), and how many
    # seconds before the facts were read it last died without being asked to
    # (None: not since then, or not known).
    # Status shows them; planning ignores them, they are not drift.
    restarts: int | None = None
    failed_ago: float | None = None

    @property
    def is_active(self) -> bool:
        return self.active in ("active", "reloading")

    @property
    def is_failed(self) -> bool:
        return self.active == "failed"

    @property
    def is_transient(self) -> bool:
        """Starting or stopping right now (also: waiting to auto-restart)."""
        return self.active in ("activating", "deactivating")

    @property
    def is_enabled(self) -> bool:
        # static units have no [Install]; systemd calls alias/linked ones enabled too.
        return self.enabled in ("enabled", "enabled-runtime", "static", "alias", "linked", "indirect")


@dataclass(frozen=True)
class EtcdKeyFacts:
    key: str
    state: EtcdKeyState
    value: str | None = None


@dataclass(frozen=True)
class Address:
    """One IPv4 address of the node, as `ip -o -4 addr show` printed it."""

    interface: str
    cidr: str  # 192.168.1.100/24: the node's own (local) address and the prefix length
    # The far end of a point-to-point link (`inet 10.8.0.6 peer 10.8.0.5/32`:
    # OpenVPN, PPP); the prefix length is the peer's, the local address is ip.
    peer: str | None = None
    # The address label when it is not the interface's name (`eth0:1`).
    label: str | None = None
    secondary: bool = False

    @property
    def ip(self) -> str:
        return self.cidr.split("/", 1)[0]


@dataclass(frozen=True)
class NodeFacts:
    host: str
    machine: str  # uname -m
    hostname: str
    os_id: str
    os_version: str
    files: Mapping[str, FileFacts] = field(default_factory=dict)
    units: Mapping[str, UnitFacts] = field(default_factory=dict)
    # Filled in by provision.read_facts from the controller's read of etcd (kube.etcd.read_keys).
    etcd_keys: Mapping[str, EtcdKeyFacts] = field(default_factory=dict)
    addresses: tuple[Address, ...] = ()
    # Program name -> absolute path on the node, None when not installed.
    binaries: Mapping[str, str | None] = field(default_factory=dict)
    # Seconds since the node booted (/proc/uptime) when the facts were read.
    uptime: float | None = None
    # Program (docker, systemd) -> the version word its --version printed, None
    # when it printed none (not installed). Raw: the support matrix judges it.
    versions: Mapping[str, str | None] = field(default_factory=dict)
    # Unit -> its drop-ins in /etc and /run (None: one whose name the script would not send).
    dropins: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)

    def file(self, path: str) -> FileFacts:
        """Facts of ``path``; a path the command did not ask about counts as missing."""
        return self.files.get(path) or FileFacts(path, exists=False)

    def address(self, ip: str) -> Address | None:
        """The node's own address ``ip`` (the inventory's), on whichever interface holds it.

        Matched on the local address only: a point-to-point peer is the other
        end's, and another address on the same interface (several per
        interface, secondary ones, labels) is not this one.
        """
        return next((a for a in self.addresses if a.ip == ip), None)

    def unit(self, name: str) -> UnitFacts:
        return self.units.get(name) or UnitFacts(name, "unknown", "not-found")

    @property
    def occidentalis(self) -> str | None:
        """Content of /boot/occidentalis.txt (HypriotOS), None when absent."""
        f = self.file(OCCIDENTALIS)
        if not f.exists:
            return None
        return f.text if f.text is not None else ""

    @property
    def is_hypriot(self) -> bool:
        """HypriotOS: its boot partition carries the name its boot applies (device-init, or from 1.7
        cloud-init's user-data in /boot; Raspberry Pi OS keeps its user-data in /boot/firmware)."""
        return any(self.file(p).exists for p in (OCCIDENTALIS, DEVICE_INIT, CLOUD_INIT_USER_DATA[0]))
