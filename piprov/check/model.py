"""What the preflight check saw on a node (:class:`CheckFacts`) and what it says of it (:class:`Finding`).

:class:`NodeCheck` is one node's answer: its facts and findings, or the error
that kept it from being checked. It is the seam for what comes next (a
``--fix``; ``piprov up``, which refuses a node with a failed finding): each finding
has a stable ``code``, a severity, what it breaks and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from piprov.errors import PiprovError
from piprov.facts import NodeFacts

Severity = Literal["ok", "warn", "fail"]
SEVERITIES: tuple[Severity, ...] = ("ok", "warn", "fail")
Hierarchy = Literal["v1", "hybrid", "v2", "none"]
IptablesMode = Literal["legacy", "nf_tables", "unknown", "missing"]


@dataclass(frozen=True)
class Swap:
    """One line of /proc/swaps."""

    name: str
    kind: str  # partition, file
    size_kb: int
    used_kb: int


@dataclass(frozen=True)
class Disk:
    """The filesystem holding a directory, as `df -P -k DIR` said."""

    path: str  # the directory asked about
    mount: str  # where its filesystem is mounted
    size_kb: int
    avail_kb: int


@dataclass(frozen=True)
class Fsync:
    """The synchronous-write measure: in ``directory``, ``writes_ms`` each minus the plain write's cost."""

    directory: str
    clock: Literal["ns", "cs"]  # date +%s%N, or /proc/uptime's hundredths
    writes_ms: tuple[float, ...]
    base_ms: float  # one write without fsync: dd's start and the clock reads

    @property
    def resolution_ms(self) -> float:
        return 10.0 if self.clock == "cs" else 0.001

    @property
    def max_ms(self) -> float:
        return max(self.writes_ms) if self.writes_ms else 0.0

    @property
    def mean_ms(self) -> float:
        return sum(self.writes_ms) / len(self.writes_ms) if self.writes_ms else 0.0


@dataclass(frozen=True)
class CheckFacts:
    """One node as the check script saw it; ``node`` holds the facts records it shares with `up`."""

    node: NodeFacts  # machine, hostname, os-release, docker/systemd versions, the flavour's file
    kernel: str
    os_values: Mapping[str, str]  # /etc/os-release
    model: str | None  # /proc/device-tree/model ("Raspberry Pi 3 Model B Rev 1.2")
    userland: str | None  # armhf, arm64, amd64, i386 (dpkg, else the ELF header of /bin/sh)
    userland_bits: int | None
    hierarchy: Hierarchy
    memory_effective: bool | None  # the memory controller, /proc/cgroups or cgroup.controllers
    memory_configured: bool | None  # cmdline.txt's last cgroup_enable/cgroup_disable=memory; None: silent
    cmdline_path: str | None  # the cmdline.txt read
    proc_cmdline: str
    swaps: tuple[Swap, ...]
    iptables: str | None  # `iptables -V`'s line
    iptables_mode: IptablesMode
    clock: int | None  # the node's time, seconds since the epoch
    skew: float | None  # node minus controller, 0 within the SSH round trip
    disks: Mapping[str, Disk]  # "root", "boot" (when found)
    throttled: int | None  # vcgencmd get_throttled; None: no vcgencmd (or it failed)
    vcgencmd: bool
    fsync: Fsync | None
    fsync_problem: str | None = None  # why there is no measure
    fsync_skipped: bool = False  # the measure was left out (the cheap checks of `piprov up`)

    @property
    def host(self) -> str:
        return self.node.host

    @property
    def flavour(self) -> str:
        """HypriotOS (the flavour the facts tell by /boot/occidentalis.txt), else os-release's ID."""
        return "hypriotos" if self.node.is_hypriot else (self.node.os_id or "unknown")

    @property
    def kernel_bits(self) -> int:
        return 64 if self.node.machine in ("aarch64", "arm64", "x86_64", "amd64") else 32


@dataclass(frozen=True)
class Finding:
    """One judgement: ``code`` (stable, e.g. ``cgroup.memory``), what was seen, and for warn/fail why it matters."""

    code: str
    title: str
    severity: Severity
    detail: str
    breaks: str = ""
    fix: str = ""
    # Machine-readable extras (the suggested etcd flags of a slow disk).
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeCheck:
    """One node's check: its findings, or the error that kept it from being checked."""

    node: str
    facts: CheckFacts | None = None
    findings: tuple[Finding, ...] = ()
    error: PiprovError | None = None

    @property
    def failed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "fail")

    @property
    def worst(self) -> Severity:
        """The worst severity among the findings (``fail`` when the node could not be checked)."""
        if self.error is not None:
            return "fail"
        return max((f.severity for f in self.findings), key=SEVERITIES.index, default="ok")
