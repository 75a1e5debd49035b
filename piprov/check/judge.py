"""Pure judgement: :class:`CheckFacts` + the book's thresholds -> findings, one per check.

Each judge picks the variant of its finding (``book.finding``); the variant's
severity and its words (what breaks, how to fix) are the book's
(playbooks/check/checks.yaml). Nothing here reads a file or talks to a node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from piprov.check.book import Book, EtcdTuning
from piprov.check.model import CheckFacts, Disk, Finding
from piprov.errors import PiprovError
from piprov.version import parse_version


@dataclass(frozen=True)
class NodeContext:
    """What the inventory and the playbooks say of the node (the judge reads nothing itself)."""

    runs_etcd: bool = False  # the node's role runs the book's etcd component
    arch: str | None = None  # the image arch (arm, arm64, amd64) the inventory pins for the node
    version_problem: PiprovError | None = None  # the support matrix on the node's docker/systemd


def judge(facts: CheckFacts, book: Book, context: NodeContext | None = None) -> tuple[Finding, ...]:
    """Every finding on ``facts``, in the order the checks are listed in the table."""
    ctx = context or NodeContext()
    return tuple(j(facts, book, ctx) for j in JUDGES)


Judge = Callable[[CheckFacts, Book, NodeContext], Finding]


def _os(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    pretty = f.os_values.get("PRETTY_NAME") or f"{f.node.os_id} {f.node.os_version}".strip()
    hypriot = f.os_values.get("HYPRIOT_OS_VERSION", "")
    flavour = f"HypriotOS {hypriot}".strip() if f.node.is_hypriot else f.flavour
    detail = ", ".join(x for x in (f"{flavour} ({pretty})" if pretty else flavour, f.model) if x)
    if not f.os_values:
        return book.finding("os", "unknown", detail, pretty=pretty or "-")
    return book.ok("os", detail, flavour=f.flavour)


def _arch(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    detail = f"kernel {f.node.machine} ({f.kernel}), userland {f.userland or '?'}"
    if ctx.arch:
        detail += f"; images pinned to {ctx.arch} in the inventory"
    if f.userland is None or f.userland_bits is None:
        return book.finding("arch", "unknown", detail, machine=f.node.machine, userland="?")
    images = _IMAGE_BITS.get(ctx.arch or "", f.kernel_bits)
    if images != f.userland_bits:
        return book.finding("arch", "mixed", detail, machine=f.node.machine, userland=f.userland)
    return book.ok("arch", detail)


# The word size of an image arch (the inventory's, piprov.render.to_image_arch's names).
_IMAGE_BITS = {"arm": 32, "arm64": 64, "amd64": 64}


def _hierarchy(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    need = book.thresholds.cgroup2_min_docker
    docker = f.node.versions.get("docker")
    if f.hierarchy == "none":
        return book.finding("cgroup.hierarchy", "none", "no cgroup controller mounted", docker=docker or "-", need=need)
    detail = {"v1": "v1 (legacy)", "hybrid": "hybrid (v1 controllers, v2 for systemd)", "v2": "v2 (unified)"}[f.hierarchy]
    have, floor = parse_version(docker or ""), parse_version(need)
    if f.hierarchy == "v2" and have is not None and floor is not None and have < floor:
        return book.finding("cgroup.hierarchy", "v2_old_docker", detail, docker=docker, need=need)
    return book.ok("cgroup.hierarchy", detail, hierarchy=f.hierarchy)


def _memory(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    path = f.cmdline_path or "cmdline.txt"
    said = {True: "turns it on", False: "turns it off", None: "says nothing"}[f.memory_configured]
    where = f"{f.cmdline_path} {said}" if f.cmdline_path else "no cmdline.txt"
    if f.memory_effective is None:
        return book.finding("cgroup.memory", "unknown", where, path=path)
    detail = f"{'on' if f.memory_effective else 'off'} in the running kernel; {where}"
    if f.memory_effective:
        if f.memory_configured is False:
            return book.finding("cgroup.memory", "losing", detail, path=path)
        return book.ok("cgroup.memory", detail)
    return book.finding("cgroup.memory", "pending" if f.memory_configured else "off", detail, path=path)


def _swap(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    total = sum(s.size_kb for s in f.swaps) // 1024
    if not f.swaps:
        return book.ok("swap", "off")
    detail = ", ".join(f"{s.name} ({s.kind}, {s.size_kb // 1024} MB, {s.used_kb // 1024} MB used)" for s in f.swaps)
    return book.finding("swap", "on", detail, total_mb=total)


def _iptables(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    detail = f.iptables or "not installed"
    variant = {"nf_tables": "nft", "missing": "missing", "unknown": "unknown"}.get(f.iptables_mode)
    return book.finding("iptables", variant, detail) if variant else book.ok("iptables", detail)


def _versions(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    docker, systemd = f.node.versions.get("docker"), f.node.versions.get("systemd")
    detail = f"docker {docker or '-'}, systemd {systemd or '-'}"
    if ctx.version_problem is not None:
        return book.finding("versions", "outside", detail, problem=ctx.version_problem.message,
                            hint=ctx.version_problem.hint or "see `piprov versions`")
    if docker is None:
        return book.finding("versions", "no_docker", detail, problem="no docker", hint="")
    return book.ok("versions", detail, docker=docker, systemd=systemd)


def _clock(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    t = book.thresholds
    values: dict[str, Any] = {"skew": "?" if f.skew is None else f"{f.skew:+.0f}", "min_year": t.min_year}
    if f.clock is None or f.skew is None:
        return book.finding("clock", "unknown", "no time", **values)
    year = 1970 + int(f.clock // 31556952)
    detail = f"node year {year}, {values['skew']} s off the controller" if f.skew else "in step with the controller"
    if year < t.min_year:
        return book.finding("clock", "unset", detail, **values)
    if abs(f.skew) >= t.fail_skew_seconds:
        return book.finding("clock", "far", detail, **values)
    if abs(f.skew) >= t.warn_skew_seconds:
        return book.finding("clock", "skewed", detail, **values)
    return book.ok("clock", detail, skew_seconds=f.skew)


def _space(code: str, disk: Disk | None, book: Book, low_mb: float, fail_mb: float) -> Finding:
    if disk is None:
        return book.finding(code, "unknown", "df did not answer", free_mb="?", mount="?")
    free = disk.avail_kb // 1024
    detail = f"{free} MB free of {disk.size_kb // 1024} MB on {disk.mount}"
    if free < fail_mb:
        return book.finding(code, "full", detail, free_mb=free, mount=disk.mount)
    if free < low_mb:
        return book.finding(code, "low", detail, free_mb=free, mount=disk.mount)
    return book.ok(code, detail, free_mb=free)


def _root(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    lim = book.thresholds.root_free_mb
    return _space("disk.root", f.disks.get("root"), book, lim.warn, lim.fail)


def _boot(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    boot, root = f.disks.get("boot"), f.disks.get("root")
    if boot is None or (root is not None and boot.mount == root.mount):
        return book.ok("disk.boot", "no boot filesystem of its own" + (f" ({boot.path} is on /)" if boot else ""))
    lim = book.thresholds.boot_free_mb
    return _space("disk.boot", boot, book, lim.warn, lim.fail)


# vcgencmd get_throttled's bits (raspberrypi-firmware.h GET_THROTTLED; bit 3/19 the soft temperature limit).
_NOW = {0x1: "under-voltage", 0x2: "arm frequency capped", 0x4: "throttled", 0x8: "soft temperature limit"}
_SINCE_BOOT = {bit << 16: what for bit, what in _NOW.items()}


def _power(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    if not f.vcgencmd:
        return book.ok("power", "not measured: no vcgencmd (not a Raspberry Pi's firmware)")
    if f.throttled is None:
        return book.ok("power", "not measured: vcgencmd get_throttled gave no answer")
    value = f"throttled={f.throttled:#x}"
    now = ", ".join(w for b, w in _NOW.items() if f.throttled & b)
    since = ", ".join(w for b, w in _SINCE_BOOT.items() if f.throttled & b)
    values: dict[str, Any] = {"value": value, "now": now or "-", "since_boot": since or "-"}
    if f.throttled & 0x1:
        return book.finding("power", "under_voltage", f"{value}: {now}", **values)
    if now:
        return book.finding("power", "throttled", f"{value}: {now}", **values)
    if since:
        return book.finding("power", "occurred", f"{value}: since boot {since}", **values)
    return book.ok("power", f"{value}: none")


def etcd_timeouts(max_ms: float, tuning: EtcdTuning) -> tuple[int, int]:
    """(--heartbeat-interval, --election-timeout) in ms for a disk whose slowest sync write took ``max_ms``."""
    def up(x: float) -> int:
        return int(math.ceil(x / tuning.round_ms) * tuning.round_ms)

    heartbeat = max(tuning.heartbeat_default_ms, up(max_ms * tuning.heartbeat_per_write))
    election = max(tuning.election_default_ms, up(heartbeat * tuning.election_per_heartbeat))
    election = min(election, tuning.election_max_ms)
    return min(heartbeat, up(election / tuning.election_per_heartbeat)), election


def _fsync(f: CheckFacts, book: Book, ctx: NodeContext) -> Finding:
    m = f.fsync
    if m is None and f.fsync_skipped:
        return book.ok("fsync", "not measured: left out (the cheap checks `piprov up` runs; `piprov check` measures)")
    if m is None:
        return book.finding("fsync", "unmeasured", f.fsync_problem or "no measure", **_fsync_values("?", "?", "?"))
    coarse = m.clock == "cs" and m.max_ms < m.resolution_ms
    shown = f"< {m.resolution_ms:.0f}" if coarse else f"{m.max_ms:.1f}"
    detail = (f"{len(m.writes_ms)} writes of {book.probe.fsync_bytes // 1024} KiB with fsync in {m.directory}: "
              f"max {shown} ms, mean {m.mean_ms:.1f} ms" + (" (timed in hundredths of a second)" if m.clock == "cs" else ""))
    heartbeat, election = etcd_timeouts(m.max_ms, book.etcd)
    data = {"max_ms": m.max_ms, "mean_ms": m.mean_ms, "heartbeat_interval_ms": heartbeat,
            "election_timeout_ms": election}
    values = _fsync_values(shown, f"{m.mean_ms:.1f}", m.directory, heartbeat, election)
    lim = book.thresholds.fsync_ms
    if not ctx.runs_etcd:
        return book.finding("fsync", "worker", detail + f" (no {book.etcd.component} here)", data=data, **values)
    if m.max_ms > lim.fail:
        return book.finding("fsync", "very_slow", detail, data=data, **values)
    if m.max_ms > lim.warn:
        default = (heartbeat, election) == (book.etcd.heartbeat_default_ms, book.etcd.election_default_ms)
        return book.finding("fsync", "slow" if default else "slow_tune", detail, data=data, **values)
    return book.ok("fsync", detail, **data)


def _fsync_values(max_ms: str, mean_ms: str, directory: str, heartbeat: object = "?",
                  election: object = "?") -> dict[str, Any]:
    return {"max_ms": max_ms, "mean_ms": mean_ms, "directory": directory, "heartbeat": heartbeat,
            "election": election}


JUDGES: tuple[Judge, ...] = (_os, _arch, _hierarchy, _memory, _swap, _iptables, _versions, _clock, _root, _boot,
                             _power, _fsync)
