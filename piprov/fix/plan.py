"""What `check --fix` would change on a node, from its check alone (pure, tested from data).

Three findings have a fix that is a file edit or a switch, the rest are said and left to the user:
- the memory cgroup off (or about to be: cmdline.txt turns it off) and cgroup v2 under an old docker:
  cmdline.txt's one line gets ``cgroup_enable=memory cgroup_memory=1`` (``cgroup_disable=memory`` and
  ``cgroup_memory=0`` taken out) or ``systemd.unified_cgroup_hierarchy=0``, its other words kept, a
  backup of the original beside it; the kernel reads it at boot, so the node reboots;
- swap on: swapped off now and for good (dphys-swapfile disabled where it is the swap's owner, as on
  Raspberry Pi OS; swap lines of /etc/fstab commented out, a backup beside it); no reboot;
- iptables on nf_tables: the legacy backend chosen with update-alternatives; the rules already in
  nf_tables stay until the node reboots, so it does.
"""

from __future__ import annotations

from dataclasses import dataclass

from piprov.check.model import CheckFacts, Finding, NodeCheck
from piprov.plan.actions import WriteFile

MEMORY_ON = ("cgroup_enable=memory", "cgroup_memory=1")
CGROUP_V1 = "systemd.unified_cgroup_hierarchy=0"
BACKUP_SUFFIX = ".piprov-bak"


@dataclass(frozen=True)
class NodeFix:
    """One node's mends: the cmdline.txt to write (its own mode and owner: /boot is FAT), swap off, the
    iptables backend, whether it reboots; in words (``done``), and the findings left for the user."""

    node: str
    cmdline: WriteFile | None = None
    swap_off: bool = False
    iptables_legacy: bool = False
    reboot: bool = False
    done: tuple[str, ...] = ()
    left: tuple[Finding, ...] = ()

    @property
    def changed(self) -> bool:
        return self.cmdline is not None or self.swap_off or self.iptables_legacy or self.reboot


def plan_fix(check: NodeCheck) -> NodeFix:
    """The node's fixes for its warn and fail findings (an unchecked node: none, nothing to go on)."""
    f = check.facts
    if f is None:
        return NodeFix(check.node)
    words, reboot, done, left = _cmdline_words(f), False, [], []
    swap_off = iptables_legacy = False
    for finding in (x for x in check.findings if x.severity != "ok"):
        if finding.code == "cgroup.memory" and f.memory_effective is not None and words is not None:
            reboot |= not f.memory_effective  # "losing": on now, the edit keeps it on after the next boot
            if f.memory_configured is not True:
                words = [w for w in words if w not in ("cgroup_disable=memory", "cgroup_memory=0")]
                words += [w for w in MEMORY_ON if w not in words]
                done.append(f"{f.cmdline_path}: {' '.join(MEMORY_ON)}")
            if not f.memory_effective:
                done.append("reboot: the kernel reads cmdline.txt at boot")
        elif finding.code == "cgroup.hierarchy" and f.hierarchy == "v2" and words is not None:
            words = [w for w in words if not w.startswith("systemd.unified_cgroup_hierarchy=")] + [CGROUP_V1]
            done.append(f"{f.cmdline_path}: {CGROUP_V1}, then a reboot")
            reboot = True
        elif finding.code == "swap" and f.swaps:
            swap_off = True
            done.append("swap off now and at boot (dphys-swapfile disabled, /etc/fstab's swap lines commented)")
        elif finding.code == "iptables" and f.iptables_mode == "nf_tables":
            iptables_legacy = True
            reboot = True
            done.append("iptables and ip6tables: the legacy backend (update-alternatives), then a reboot")
        else:
            left.append(finding)
    return NodeFix(check.node, _cmdline_file(f, words), swap_off, iptables_legacy, reboot,
                   tuple(dict.fromkeys(done)), tuple(left))


def _cmdline_words(f: CheckFacts) -> list[str] | None:
    """cmdline.txt's words, or None when there is none to edit (not a Pi, or too big to have been read)."""
    if f.cmdline_path is None:
        return None
    text = f.node.file(f.cmdline_path).text
    return None if text is None else text.split()


def _cmdline_file(f: CheckFacts, words: list[str] | None) -> WriteFile | None:
    if words is None or f.cmdline_path is None:
        return None
    current = f.node.file(f.cmdline_path)
    if current.text is not None and current.text.split() == words:
        return None
    # One line: the firmware reads the first line only.
    return WriteFile(f.cmdline_path, (" ".join(words) + "\n").encode(), current.mode if current.mode is not None
                     else 0o755, current.owner or "root", current.group or "root")
