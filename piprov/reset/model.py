"""What a reset does on a node and what it found left, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

# What the script removes and the audit looks for, by kind (the words of its output).
KINDS = ("unit", "container", "mount", "path", "file", "dir", "interface", "iptables", "route", "record")


@dataclass(frozen=True)
class Stage:
    """One component's part, in reverse graph order: its containers go (while its daemon answers), then its units stop."""

    component: str
    units: tuple[str, ...]
    docker_host: str | None = None


@dataclass(frozen=True)
class ResetTarget:
    """Everything a reset of ``node`` touches; every name is one the facts' patterns accept (safe in sh)."""

    node: str
    stages: tuple[Stage, ...]
    files: tuple[str, ...]  # piprov's own: the record's and the playbooks' paths for the node's role
    paths: tuple[str, ...]  # what the running stack made (removed, mounts under them first)
    data: tuple[str, ...]  # removed only with --wipe-data
    interfaces: tuple[str, ...]
    chains: tuple[str, ...]  # iptables chain names, or prefixes ending in '*'
    matches: tuple[str, ...]  # a rule holding one of these words goes
    routes: tuple[str, ...]  # CIDRs: routes to destinations inside them go
    forward_policy: str | None  # the filter table's FORWARD policy after the reset (None: left as it is)
    container_roots: tuple[str, ...]  # the daemons' data roots: containers/ under each must be empty
    docker: str
    iptables: tuple[str, ...]  # the iptables programs (iptables, ip6tables): their -save/-restore
    record: str
    wipe_data: bool = False

    @property
    def units(self) -> list[str]:
        return [u for s in self.stages for u in s.units]


@dataclass(frozen=True)
class Leftover:
    kind: str
    what: str


@dataclass
class NodeReset:
    node: str
    removed: list[Leftover] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    # Kubernetes' side (drain, Node object, flannel lease), in the order done.
    cluster: list[str] = field(default_factory=list)
    # With --hostname: the OS's default name the node has again.
    hostname: str | None = None

    @property
    def clean(self) -> bool:
        return not self.leftovers

    def removed_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.removed:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out
