"""`piprov check --fix`: what it mends, planned from a node's check (data files of tests/unit/data/check/),
and its script run under busybox sh and dash with only busybox applets and fakes on PATH."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from piprov.check import judge, load_book
from piprov.check.model import NodeCheck
from piprov.fix import plan_fix
from piprov.fix.command import fix_script
from piprov.fix.plan import CGROUP_V1

from test_check import _facts
from test_floor import BUSYBOX, busybox_bin

PI_CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes "
              "rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot")


def _check(name: str, **changes: object) -> NodeCheck:
    facts = replace(_facts(name), **changes)  # type: ignore[arg-type]
    return NodeCheck(name, facts, tuple(judge(facts, load_book())))


def test_a_pi_with_the_memory_cgroup_off_swap_and_nft_gets_all_three_fixes_and_a_reboot() -> None:
    fix = plan_fix(_check("bookworm-v2-swap"))
    assert fix.cmdline is not None and fix.cmdline.path == "/boot/firmware/cmdline.txt"
    # Its words kept, in order, on one line; the two words appended; the file's own mode (FAT).
    assert fix.cmdline.content.decode() == PI_CMDLINE + " cgroup_enable=memory cgroup_memory=1\n"
    assert fix.cmdline.mode == 0o755 and (fix.cmdline.owner, fix.cmdline.group) == ("root", "root")
    assert fix.swap_off and fix.iptables_legacy and fix.reboot
    left = {f.code for f in fix.left}
    assert "power" in left and not left & {"cgroup.memory", "swap", "iptables"}  # no edit mends a power supply


def test_a_cmdline_that_turns_the_memory_cgroup_off_is_mended_without_a_reboot_when_it_is_on_now() -> None:
    base = _facts("bookworm-v2-swap")
    path = "/boot/firmware/cmdline.txt"
    text = "root=/dev/mmcblk0p2 cgroup_disable=memory cgroup_memory=0 rootwait\n"
    files = {**base.node.files, path: replace(base.node.file(path), content=text.encode())}
    check = _check("bookworm-v2-swap", memory_effective=True, memory_configured=False, swaps=(),
                   iptables_mode="legacy", node=replace(base.node, files=files))
    fix = plan_fix(check)
    assert fix.cmdline is not None
    assert fix.cmdline.content.decode() == "root=/dev/mmcblk0p2 rootwait cgroup_enable=memory cgroup_memory=1\n"
    assert not fix.reboot and not fix.swap_off and not fix.iptables_legacy


def test_cgroup_v2_under_an_old_docker_boots_the_v1_hierarchy() -> None:
    base = _facts("bookworm-v2-swap")
    old = replace(base.node, versions={"docker": "1.11.2", "systemd": "215"})
    fix = plan_fix(_check("bookworm-v2-swap", node=old))
    assert fix.cmdline is not None and CGROUP_V1 in fix.cmdline.content.decode().split() and fix.reboot


def test_a_node_that_needs_nothing_and_an_unchecked_node_get_no_fix() -> None:
    assert not plan_fix(_check("armhf-on-aarch64")).changed
    assert not plan_fix(NodeCheck("gone")).changed


def test_no_cmdline_txt_leaves_the_memory_finding_to_the_user() -> None:
    fix = plan_fix(_check("bookworm-v2-swap", cmdline_path=None, memory_configured=None))
    assert fix.cmdline is None and "cgroup.memory" in {f.code for f in fix.left}


SHELLS = ["busybox", "dash"] if shutil.which("dash") else ["busybox"]
FAKE = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> {log}\n"


@pytest.mark.skipif(BUSYBOX is None, reason="needs busybox")
@pytest.mark.parametrize("shell", SHELLS)
def test_the_fix_script_runs_on_the_floor(shell: str, tmp_path: Path) -> None:
    """The script with its two absolute paths moved under tmp_path (the test is not root)."""
    log = tmp_path / "calls.log"
    fakes = {p: FAKE.format(log=log) for p in ("swapoff", "dphys-swapfile", "systemctl", "update-alternatives")}
    bindir = busybox_bin(tmp_path / "bin", fakes)
    boot, etc, sbin = tmp_path / "boot", tmp_path / "etc", tmp_path / "usr/sbin"
    for d in (boot, etc, sbin):
        d.mkdir(parents=True)
    for t in ("iptables-legacy", "ip6tables-legacy"):
        (sbin / t).write_text("#!/bin/sh\n")
        (sbin / t).chmod(0o755)
    (boot / "cmdline.txt").write_text(PI_CMDLINE + "\n")
    (etc / "fstab").write_text("proc /proc proc defaults 0 0\n/var/swap none swap sw 0 0\n# /x none swap sw 0 0\n")
    fix = plan_fix(_check("bookworm-v2-swap"))
    assert fix.cmdline is not None
    me = f"{subprocess.run(['id', '-un'], capture_output=True, text=True).stdout.strip()}"
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
    fix = replace(fix, cmdline=replace(fix.cmdline, path=str(boot / "cmdline.txt"), owner=me, group=group))
    # busybox sh runs its own applets before PATH: swapoff by its path, or the host's swap would go.
    text = (fix_script(fix).replace("/etc/", f"{etc}/").replace("/usr/sbin/", f"{sbin}/")
            .replace("swapoff -a", f"{bindir}/swapoff -a"))
    argv = [str(bindir / "busybox"), "sh"] if shell == "busybox" else [str(shutil.which("dash"))]
    for _ in range(2):  # twice: the second run finds its backups and keeps them
        p = subprocess.run([*argv, "-c", text], capture_output=True, text=True, timeout=30,
                           env={"PATH": str(bindir), "HOME": str(tmp_path), "LC_ALL": "C"})
        assert p.returncode == 0, p.stderr
    assert (boot / "cmdline.txt").read_text() == PI_CMDLINE + " cgroup_enable=memory cgroup_memory=1\n"
    assert (boot / "cmdline.txt.piprov-bak").read_text() == PI_CMDLINE + "\n"
    assert (etc / "fstab").read_text() == "proc /proc proc defaults 0 0\n#/var/swap none swap sw 0 0\n# /x none swap sw 0 0\n"
    assert "/var/swap none swap" in (etc / "fstab.piprov-bak").read_text().split("\n")[1]
    calls = log.read_text()
    assert "swapoff -a" in calls and "dphys-swapfile swapoff" in calls
    assert f"update-alternatives --set iptables {sbin}/iptables-legacy" in calls
    assert not list(boot.glob(".piprov-tmp.*")) and not list(etc.glob(".piprov-tmp.*"))
