"""Small host-side helpers: running tools, checking preconditions, tracking processes.

The host has no systemd as PID 1, so the lab supervises its own long-lived
processes (nspawn, registry, relays, decoys). A pid alone is not an identity
(pids are reused), so every process is recorded as (pid, start time) and only
signalled when both still match.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from piprov_lab.errors import LabError

# Tool -> the Debian package that ships it, so the message can name the fix.
TOOL_PACKAGES: dict[str, str] = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "mount": "mount",
    "docker-registry": "docker-registry",
}


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the virtual Pi lab needs root (it creates network namespaces, mounts and containers)",
            hint="run it again with sudo, or as root",
        )


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if _which(t) is None]
    if missing:
        pkgs = sorted({TOOL_PACKAGES.get(t, t) for t in missing})
        raise LabError(
            f"missing system tool{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            hint=f"install the Debian package{'s' if len(pkgs) > 1 else ''}: "
            f"apt-get install {' '.join(pkgs)}  (or run scripts/setup.sh)",
        )


def _which(tool: str) -> str | None:
    # root's PATH may lack /usr/sbin when started through sudo or a minimal env.
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")


# Every node's systemd, journald, dbus and avahi each hold inotify instances;
# the kernel default (128 per user, and all nodes run as root) is exhausted by
# a few labs and a node's PID 1 then dies at boot with "Too many open files".
INOTIFY_MINIMUM = {"max_user_instances": 8192, "max_user_watches": 1048576}


def raise_inotify_limits() -> None:
    """Raise the host's inotify limits to what a fleet of nodes needs (never lowers them)."""
    for key, want in INOTIFY_MINIMUM.items():
        path = Path("/proc/sys/fs/inotify") / key
        try:
            if int(path.read_text()) < want:
                path.write_text(str(want))
        except (OSError, ValueError) as e:
            raise LabError(
                f"cannot raise fs.inotify.{key} to {want}: {e}",
                hint=f"run `sysctl -w fs.inotify.{key}={want}`; nodes fail to boot below it",
            ) from e


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a host command; on failure raise LabError carrying its stderr."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as e:
        require_tools(argv[0])
        raise LabError(f"cannot run {argv[0]}: {e}") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout} s") from e
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {detail}")
    return proc


@dataclass(frozen=True)
class ProcRef:
    """A process the lab started: pid plus its kernel start time (pid reuse guard)."""

    pid: int
    start: int

    @classmethod
    def from_json(cls, data: object) -> ProcRef | None:
        if isinstance(data, dict) and isinstance(data.get("pid"), int) and isinstance(data.get("start"), int):
            return cls(data["pid"], data["start"])
        return None


def proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of stat: starttime


def proc_ref(pid: int) -> ProcRef:
    start = proc_start_time(pid)
    if start is None:
        raise LabError(f"process {pid} exited right after it was started")
    return ProcRef(pid, start)


def alive(ref: ProcRef | None) -> bool:
    if ref is None:
        return False
    if proc_start_time(ref.pid) != ref.start:
        return False
    try:
        state = Path(f"/proc/{ref.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def kill(ref: ProcRef | None, sig: int = signal.SIGTERM, *, wait: float = 5.0) -> None:
    """Signal a recorded process (only if it is still the same one) and reap/wait for it."""
    if not alive(ref):
        return
    assert ref is not None
    try:
        os.kill(ref.pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        _reap(ref.pid)
        if not alive(ref):
            return
        time.sleep(0.05)
    if sig != signal.SIGKILL:
        kill(ref, signal.SIGKILL, wait=wait)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def spawn(
    argv: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None, cgroups: Sequence[Path] = ()
) -> ProcRef:
    """Start a long-lived process detached from us (own session), output to ``log``.

    A shell starts it in the background and exits, so the process is adopted
    by init: whoever stops it later (this process, or `piprov lab down` from
    another one) never leaves a zombie behind in a long-running parent.
    The shell first joins ``cgroups`` (directories, one per hierarchy), so the
    process starts in them.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    launcher = (
        'n=$1; log=$2; shift 2; while [ "$n" -gt 0 ]; do echo $$ >"$1/cgroup.procs" || exit 1; '
        'shift; n=$((n - 1)); done; "$@" </dev/null >>"$log" 2>&1 & echo $!'
    )
    proc = subprocess.run(
        ["sh", "-c", launcher, "sh", str(len(cgroups)), str(log), *map(str, cgroups), *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        env=dict(env) if env is not None else None,
        timeout=30,
    )
    try:
        pid = int(proc.stdout.strip())
    except ValueError:
        raise LabError(f"could not start {argv[0]}: {proc.stderr.strip()}") from None
    return proc_ref(pid)


# With no systemd on the host, a systemd-nspawn started --register=no --keep-unit
# roots its container in "payload" under the cgroup it was started in: one
# directory shared by every node. Node A's systemd then removed
# system.slice/X.service (empty, for A) from under node B's X.service between
# two of its ExecStart lines: 219/CGROUP, in CI. A Pi has a cgroup tree of its
# own; so does each node, under CGROUP_DIR of each hierarchy systemd tracks
# units in.
CGROUP_DIR = "piprov-lab"


def tracking_hierarchies() -> list[Path]:
    """The cgroup hierarchies systemd tracks units in: cgroup2 (on /sys/fs/cgroup, or
    /sys/fs/cgroup/unified on a hybrid host) and the v1 name=systemd one; nspawn joins
    every one of them (systemd's cg_unified_cached decides which it reads back)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mnt = Path(fields[4])
        if tail[0] == "cgroup2" and str(mnt) in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
            found.append(mnt)
        elif tail[0] == "cgroup" and "name=systemd" in tail[2].split(","):
            found.append(mnt)
    return found


def v1_hierarchy(controller: str, mountinfo: str | None = None) -> Path | None:
    """Where the cgroup v1 hierarchy carrying ``controller`` is mounted (None: not on v1)."""
    text = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] == "cgroup" and controller in tail[2].split(","):
            return Path(fields[4])
    return None


def cpu_hierarchies() -> list[Path]:
    """The v1 hierarchies of the cpu and cpuacct controllers (one mount on hosts that
    co-mount them). Each node gets a cgroup of its own in them too: nspawn unshares a
    cgroup namespace, so a node sees its own subtree as the root there, and everything
    its systemd and dockerd make (system.slice/docker.service, docker/<id>) stays
    under the node's cgroup, counted in its cpuacct and held to its quota. (Before,
    the nodes' dockers made their cgroups at the root of the host's hierarchy.)"""
    found = [v1_hierarchy(c) for c in ("cpu", "cpuacct")]
    return sorted({p for p in found if p is not None})


def node_hierarchies() -> list[Path]:
    """Every hierarchy a node has a cgroup of its own in (tracking first, then cpu)."""
    tracking = tracking_hierarchies()
    return tracking + [p for p in cpu_hierarchies() if p not in tracking]


def node_cgroups(machine: str, cpu_quota_pct: int = 0) -> list[Path]:
    """Fresh cgroups of the node's own, one per hierarchy of ``node_hierarchies`` (what is
    left of its last boot pruned, as a reboot starts a Pi with none), the cpu quota set."""
    paths = [root / CGROUP_DIR / machine for root in node_hierarchies()]
    for path in paths:
        prune_cgroup(path, keep_top=True)
        path.mkdir(parents=True, exist_ok=True)
    set_cpu_quota(machine, cpu_quota_pct)
    return paths


def node_cgroup(machine: str, controller: str) -> Path | None:
    root = v1_hierarchy(controller)
    return None if root is None else root / CGROUP_DIR / machine


# CFS bandwidth: a node may run ``quota`` us per ``period`` us. A short period makes a
# slow node slow evenly (with 100 ms, the kernel's default, a 10% node would run 10 ms
# then stall 90 ms), but the kernel refuses a quota under 1 ms.
MIN_QUOTA_US = 1000
SHORT_PERIOD_US = 10_000
MAX_PERIOD_US = 1_000_000


def cfs_settings(pct: int) -> tuple[int, int]:
    """(period_us, quota_us) giving ``pct`` percent of one core; quota -1 (none) for 0."""
    if pct < 0:
        raise LabError("--cpu-quota must not be negative")
    if pct == 0:
        return 100_000, -1
    period = max(SHORT_PERIOD_US, -(-MIN_QUOTA_US * 100 // pct))
    if period > MAX_PERIOD_US:
        raise LabError(f"--cpu-quota {pct} is too small", hint="the smallest is 1 (1% of one core)")
    return period, period * pct // 100


def quota_pct(period_us: int, quota_us: int) -> float:
    """What cpu.cfs_period_us and cpu.cfs_quota_us give, in percent of one core (0: none)."""
    return 0.0 if quota_us < 0 or period_us <= 0 else round(100 * quota_us / period_us, 2)


def set_cpu_quota(machine: str, pct: int) -> None:
    """Write the node's CFS quota (0 lifts it); a host without a v1 cpu hierarchy refuses a quota."""
    period, quota = cfs_settings(pct)
    cg = node_cgroup(machine, "cpu")
    if cg is None or not cg.is_dir():
        if pct:
            raise LabError("this host has no cgroup v1 cpu hierarchy: --cpu-quota needs one",
                           hint="`mount | grep cgroup` shows the hierarchies")
        return
    # Lift the quota first: the kernel refuses a period under a quota already set.
    (cg / "cpu.cfs_quota_us").write_text("-1")
    (cg / "cpu.cfs_period_us").write_text(str(period))
    (cg / "cpu.cfs_quota_us").write_text(str(quota))


def parse_cpu_stat(text: str) -> dict[str, int]:
    """cpu.stat (v1: nr_periods, nr_throttled, throttled_time in ns; v2: usage_usec, ...)."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def node_cpu(machine: str) -> dict[str, float | int]:
    """The node's CPU as its cgroups count it: quota (percent of a core), usage, throttling."""
    out: dict[str, float | int] = {}
    cpu, acct = node_cgroup(machine, "cpu"), node_cgroup(machine, "cpuacct")
    try:
        if cpu is not None and cpu.is_dir():
            out["cpu_quota_pct"] = quota_pct(int((cpu / "cpu.cfs_period_us").read_text()),
                                             int((cpu / "cpu.cfs_quota_us").read_text()))
            stat = parse_cpu_stat((cpu / "cpu.stat").read_text())
            out["nr_throttled"] = stat.get("nr_throttled", 0)
            out["throttled_seconds"] = round(stat.get("throttled_time", 0) / 1e9, 3)
        if acct is not None and acct.is_dir():
            out["cpu_seconds"] = round(int((acct / "cpuacct.usage").read_text()) / 1e9, 3)
    except (OSError, ValueError):
        pass  # the node stopped while we read: report what was read
    return out


def prune_cgroup(path: Path, *, keep_top: bool = False) -> None:
    """Remove the empty cgroups under ``path`` (and ``path`` itself unless ``keep_top``),
    deepest first; a cgroup something still runs in stays."""
    if not path.is_dir():
        return
    for dirpath, _, _ in os.walk(path, topdown=False):
        if keep_top and Path(dirpath) == path:
            continue
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def write_ssh_keypair(path: Path, comment: str, *, owner: tuple[int, int] | None = None) -> str:
    """Write an ed25519 key pair as OpenSSH writes it (``path``, ``path.pub``); return the public line.

    Done in Python (cryptography, already needed by paramiko) so the host needs
    no openssh-client.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode() + f" {comment}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    Path(f"{path}.pub").write_text(line)
    os.chmod(f"{path}.pub", 0o644)
    if owner is not None:
        os.chown(path, *owner)
        os.chown(f"{path}.pub", *owner)
    return line.strip()


def ssh_banner(ip: str, port: int = 22, timeout: float = 0.5) -> bool:
    """True when an SSH server answers with its version banner."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def tcp_open(ip: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False
