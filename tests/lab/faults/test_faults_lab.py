"""Fault scenarios on one lab (issue 9): plugs pulled, links cut, cards re-flashed, disks full.

One 3-node lab for the module, provisioned once (see conftest.py). The
scenarios run in file order; each breaks something, checks piprov's answer
(clear error naming node and path, nothing half-written, no traceback), then
ends with ``faults.converge()``: one more `piprov up` that converges, and the
checks that nothing was lost (plan empty, no temp files, inventory intact,
every node Ready, etcd's data there).

Nodes: pi1 = rpi-master, pi2 = rpi-node-1, pi3 = rpi-node-2.

Not repeated here: "every node rebooted -> Ready without piprov" is
tests/lab/test_up.py::test_every_node_rebooted_comes_back_without_piprov
(it also checks etcd's data and that the units converge by themselves).
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from faultkit import (
    FIGURES,
    K8S_CONF,
    TRACEBACK,
    EtcdBlocked,
    FaultCluster,
    drift,
    lock_holder_pid,
    shim,
    unshim,
    wait_for,
)
from piprov.inventory import load
from piprov.plan.actions import WriteFile
from piprov.shell import script as sh

pytestmark = pytest.mark.lab


def _text(p: subprocess.CompletedProcess[str]) -> str:
    """stdout + stderr with rich's line wrapping undone."""
    return " ".join((p.stdout + " " + p.stderr).split())


def _no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert TRACEBACK not in p.stdout + p.stderr, p.stderr[-4000:]


def test_reboot_scenario_lives_in_test_up() -> None:
    FIGURES.notes.append("every node rebooted -> Ready without piprov: tests/lab/test_up.py::"
                         "test_every_node_rebooted_comes_back_without_piprov")


# -- the run lock ----------------------------------------------------------------------------------


def test_two_ups_at_once_the_second_refuses_naming_the_holder(faults: FaultCluster) -> None:
    drift(faults, "pi2")
    with EtcdBlocked(faults, "pi2"):
        first = faults.background("up", "--health-timeout", "120")
        wait_for("the first up to hold the lock", lambda: lock_holder_pid(faults) == first.proc.pid, 30, 0.05)
        second = faults.piprov("up")
        assert second.returncode == 1
        text = _text(second)
        assert "already running" in text and f"pid {first.proc.pid}" in text, text
        _no_traceback(second)
    done = first.finish()
    assert done.returncode == 0, done.stderr[-3000:]
    faults.converge()


def test_a_killed_runs_lock_is_taken_over(faults: FaultCluster) -> None:
    desired, drifted = drift(faults, "pi2")
    with EtcdBlocked(faults, "pi2"):
        run = faults.background("up", "--health-timeout", "120")
        wait_for("up to hold the lock", lambda: lock_holder_pid(faults) == run.proc.pid, 30, 0.05)
        run.wait_line("nodes to change")
        run.proc.send_signal(signal.SIGKILL)
        run.finish()
    # The dead run's record is still in the lock file; flock died with it.
    assert lock_holder_pid(faults) == run.proc.pid
    assert faults.sha("pi2", K8S_CONF) in (desired, drifted)
    faults.converge()
    assert faults.sha("pi2", K8S_CONF) == desired


# -- cut links -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HalfUpload:
    client: paramiko.SSHClient
    temp: str  # the half-received script in the node's /tmp
    desired: str  # sha256 of k8s.conf as piprov renders it
    drifted: str  # sha256 of the drifted k8s.conf the script would replace


def _half_upload(faults: FaultCluster, node: str, tag: str) -> _HalfUpload:
    """piprov's own apply script (restoring a drifted k8s.conf), half sent over a raw session."""
    lab = faults.lab
    desired_text = lab.exec(node, f"cat {K8S_CONF}").stdout.encode()
    desired, drifted = drift(faults, node, tag)
    script = sh.wrap(sh.write_file(WriteFile(K8S_CONF, desired_text, 0o644, "root", "root"))).encode()
    client = paramiko.SSHClient()
    client.load_host_keys(str(faults.known_hosts))
    client.connect(lab.node(node).ip, username="pirate", key_filename=str(lab.identity_file),
                   look_for_keys=False, allow_agent=False, timeout=10)
    try:
        chan = client.get_transport().open_session()  # type: ignore[union-attr]
        chan.exec_command("sudo -n sh -c " + shlex.quote(sh.runner_command(script)))
        chan.sendall(script[: len(script) // 2])
        temp = wait_for("the half script to land in the node's /tmp",
                        lambda: lab.exec(node, "ls /tmp/piprov-apply.* 2>/dev/null || true").stdout.strip(), 10, 0.1)
    except BaseException:
        client.close()
        raise
    return _HalfUpload(client, temp, desired, drifted)


def test_partition_in_the_middle_of_an_upload_leaves_the_old_file(faults: FaultCluster) -> None:
    """Deterministic: piprov's own apply script, half sent, then the link is cut."""
    lab = faults.lab
    up = _half_upload(faults, "pi2", "cut-upload")
    try:
        lab.partition("pi2", True)
    finally:
        up.client.close()
    try:
        got = faults.sha("pi2", K8S_CONF)
        if got not in (up.desired, up.drifted):
            FIGURES.partial_files += 1
        assert got == up.drifted, "the cut script must not have run"
        FIGURES.notes.append("partition mid-upload (half of the script sent): old file kept, script never ran")
    finally:
        lab.partition("pi2", False)
    # The node's half-received script: its session ends once the FIN of the
    # closed connection gets through, and the runner removes the file.
    try:
        wait_for("the cut upload's temp file to go", lambda: not lab.exec(
            "pi2", "ls /tmp/piprov-apply.* 2>/dev/null || true").stdout.strip(), 90, 1)
    except AssertionError:
        FIGURES.partial_files += 1
        raise
    faults.converge()
    assert faults.sha("pi2", K8S_CONF) == up.desired


def test_upload_cut_with_the_controller_gone_is_cleaned_by_the_rerun(faults: FaultCluster) -> None:
    """As above, but the node never hears from that connection again (laptop closed on
    Wi-Fi: no FIN, no RST): its half-received script waits in /tmp while sshd holds the
    dead session (hours). The next run's prelude removes it once older than any apply."""
    lab = faults.lab
    up = _half_upload(faults, "pi2", "lost-controller")
    transport = up.client.get_transport()
    assert transport is not None
    sport = transport.sock.getsockname()[1]  # type: ignore[union-attr]
    drop = f"INPUT -p tcp --dport 22 --sport {sport} -j DROP"
    try:
        lab.exec("pi2", f"iptables -I {drop}")
        up.client.close()
        assert faults.sha("pi2", K8S_CONF) == up.drifted
        lab.exec("pi2", f"touch -d '-20 min' {up.temp}")  # time passes
        faults.converge()  # its prelude removes the stale script; converge checks /tmp too
        assert faults.sha("pi2", K8S_CONF) == up.desired
    finally:
        up.client.close()
        lab.exec("pi2", f"iptables -D {drop}", check=False)


def test_partition_during_up_fails_naming_the_node_then_converges(faults: FaultCluster) -> None:
    desired, drifted = drift(faults, "pi3", "cut-up")
    run = faults.background("up", "--health-timeout", "60")
    run.wait_line("nodes to change")  # facts read, apply starting: the upload is on its way
    faults.lab.partition("pi3", True)
    try:
        p = run.finish(timeout=180)
        assert p.returncode == 1
        assert "rpi-node-2" in _text(p) and "rpi-node-1" not in " ".join(
            ln for ln in p.stderr.splitlines() if "✗" in ln), p.stderr[-3000:]
        _no_traceback(p)
        got = faults.sha("pi3", K8S_CONF)
        if got not in (desired, drifted):
            FIGURES.partial_files += 1
        assert got in (desired, drifted)
        FIGURES.notes.append("partition during up: k8s.conf was the "
                             + ("new" if got == desired else "old") + " file after the cut")
    finally:
        faults.lab.partition("pi3", False)
    faults.converge()


# -- power cuts ------------------------------------------------------------------------------------


def test_worker_power_cut_mid_up(faults: FaultCluster) -> None:
    drift(faults, "pi3", "power")
    with EtcdBlocked(faults, "pi3") as blocked:  # holds the run in pi3's flannel step
        run = faults.background("up", "--health-timeout", "60")
        run.wait_line("nodes to change")
        faults.lab.kill("pi3")
    p = run.finish(timeout=180)
    assert p.returncode == 1
    failed = " ".join(ln for ln in p.stderr.splitlines() if "✗" in ln)
    assert "rpi-node-2" in failed and "rpi-master" not in failed, p.stderr[-3000:]
    _no_traceback(p)
    faults.lab.start("pi3")
    blocked.unblock()
    faults.converge()


def test_master_power_cut_mid_up_etcd_data_survives(faults: FaultCluster) -> None:
    before = faults.etcd_network()
    assert "10.0.0.0/16" in before
    drift(faults, "pi1", "power")
    run = faults.background("up", "--health-timeout", "30")
    run.wait_line("nodes to change")
    faults.lab.kill("pi1")
    p = run.finish(timeout=180)
    assert p.returncode == 1
    assert "rpi-master" in " ".join(ln for ln in p.stderr.splitlines() if "✗" in ln), p.stderr[-3000:]
    _no_traceback(p)
    faults.lab.start("pi1")
    faults.converge()
    assert faults.etcd_network() == before


# -- bad remote output -----------------------------------------------------------------------------


def test_junk_before_the_facts_is_tolerated(faults: FaultCluster) -> None:
    # A banner or a profile script printing something first: the frame marker finds the facts.
    shim(faults, "pi2", "sudo", 'echo "Welcome to HypriotOS!"\nexec /usr/bin/sudo "$@"\n')
    try:
        p = faults.piprov("plan")
        assert p.returncode == 0, p.stderr[-2000:]
    finally:
        unshim(faults, "pi2", "sudo")


def test_garbage_from_sudo_is_a_clear_error_naming_the_node(faults: FaultCluster) -> None:
    shim(faults, "pi2", "sudo", "/usr/bin/sudo \"$@\" | sed '4s/^/%%garbage%% /'\n")
    try:
        for args in (("plan",), ("plan", "--json"), ("up",), ("status", "--json")):
            p = faults.piprov(*args)
            assert p.returncode == 1, (args, p.stderr[-2000:])
            _no_traceback(p)
            assert "rpi-node-1" in _text(p) and "cannot understand the facts output" in _text(p), (args, _text(p))
        plan = json.loads(faults.piprov("plan", "--json").stdout)
        assert list(plan["errors"]) == ["rpi-node-1"] and "malformed" in plan["errors"]["rpi-node-1"]
    finally:
        unshim(faults, "pi2", "sudo")
    faults.converge()


def test_unknown_architecture_is_refused_naming_the_node(faults: FaultCluster) -> None:
    shim(faults, "pi3", "uname", 'if [ "$1" = -m ]; then echo mips; else exec /bin/uname "$@"; fi\n')
    try:
        p = faults.piprov("up")
        assert p.returncode == 1
        _no_traceback(p)
        assert "rpi-node-2" in _text(p) and "unsupported architecture 'mips'" in _text(p), _text(p)
    finally:
        unshim(faults, "pi3", "uname")
    faults.converge()


def test_armv7l_node_gets_the_arm_images(faults: FaultCluster) -> None:
    """The documented mapping (armv6l/armv7l -> arm): planned, not applied (the lab has amd64 images only)."""
    shim(faults, "pi3", "uname", 'if [ "$1" = -m ]; then echo armv7l; else exec /bin/uname "$@"; fi\n')
    try:
        p = faults.piprov("plan", "--json")
        assert p.returncode == 2, p.stderr[-2000:]
        plan = json.loads(p.stdout)
        node = next(n for n in plan["nodes"] if n["node"] == "rpi-node-2")
        diffs = " ".join(f["diff"] for c in node["components"] for f in c["files"])
        assert "-arm:" in diffs and "-amd64:" in diffs  # from amd64 to arm
        others = [n for n in plan["nodes"] if n["node"] != "rpi-node-2"]
        assert not any(c["changed"] for n in others for c in n["components"])
    finally:
        unshim(faults, "pi3", "uname")
    faults.converge()


def test_missing_occidentalis_falls_back_to_hostnamectl(faults: FaultCluster) -> None:
    lab = faults.lab
    lab.exec("pi3", "mv /boot/occidentalis.txt /root/occidentalis.txt && hostname black-pearl")
    try:
        p = faults.piprov("plan")
        assert p.returncode == 2, p.stderr[-2000:]
        assert "hostname black-pearl -> rpi-node-2 (hostnamectl)" in _text(p), _text(p)
        faults.converge()
        assert lab.exec("pi3", "uname -n; cat /etc/hostname").stdout.split() == ["rpi-node-2"] * 2
    finally:
        lab.exec("pi3", "mv /root/occidentalis.txt /boot/occidentalis.txt", check=False)
    faults.converge()


# -- full disk ---------------------------------------------------------------------------------------


def test_disk_full_is_named_and_nothing_is_half_written(faults: FaultCluster) -> None:
    lab = faults.lab
    desired, drifted = drift(faults, "pi2", "disk")
    # /etc/kubernetes on a small tmpfs holding the same files (certificates and keys
    # under pki/ too: each takes a page), then filled up.
    lab.exec("pi2", "set -e; rm -rf /root/kbak; cp -a /etc/kubernetes /root/kbak; "
             "mount -t tmpfs -o size=256k,mode=755 piprov-fault /etc/kubernetes; cp -a /root/kbak/. /etc/kubernetes/; "
             "dd if=/dev/zero of=/etc/kubernetes/filler bs=1k 2>/dev/null || true")
    try:
        p = faults.piprov("up", "--health-timeout", "30")
        assert p.returncode == 1
        _no_traceback(p)
        text = _text(p)
        assert "rpi-node-1" in text and f"write {K8S_CONF}" in text and "No space left on device" in text, text
        assert faults.sha("pi2", K8S_CONF) == drifted  # the old file, whole
        left = lab.exec("pi2", "ls -A /etc/kubernetes").stdout.split()
        assert sorted(left) == ["filler", "k8s.conf", "kubelet.kubeconfig", "pki", "proxy.kubeconfig", "subnet.env"], left
        lab.exec("pi2", "rm -f /etc/kubernetes/filler")
        faults.converge()
        assert faults.sha("pi2", K8S_CONF) == desired
    finally:
        lab.exec("pi2", "umount /etc/kubernetes", check=False)
    faults.converge()  # the files under the mount point were the drifted ones


# -- host keys ---------------------------------------------------------------------------------------


def test_changed_host_key_stops_that_node_only(faults: FaultCluster) -> None:
    lab = faults.lab
    _, pi3_drifted = drift(faults, "pi3", "rekey")
    pi2_desired, _ = drift(faults, "pi2", "rekey")
    lab.exec("pi3", "rm -f /etc/ssh/ssh_host_ed25519_key*; ssh-keygen -q -t ed25519 -N '' "
             "-f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh")
    p = faults.piprov("up", "--trust-new-hosts")  # TOFU never overrides a CHANGED key
    assert p.returncode == 1
    _no_traceback(p)
    text = _text(p)
    assert "HOST KEY CHANGED" in text and "piprov node forget-key rpi-node-2" in text, text
    assert faults.sha("pi3", K8S_CONF) == pi3_drifted  # nothing done on that node
    assert faults.sha("pi2", K8S_CONF) == pi2_desired  # the others converged
    f = faults.piprov("node", "forget-key", "rpi-node-2")
    assert f.returncode == 0 and "forgot 1 host key" in _text(f), _text(f)
    strict = faults.piprov("plan")
    assert strict.returncode == 1 and "not in" in _text(strict) and "--trust-new-hosts" in _text(strict)
    faults.converge(up_args=("--trust-new-hosts",))
    new_key = lab.exec("pi3", "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
    assert new_key in faults.known_hosts.read_text()


# -- the inventory ------------------------------------------------------------------------------------


def test_inventory_edits_during_up_are_all_kept(faults: FaultCluster) -> None:
    drift(faults, "pi2", "edits")
    with EtcdBlocked(faults, "pi2"):
        run = faults.background("up", "--health-timeout", "120")
        run.wait_line("nodes to change")
        labels = {f"fault-{i}": f"v{i}" for i in range(6)}
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(
                lambda kv: faults.piprov("inventory", "set", f"nodes.rpi-node-1.labels.{kv[0]}", kv[1]),
                labels.items()))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert run.finish().returncode == 0
    text = faults.inventory.read_text()
    lost = [k for k in labels if f"{k}: {labels[k]}" not in text]
    FIGURES.lost_inventory_edits += len(lost)
    assert not lost, text
    faults.expected_inventory = text
    faults.converge()


# -- secrets -------------------------------------------------------------------------------------------


def test_secrets_never_appear_in_output(faults: FaultCluster, tmp_path: Path) -> None:
    lab = faults.lab
    # Fresh cards: every node takes pirate/hypriot, and status says so.
    st = faults.piprov("status", "--json")
    assert [r["default_password"] for r in json.loads(st.stdout)["nodes"]] == [True] * 3, st.stdout
    assert "still accept the default password" in _text(st) and "piprov keys --disable-password" in _text(st)
    # `keys` with no password given logs in with the default (the lab key is already there).
    k = faults.piprov("keys", "rpi-master")
    assert k.returncode == 0 and "rpi-master: key already there, key login verified" in _text(k), _text(k)
    password = "Fault-" + secrets.token_hex(8)
    wrong = "Wrong-" + secrets.token_hex(8)
    for n in lab.nodes:
        lab.exec(n.name, "chpasswd", input=f"pirate:{password}\n")
    ident = tmp_path / "keys" / "id_ed25519"
    inv = tmp_path / "inventory.yaml"
    inv.write_text(faults.inventory.read_text().replace(f"identity_file: {lab.identity_file}",
                                                        f"identity_file: {ident}"))
    runs: list[subprocess.CompletedProcess[str]] = []

    def run(*args: str, pw: str | None = password) -> subprocess.CompletedProcess[str]:
        p = faults.piprov(*args, inventory=inv, env={"PIPROV_SSH_PASSWORD": pw} if pw else None)
        runs.append(p)
        return p

    bad = run("keys", "--yes", pw=wrong)
    assert bad.returncode == 1 and "password for 'pirate' was refused" in _text(bad), _text(bad)
    assert "rpi-master" in _text(bad)
    assert run("keys", "--yes").returncode == 0, runs[-1].stderr
    assert run("up", "--json").returncode == 0, runs[-1].stderr[-3000:]
    assert run("plan", "--json").returncode == 0, runs[-1].stdout[-3000:]
    st = run("status", "--json")
    assert st.returncode == 0, st.stderr[-2000:]
    assert all(r["default_password"] is False for r in json.loads(st.stdout)["nodes"])
    assert run("keys", "--disable-password", pw=None).returncode == 0, runs[-1].stderr
    assert run("status").returncode == 0
    assert run("keys", "--password", password, pw=None).returncode == 64  # never on the command line
    leaked = tmp_path / "no-such-dir" / "inventory.yaml"
    runs.append(faults.piprov("up", inventory=leaked, env={"PIPROV_SSH_PASSWORD": password}))
    # Password login is now off: only the key works, and it was verified first.
    for n in lab.nodes:
        conf = lab.exec(n.name, "sshd -T | grep -i '^passwordauthentication'").stdout.strip().lower()
        assert conf == "passwordauthentication no"

    private_bodies = []
    # The SSH keys, and every private key of the cluster PKI (the CA's, the admin's, each node's).
    cluster_keys = sorted(load(inv).pki_directory.rglob("*.key"))
    assert len(cluster_keys) >= 2 + 3 * 3, cluster_keys
    for key_file in (ident, lab.identity_file, *cluster_keys):
        lines = key_file.read_text().splitlines()
        body = "".join(ln for ln in lines if not ln.startswith("-----"))
        private_bodies += [ln for ln in lines if not ln.startswith("-----") and len(ln) >= 16]
        private_bodies.append(base64.b64decode(body)[-64:].hex())
    needles = [password, wrong, *private_bodies]
    for p in runs:
        _no_traceback(p)
        blob = p.stdout + p.stderr
        for needle in needles:
            assert needle not in blob, f"a secret appeared in the output of {p.args[3:]}"
    # ... nor in any file piprov wrote next to the inventory, nor in the nodes' journals.
    for f in tmp_path.rglob("*"):
        if f.is_file() and f != ident:
            data = f.read_text(errors="replace")
            assert not any(n in data for n in needles), f
    for n in lab.nodes:
        journal = lab.exec(n.name, "journalctl --no-pager -o cat 2>/dev/null || true").stdout
        assert password not in journal and wrong not in journal
    FIGURES.notes.append(f"secrets: {len(runs)} runs with a password, {len(needles)} secret strings, 0 found")
    faults.converge()
