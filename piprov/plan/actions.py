"""What a plan asks a node to do, as data: the planner's vocabulary.

Each action is a frozen value naming one change (write this file, restart these
units, set this etcd key). The planner only builds them; :mod:`piprov.shell.script`
alone turns them into the shell a node runs, so the planner stays free of quoting,
redirections and error handling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union


@dataclass(frozen=True)
class WriteFile:
    """Put ``content`` at ``path`` atomically, with mode and owner."""

    path: str
    content: bytes = field(repr=False)  # a private key must not reach a log through repr
    mode: int
    owner: str
    group: str


@dataclass(frozen=True)
class RemoveFile:
    path: str


@dataclass(frozen=True)
class RemoveStaleTemps:
    """Remove what interrupted earlier runs left behind in ``dirs`` (and their uploaded scripts)."""

    dirs: tuple[str, ...]


@dataclass(frozen=True)
class Systemctl:
    verb: str  # daemon-reload, unmask, enable, restart, start, try-restart ...
    units: tuple[str, ...] = ()
    quiet: bool = False
    # Only queue the job: the component's health checks are the wait.
    no_block: bool = False
    # Neither a failure nor a missing unit stops the script (e.g. avahi re-announcing a name).
    best_effort: bool = False
    # enable/unmask without their implicit daemon-reload: the plan reloads once, after both.
    no_reload: bool = False


@dataclass(frozen=True)
class SetHostname:
    """The running hostname, now, without a reboot (the files are separate WriteFiles)."""

    name: str
    method: Literal["occidentalis", "device-init", "cloud-init", "hostnamectl"]


@dataclass(frozen=True)
class EtcdSet:
    etcdctl: str  # the command prefix reaching etcd on the node, from the playbook
    key: str
    value: str


@dataclass(frozen=True)
class DisableUnits:
    """Stop and disable those of ``units`` that exist, in one transaction (node removal)."""

    units: tuple[str, ...]


Action = Union[WriteFile, RemoveFile, RemoveStaleTemps, Systemctl, SetHostname, EtcdSet, DisableUnits]
