"""Desired state of a node, as data: what :mod:`piprov.render` makes and the planner compares with facts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping

from piprov.inventory.model import Node


@dataclass(frozen=True)
class DesiredFile:
    path: str
    # Left out of repr: a private key must not end up in a log or a traceback.
    content: bytes = field(repr=False)
    mode: int
    owner: str
    group: str
    component: str
    template: str = ""
    # Units restarted when this file's content changes.
    restarts: tuple[str, ...] = ()
    # Keep its content out of plans even if it is world-readable (a certificate).
    redacted: bool = False

    @property
    def sha256(self) -> str:
        # Asked ~70 times a node while planning and printing: computed once. Not
        # functools.cached_property: on Python 3.11 its lock is one for every
        # instance, and 250 nodes are planned on parallel threads.
        got: str | None = self.__dict__.get("_sha256")
        if got is None:
            got = hashlib.sha256(self.content).hexdigest()
            object.__setattr__(self, "_sha256", got)
        return got

    @property
    def secret(self) -> bool:
        """Its content shows in no plan (no diff); not world-readable ones also never leave the node."""
        return self.redacted or not self.mode & 0o004

    @property
    def is_unit_file(self) -> bool:
        return self.path.startswith("/etc/systemd/system/")


@dataclass(frozen=True)
class RestartCascade:
    """``units`` of ``component`` restart when piprov restarts or starts any of ``on``, because ``reason``.

    From the playbook's ``cascade`` edges: systemd does not propagate a
    restart along ``Wants=``, so the plan lists each such restart itself.
    """

    component: str
    units: tuple[str, ...]
    on: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class ConfigCheck:
    """A config file ``component``'s daemon reads besides its flags, refusing a key that is also a
    flag (the playbook's ``daemon_config``): checked against the units' flags, never written."""

    component: str
    path: str
    keys: Mapping[str, str]  # flag -> its key in the file, where they differ

    def key_of(self, flag: str) -> str:
        return self.keys.get(flag, flag)


@dataclass(frozen=True)
class DesiredNode:
    node: Node
    arch: str  # image arch: arm, arm64, amd64
    hostname: str
    files: list[DesiredFile]
    units: dict[str, list[str]]  # component -> its units on this node, graph order
    etcd_keys: dict[str, str]  # key -> value (master only)
    # Command prefix reaching etcd on this node (``... etcdctl --endpoints=...``).
    etcdctl: str | None = None
    # Restarts that follow a restart, in graph order (the playbook's ``cascade`` edges)
    cascades: tuple[RestartCascade, ...] = ()
    # etcd key -> the component that writes it once healthy
    etcd_owners: Mapping[str, str] = field(default_factory=dict)
    config_checks: tuple[ConfigCheck, ...] = ()
    # Every component the playbooks have, for any role: a prune's reason tells a role change from a removal.
    known_components: frozenset[str] = frozenset()
    # Components the inventory switches off (their playbook `when:` unset): component -> why.
    switched_off: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def components(self) -> list[str]:
        return list(self.units)

    def files_for(self, component: str) -> list[DesiredFile]:
        return [f for f in self.files if f.component == component]

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    @property
    def all_units(self) -> list[str]:
        return [u for us in self.units.values() for u in us]
