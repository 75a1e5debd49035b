"""The validated inventory: what the user says the fleet should be.

These are plain frozen values. The loader (``piprov.inventory.load``) builds
them from YAML and records where each node was defined so that later errors
can point back at the file and line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

from piprov.errors import InventoryError, Location, PiprovError

# Reserved for documentation (RFC 5737, RFC 3849): inventory.example.yaml
# uses them, so running piprov on the example reaches nobody's machine.
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def refuse_documentation_address(node: Node) -> None:
    """Raise before any packet goes to an address that only exists in documentation."""
    try:
        ip = ipaddress.ip_address(node.address)
    except ValueError:
        return  # a host name: DNS decides
    if any(ip in net for net in DOCUMENTATION_NETWORKS):
        raise InventoryError(
            f"{node.address} is a documentation address (RFC 5737): no Pi answers there, and piprov does not try",
            host=node.name,
            location=node.location,
            hint="this looks like inventory.example.yaml: put your Pis' addresses in "
                 "(`piprov discover --add` finds them), or point -i at your own inventory",
        )


Role = Literal["master", "worker"]
HostKeyPolicy = Literal["strict", "tofu"]

# Kernel machine names (uname -m) to the architecture suffix of the images
# (etcd-arm, hyperkube-arm64, ...). Pis of 2016 were armv6l/armv7l.
ARCH_MAP: Mapping[str, str] = {
    "armv6l": "arm",
    "armv7l": "arm",
    "aarch64": "arm64",
    "arm64": "arm64",
    "x86_64": "amd64",
    "amd64": "amd64",
}

def image_arch(machine: str) -> str:
    """Map ``uname -m`` (or an image arch already) to the image suffix."""
    try:
        return ARCH_MAP[machine]
    except KeyError:
        known = ", ".join(sorted(ARCH_MAP))
        raise PiprovError(
            f"unsupported architecture {machine!r}",
            hint=f"piprov knows {known}; set 'arch' on the node in the inventory to override",
        ) from None


@dataclass(frozen=True)
class SshSettings:
    user: str = "pirate"
    port: int = 22
    identity_file: str | None = None
    host_key_policy: HostKeyPolicy = "strict"
    connect_timeout: float = 10.0
    # ``[user@]host[:port]`` or an inventory node's name: reach the node through it.
    proxy_jump: str | None = None
    # The settings the inventory gives (globally or on the node): these win over
    # ~/.ssh/config; the others may come from it (piprov.ssh.config).
    explicit: frozenset[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class ImageSpec:
    repository: str
    tag: str
    # Where the inventory set it (None for the playbooks' defaults): an error
    # about an image name found only once the graph is at hand points there.
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ImageSettings:
    registry: str = "gcr.io/google_containers"
    insecure_registries: tuple[str, ...] = ()
    # Image name -> repository and tag the inventory sets: overrides of the
    # playbooks' defaults (graph.image_defaults), which the inventory does not know.
    specs: Mapping[str, ImageSpec] = field(default_factory=dict)
    # Per image-arch overrides, e.g. {"arm64": {"hyperkube": ImageSpec(...)}}.
    arch_overrides: Mapping[str, Mapping[str, ImageSpec]] = field(default_factory=dict)

    def ref(self, name: str, arch: str, defaults: Mapping[str, ImageSpec]) -> str:
        """Full image reference for image ``name`` on image arch ``arch``.

        ``registry/repository-arch:tag`` as the 2016 images were named; the
        inventory's settings win over ``defaults`` (the playbooks').
        """
        spec = self.arch_overrides.get(arch, {}).get(name) or self.specs.get(name) or defaults[name]
        return f"{self.registry}/{spec.repository}-{arch}:{spec.tag}"


@dataclass(frozen=True)
class NetworkSettings:
    flannel_network: str = "10.0.0.0/16"
    flannel_subnet_len: int = 24
    flannel_backend: str = "host-gw"
    # None: let flannel derive it from the interface (what the seed did).
    mtu: int | None = None
    etcd_port: int = 4001
    # The apiserver's insecure port, bound to 127.0.0.1 only (the master's own
    # kubelet, proxy, scheduler and controller-manager); the LAN uses the secure port.
    apiserver_port: int = 8080
    apiserver_secure_port: int = 6443


@dataclass(frozen=True)
class Node:
    name: str  # the hostname piprov sets on the node
    address: str
    role: Role
    ssh: SshSettings
    arch: str | None = None  # override of the detected image arch
    labels: Mapping[str, str] = field(default_factory=dict)
    location: Location | None = None
    # The MAC seen by `piprov discover --add`: lets discovery recognise a known
    # Pi after its address changed (DHCP). Optional; never used to connect.
    mac: str | None = None


@dataclass(frozen=True)
class BackupSchedule:
    """``backup:``: the master's timer that keeps the newest ``keep`` etcd backups on the node.

    ``every`` is a systemd calendar event (``daily``, ``*-*-* 03:00``) or a time
    span (``6h``, ``1h 30min``); which one is :attr:`is_span`.
    """

    every: str
    keep: int
    location: Location | None = None

    @property
    def is_span(self) -> bool:
        return bool(SPAN_RE.match(self.every))


# A systemd time span (systemd.time(7)): numbers with a unit, optionally spaced.
SPAN_RE = re.compile(r"^\d+ ?(usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|"
                     r"days|day|d|weeks|week|w)( ?\d+ ?(usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|"
                     r"hours|hour|hr|h|days|day|d|weeks|week|w))*$")
# The components a top-level inventory setting switches on (a component's playbook `when:`).
SWITCHES = ("backup",)


@dataclass(frozen=True)
class Inventory:
    path: Path
    cluster_name: str
    ssh: SshSettings
    images: ImageSettings
    network: NetworkSettings
    nodes: tuple[Node, ...]
    known_hosts: Path
    # cluster.pki_dir: where the cluster PKI (piprov.pki) lives on the controller.
    pki_dir: Path | None = None
    # backup: the master keeps etcd backups by a timer (None: no timer).
    backup: BackupSchedule | None = None

    def switched_on(self, switch: str) -> bool:
        """Whether the inventory sets ``switch`` (one of :data:`SWITCHES`), a component's ``when:``."""
        return switch == "backup" and self.backup is not None

    @property
    def pki_directory(self) -> Path:
        """The cluster's CA and certificates on the controller: ``cluster.pki_dir``, else ``<inventory file>.pki``."""
        if self.pki_dir is not None:
            return self.pki_dir
        p = self.path.expanduser().absolute()
        return p.with_name(p.name + ".pki")

    @property
    def master(self) -> Node:
        return next(n for n in self.nodes if n.role == "master")

    @property
    def workers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "worker")

    def node(self, name_or_address: str) -> Node:
        for n in self.nodes:
            if name_or_address in (n.name, n.address):
                return n
        raise PiprovError(
            f"no node named {name_or_address!r} in {self.path}",
            hint="`piprov inventory list` shows the nodes",
        )
