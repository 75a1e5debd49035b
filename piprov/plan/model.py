"""The plan as data: per node, per component, the changes to make and why.

A plan says what differs (files with their diffs, unit states, etcd keys, the
hostname); its ``actions`` say what the node must do about it, in order. How
those actions look as shell is :mod:`piprov.shell.script`'s business; how the
plan looks to a person or as JSON is the CLI's (``piprov.cli.views``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from piprov.errors import PiprovError
from piprov.plan.actions import (
    Action,
    DisableUnits,
    EtcdSet,
    RemoveFile,
    RemoveStaleTemps,
    SetHostname,
    Systemctl,
    WriteFile,
)
from piprov.plan.desired import DesiredNode
from piprov.plan.dropins import DropinRemoval

# Where each node keeps what piprov manages there (plan.owned writes and reads it).
RECORD = "/var/lib/piprov/owned"

Kind = Literal["unit", "file"]


@dataclass(frozen=True)
class FileChange:
    path: str
    content: bytes = field(repr=False)
    mode: int
    owner: str
    group: str
    old_sha256: str | None  # None: the file does not exist
    new_sha256: str
    diff: str  # unified diff, or a one-line note when no diff can be shown
    reason: str
    component: str = ""
    redacted: bool = False  # see DesiredFile.redacted

    @property
    def content_changed(self) -> bool:
        return self.old_sha256 != self.new_sha256

    @property
    def secret(self) -> bool:
        """Not world-readable (or redacted): its content and diff stay out of plans and logs."""
        return self.redacted or not self.mode & 0o004

    @property
    def action(self) -> WriteFile:
        return WriteFile(self.path, self.content, self.mode, self.owner, self.group)


@dataclass(frozen=True)
class EtcdKeyChange:
    key: str
    value: str
    old_value: str | None
    reason: str
    etcdctl: str  # the command prefix reaching etcd on the node

    @property
    def action(self) -> EtcdSet:
        return EtcdSet(self.etcdctl, self.key, self.value)


@dataclass(frozen=True)
class HostnameChange:
    """Set the hostname at once, no reboot.

    Write ``files`` first (``/etc/hosts`` keeps ``127.0.1.1 NAME`` so that sudo
    does not stall on the new name), then do ``actions`` in order.
    """

    old: str
    new: str
    method: Literal["occidentalis", "device-init", "cloud-init", "hostnamectl"]
    files: list[FileChange]
    reason: str
    set_running: bool = True  # the running name differs (not only the files)
    # Caches that would make the next boot apply the old files (cloud-init's datasource).
    stale_caches: tuple[str, ...] = ()

    @property
    def actions(self) -> list[Action]:
        forget: list[Action] = [RemoveFile(p) for p in self.stale_caches]
        if not self.set_running:
            return forget
        # avahi announces the name it started with; a restart re-announces (mDNS follows).
        return [*forget, SetHostname(self.new, self.method),
                Systemctl("try-restart", ("avahi-daemon.service",), best_effort=True)]


@dataclass(frozen=True)
class Removal:
    """One unit stopped and disabled, or one file removed, because the node no longer needs it."""

    kind: Kind
    component: str
    name: str
    reason: str


@dataclass
class OwnedChange:
    """The node's prune (in the order the node runs it) and the new record, written after it."""

    removals: list[Removal] = field(default_factory=list)
    record: FileChange | None = None

    @property
    def units(self) -> list[str]:
        return [r.name for r in self.removals if r.kind == "unit"]

    @property
    def files(self) -> list[str]:
        return [r.name for r in self.removals if r.kind == "file"]

    @property
    def actions(self) -> list[Action]:
        """Stop and disable first (one transaction), then the files, then systemd forgets the unit files."""
        acts: list[Action] = []
        if self.units:
            acts.append(DisableUnits(tuple(self.units)))
        acts += [RemoveFile(p) for p in self.files]
        if any(p.startswith("/etc/systemd/system/") for p in self.files):
            acts.append(Systemctl("daemon-reload"))
        if self.units:
            # A unit that failed before it was stopped stays listed as failed until this.
            acts.append(Systemctl("reset-failed", tuple(self.units), best_effort=True))
        if self.record is not None:
            acts.append(self.record.action)
        return acts

    @property
    def reasons(self) -> list[str]:
        out = [f"{r.name}: {r.reason}: {'stop and disable' if r.kind == 'unit' else 'remove'}" for r in self.removals]
        if self.record is not None:
            out.append(f"{RECORD}: {self.record.reason}")
        return out


@dataclass
class ComponentPlan:
    component: str
    files: list[FileChange] = field(default_factory=list)
    # Drop-ins that override piprov's units (plan.dropins): removed before the reload.
    remove: list[DropinRemoval] = field(default_factory=list)
    daemon_reload: bool = False
    unmask: list[str] = field(default_factory=list)
    enable: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    start: list[str] = field(default_factory=list)
    etcd_keys: list[EtcdKeyChange] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.files or self.remove or self.daemon_reload or self.unmask or self.enable or self.restart or self.start or self.etcd_keys
        )

    def unit_actions(self, *, no_block: bool = True) -> list[Systemctl]:
        """systemctl calls to make after the files are in place, in order.

        Restarts go in ONE systemctl call: restarting a socket and its service
        must be one transaction. With ``no_block`` (the default) start and
        restart only queue the jobs: the component's health checks are the
        wait, with their timeouts and diagnostics. A blocking start of
        k8s-flannel.service would last until flannel has a lease, i.e. for
        ever when etcd is unreachable.
        """
        acts: list[Systemctl] = []
        # unmask and enable edit symlinks on disk and would each reload the manager after
        # (v183 systemctl.c enable_unit: "if (!arg_no_reload) daemon_reload"): one explicit
        # reload after both does their work and the new unit files' at once.
        if self.unmask:
            acts.append(Systemctl("unmask", tuple(self.unmask), quiet=True, no_reload=True))
        if self.enable:
            acts.append(Systemctl("enable", tuple(self.enable), quiet=True, no_reload=True))
        if self.daemon_reload or self.unmask or self.enable:
            acts.append(Systemctl("daemon-reload"))
        if self.restart:
            acts.append(Systemctl("restart", tuple(self.restart), no_block=no_block))
        if self.start:
            acts.append(Systemctl("start", tuple(self.start), no_block=no_block))
        return acts

    @property
    def actions(self) -> list[Action]:
        """The component's whole change: files, then systemd."""
        return [*(f.action for f in self.files), *(RemoveFile(r.path) for r in self.remove), *self.unit_actions()]

    def etcd_actions(self) -> list[EtcdSet]:
        """Writing the component's etcd keys: done once it is healthy."""
        return [k.action for k in self.etcd_keys]


@dataclass
class NodePlan:
    node: str
    address: str
    hostname_change: HostnameChange | None
    components: list[ComponentPlan]
    desired: DesiredNode | None = field(default=None, repr=False, compare=False)
    # What the node's record names that it no longer needs, and the record's own update (plan.owned).
    owned: OwnedChange | None = None

    @property
    def changed(self) -> bool:
        return self.hostname_change is not None or self.owned is not None or any(c.changed for c in self.components)

    def component(self, name: str) -> ComponentPlan:
        for c in self.components:
            if c.component == name:
                return c
        raise KeyError(name)

    @property
    def all_files(self) -> list[FileChange]:
        """Every file this node's plan writes: hostname files first, then by component."""
        head = self.hostname_change.files if self.hostname_change else []
        return [*head, *(f for c in self.components for f in c.files)]

    @property
    def prelude_actions(self) -> list[Action]:
        """Once per node, before its first component: clean up after interrupted
        runs (always first: a node outside the run's nodes gets only that), set the
        hostname (files first, so sudo keeps resolving it), then prune what the node
        no longer needs and record what piprov manages there (plan.owned)."""
        paths = [*(self.desired.paths if self.desired else []), RECORD]
        dirs = {p.rsplit("/", 1)[0] or "/" for p in paths}
        acts: list[Action] = [RemoveStaleTemps(tuple(sorted(dirs)))]
        hc = self.hostname_change
        if hc is not None:
            acts += [*(f.action for f in hc.files), *hc.actions]
        if self.owned is not None:
            acts += self.owned.actions
        return acts

    @property
    def reasons(self) -> list[str]:
        if not self.changed:
            return ["no change: every file, unit and key is as desired"]
        out: list[str] = []
        if self.hostname_change is not None:
            out.append(self.hostname_change.reason)
        if self.owned is not None:
            out.extend(self.owned.reasons)
        for c in self.components:
            out.extend(f"{c.component}: {r}" for r in c.reasons if c.changed)
        return out


@dataclass(frozen=True)
class MasterMove:
    """The inventory's master is ``new``; etcd's store (``component``) is on ``old`` (plan.move)."""

    old: str
    new: str
    component: str

    @property
    def steps(self) -> list[str]:
        """What `up` does about it before the nodes' plans, in order."""
        return [f"back up {self.component}'s store on {self.old}",
                f"restore it on {self.new} (--force-new-cluster once)",
                f"then the plans: {self.old}'s master components removed, it stays a worker"]


@dataclass
class Plan:
    nodes: list[NodePlan]
    # node name -> why no plan could be made for it (unreachable, garbage facts); ``host`` names the node
    errors: dict[str, PiprovError] = field(default_factory=dict)
    # The master moved: etcd's store must follow it before the nodes' plans are applied (plan.move).
    move: MasterMove | None = None

    @property
    def changed(self) -> bool:
        return self.move is not None or any(n.changed for n in self.nodes)

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.node == name:
                return n
        raise KeyError(name)
