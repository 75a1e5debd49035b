"""The floor of every shell piprov runs on a node: busybox sh with only busybox applets, and dash.

Each script runs with a PATH holding nothing but busybox's applets (one symlink
per `busybox --list` name), ``sh`` (the shell under test) and fakes of the
programs busybox has not (systemctl, journalctl, docker) that log their
arguments: the facts script, the apply script (files, removal, systemctl calls,
node remove), the on-node health waits, and every ``/bin/sh -c '...'`` line of
every rendered unit, which is parsed (``sh -n``) and, for the flannel unit's
subnet.env wait, run against a fake main process and a fake subnet.env.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

import pytest

from piprov.check import Probe, check_command, parse_check
from piprov.facts import facts_command, parse_facts
from piprov.graph import HealthCheck, load_graph
from piprov.graph.versions import load_matrix
from piprov.inventory import Inventory
from piprov.plan.actions import DisableUnits, RemoveFile, RemoveStaleTemps, Systemctl, WriteFile
from piprov.render import desired_state
from piprov.shell import keys, probes, script
from piprov.transport import CommandResult
from test_apply import me
from test_versions_render import _inventory, _sets

BUSYBOX = shutil.which("busybox")
SHELLS = [s for s in ("dash", "busybox") if shutil.which(s)]
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="needs busybox")

FAKE = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >> "{log}"
case "$(basename "$0") $1" in
  "systemctl --version") echo "systemd 215"; echo "+PAM -SELINUX" ;;
  "systemctl show") for u in "$@"; do case $u in -*|ActiveState|UnitFileState|NRestarts|Result|Inactive*) ;;
    *.service|*.socket) printf 'ActiveState=active\\nUnitFileState=enabled\\n\\n' ;; esac; done ;;
  "systemctl cat") exit 0 ;;
  "systemctl list-jobs") ;;
  "systemctl is-active") [ "$2" = --quiet ] || echo active ;;
  "docker --version") echo "Docker version 1.11.2, build b9f10c9" ;;
esac
exit 0
"""


def busybox_bin(bindir: Path, fakes: Mapping[str, str] = {}) -> Path:
    """``bindir`` with one symlink per busybox applet, and ``fakes`` (program -> script text) over them."""
    assert BUSYBOX is not None
    bindir.mkdir(parents=True)
    for name in subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split():
        (bindir / name).symlink_to(BUSYBOX)
    for name, text in fakes.items():
        (bindir / name).unlink(missing_ok=True)
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    return bindir


@pytest.fixture(params=SHELLS)
def floor(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
    """(the shell's argv, an env whose PATH is busybox's applets + fakes only, the fakes' log)."""
    log = tmp_path / "calls.log"
    bindir = busybox_bin(tmp_path / "bin", dict.fromkeys(("systemctl", "journalctl", "docker"), FAKE.format(log=log)))
    shell = [str(bindir / "busybox"), "sh"] if request.param == "busybox" else [str(shutil.which("dash"))]
    (bindir / "sh").unlink(missing_ok=True)
    (bindir / "sh").symlink_to(shell[0] if request.param == "dash" else BUSYBOX)
    return shell, {"PATH": str(bindir), "HOME": str(tmp_path), "LC_ALL": "C"}, log


def _run(floor: tuple[list[str], dict[str, str], Path], text: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    shell, env, _ = floor
    return subprocess.run([*shell, "-c", text], capture_output=True, text=True, timeout=timeout, env=env)


def test_the_path_has_no_coreutils(floor: tuple[list[str], dict[str, str], Path]) -> None:
    out = _run(floor, "for p in base64 stat sha256sum timeout grep sleep ip mktemp; do command -v $p; done")
    bindir = floor[1]["PATH"]
    names = ("base64", "stat", "sha256sum", "timeout", "grep", "sleep", "ip", "mktemp")
    # busybox sh names its own applets by name: it runs them before PATH.
    assert [w.rsplit("/", 1)[-1] for w in out.stdout.split()] == list(names)
    assert all(w.startswith(bindir) or "/" not in w for w in out.stdout.split())


def test_the_facts_script(floor: tuple[list[str], dict[str, str], Path], tmp_path: Path) -> None:
    conf = tmp_path / "k8s.conf"
    conf.write_text("K8S_MASTER_IP=10.0.0.1\n")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (70 * 1024))
    cmd = facts_command([str(conf), str(big), str(tmp_path / "missing")], ["docker.service", "docker.socket"],
                        binaries={"docker": "/usr/bin/docker", "dockerd": "/usr/bin/dockerd"})
    out = _run(floor, cmd)
    facts = parse_facts("floor", out.stdout)
    assert facts.file(str(conf)).content == b"K8S_MASTER_IP=10.0.0.1\n"
    assert facts.file(str(big)).content is None and facts.file(str(big)).sha256
    assert not facts.file(str(tmp_path / "missing")).exists
    assert facts.units["docker.service"].is_active and facts.units["docker.socket"].is_enabled
    assert facts.versions == {"docker": "1.11.2", "systemd": "215"}
    assert facts.binaries["docker"] == f"{floor[1]['PATH']}/docker" and facts.binaries["dockerd"] is None
    # systemd 215 has no NRestarts: the journal is asked (the fake prints nothing).
    assert facts.units["docker.service"].restarts == 0
    assert "journalctl -b -q --no-pager -o short-monotonic _PID=1" in floor[2].read_text()


def test_the_facts_script_sends_only_the_checksum_of_a_secret(floor: tuple[list[str], dict[str, str], Path],
                                                              tmp_path: Path) -> None:
    key = tmp_path / "kubelet.key"
    body = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
    key.write_bytes(body)
    key.chmod(0o600)
    crt = tmp_path / "kubelet.crt"
    crt.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    cmd = facts_command([str(crt), str(key), str(tmp_path / "gone.key")], [],
                        secret_paths=[str(key), str(tmp_path / "gone.key")])
    out = _run(floor, cmd)
    assert out.returncode == 0, out.stderr
    facts = parse_facts("floor", out.stdout)
    got = facts.file(str(key))
    assert got.exists and got.content is None and got.size == len(body) and got.mode == 0o600
    assert got.sha256 == hashlib.sha256(body).hexdigest()
    assert not facts.file(str(tmp_path / "gone.key")).exists
    assert facts.file(str(crt)).content is not None  # not secret: read as before
    assert "PRIVATE" not in out.stdout and base64.b64encode(body).decode()[:40] not in out.stdout


def test_the_check_script(floor: tuple[list[str], dict[str, str], Path], tmp_path: Path) -> None:
    data = tmp_path / "var-lib"
    data.mkdir()
    (tmp_path / "boot").mkdir()
    (tmp_path / "cmdline.txt").write_text("console=tty1 root=/dev/mmcblk0p2 cgroup_enable=memory rootwait\n")
    vcgencmd = Path(floor[1]["PATH"]) / "vcgencmd"
    vcgencmd.write_text("#!/bin/sh\n[ \"$1\" = get_throttled ] && echo throttled=0x50000\n")
    vcgencmd.chmod(0o755)
    probe = Probe((str(tmp_path / "none.txt"), str(tmp_path / "cmdline.txt")), (str(tmp_path / "boot"),),
                  (str(tmp_path / "gone"), str(data)), ("vcgencmd",), fsync_writes=3)
    def made() -> list[Path]:
        return sorted(p for d in (data, tmp_path / "boot") for p in d.rglob("*")) + sorted(tmp_path.glob("*.txt"))

    before = made()
    out = _run(floor, check_command(probe))
    assert out.returncode == 0, out.stderr
    facts = parse_check("floor", out.stdout, asked=0, answered=2e9)
    assert facts.memory_configured is True and facts.cmdline_path == str(tmp_path / "cmdline.txt")
    assert facts.throttled == 0x50000 and facts.vcgencmd
    assert facts.iptables_mode == "missing" and facts.userland_bits in (32, 64)  # /bin/sh's ELF header (no dpkg)
    assert facts.disks["root"].mount == "/" and facts.disks["boot"].path == str(tmp_path / "boot")
    assert facts.node.versions["docker"] == "1.11.2" and facts.kernel
    # busybox date has no %N: the writes are timed with /proc/uptime.
    assert facts.fsync is not None and facts.fsync.directory == str(data) and facts.fsync.clock == "cs"
    assert len(facts.fsync.writes_ms) == 3
    # Read-only: the temp file is gone, nothing else was made.
    assert made() == before
    # The cheap part `up` runs: the same records, no measure, nothing written at all.
    cheap = _run(floor, check_command(probe, fsync=False))
    assert cheap.returncode == 0, cheap.stderr
    lean = parse_check("floor", cheap.stdout, asked=0, answered=2e9)
    assert lean.fsync is None and lean.fsync_skipped and lean.fsync_problem is None
    assert lean.throttled == facts.throttled
    assert {k: (d.path, d.mount) for k, d in lean.disks.items()} == {k: (d.path, d.mount) for k, d in facts.disks.items()}
    assert made() == before


def test_the_check_script_removes_its_temp_file_when_killed(floor: tuple[list[str], dict[str, str], Path],
                                                           tmp_path: Path) -> None:
    shell, env, _ = floor
    if shell[-1] == "sh":
        pytest.skip("busybox sh runs its own dd applet before PATH: no slow dd to kill it during")
    data = tmp_path / "var-lib"
    data.mkdir()
    # A dd slow on the fsync'd writes: the script is killed meanwhile (TERM; a cut SSH session is HUP or PIPE).
    dd = Path(env["PATH"]) / "dd"
    dd.unlink()
    dd.write_text("#!/bin/sh\ncase \"$*\" in *conv=fsync*) sleep 1 ;; esac\nexit 0\n")
    dd.chmod(0o755)
    probe = Probe(("/nonexistent/cmdline.txt",), ("/nonexistent",), (str(data),), ("vcgencmd",))
    p = subprocess.Popen([*shell, "-c", check_command(probe)], env=env, stdout=subprocess.PIPE, text=True)
    for _ in range(100):
        if list(data.iterdir()):
            break
        subprocess.run(["sleep", "0.05"])
    assert list(data.iterdir()), "the temp file never appeared"
    p.terminate()
    assert p.wait(timeout=10) != 0
    assert list(data.iterdir()) == []


class FloorTransport:
    """The SSH transport's part in run_script: the runner command under the floor's shell."""

    host = "floor"

    def __init__(self, floor: tuple[list[str], dict[str, str], Path]) -> None:
        self.floor = floor

    def run(self, command: str, *, sudo: bool = False, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        shell, env, _ = self.floor
        p = subprocess.run([*shell, "-c", command], input=stdin or b"", capture_output=True, timeout=timeout, env=env)
        return CommandResult("floor", command, p.returncode, p.stdout.decode(), p.stderr.decode(), 0.0)


def test_the_apply_script(floor: tuple[list[str], dict[str, str], Path], tmp_path: Path) -> None:
    user, group = me()
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / (script.TEMP_PREFIX + "old")).write_text("half")
    gone = etc / "gone"
    gone.write_text("x")
    actions = [
        RemoveStaleTemps((str(etc),)),
        WriteFile(str(etc / "kubernetes" / "k8s.conf"), b"K8S_MASTER_IP=10.0.0.1\n" + bytes(range(256)), 0o640,
                  user, group),
        RemoveFile(str(gone)),
        Systemctl("daemon-reload"),
        Systemctl("enable", ("docker.service",), quiet=True),
        Systemctl("restart", ("docker.service", "docker.socket"), no_block=True),
        Systemctl("try-restart", ("avahi-daemon.service",), best_effort=True),
        DisableUnits(("k8s-proxy.service", "k8s-worker.service")),
    ]
    out = script.run_actions(FloorTransport(floor), actions, journal=("docker.service",))
    assert out.ok, out.detail
    written = etc / "kubernetes" / "k8s.conf"
    assert written.read_bytes() == b"K8S_MASTER_IP=10.0.0.1\n" + bytes(range(256))
    assert written.stat().st_mode & 0o7777 == 0o640
    assert sorted(p.name for p in etc.iterdir()) == ["kubernetes"]
    calls = floor[2].read_text().splitlines()
    assert calls[-4:] == [
        "systemctl cat k8s-proxy.service", "systemctl cat k8s-worker.service",
        "systemctl stop k8s-proxy.service k8s-worker.service",
        "systemctl disable --quiet k8s-proxy.service k8s-worker.service"]
    assert "systemctl restart --no-block docker.service docker.socket" in calls


def test_a_failed_step_is_named(floor: tuple[list[str], dict[str, str], Path], tmp_path: Path) -> None:
    out = script.run_actions(FloorTransport(floor), [RemoveFile(str(tmp_path)), Systemctl("start", ("x.service",))])
    assert not out.ok and out.failed_step == f"rm -f {tmp_path}"


@pytest.mark.parametrize("probe", ["unit", "file"])
def test_the_health_waits(floor: tuple[list[str], dict[str, str], Path], tmp_path: Path, probe: str) -> None:
    target = "docker.service" if probe == "unit" else str(tmp_path / "subnet.env")
    if probe == "file":
        Path(target).write_text("FLANNEL_SUBNET=10.1.5.1/24\n")
    out = _run(floor, probes.wait_command(HealthCheck(probe=probe, target=target, timeout=5)))
    assert out.returncode == 0 and out.stdout.strip() == "healthy", out.stderr
    missing = HealthCheck(probe="file", target=str(tmp_path / "never"), timeout=1)
    out = _run(floor, probes.wait_command(missing))
    assert out.returncode == 1 and "No such file" in out.stdout + out.stderr


def _sh_lines(inv: Inventory) -> list[tuple[str, str, str, str]]:
    """(unit, setting, sh's options, script) for every `/bin/sh -c '...'` Exec* line of every rendered unit."""
    graph = load_graph()
    found = []
    for node in (inv.master, inv.workers[0]):
        for docker in ("1.11.2", "20.10.24+dfsg1"):
            for f in desired_state(inv, graph, node, "armv7l", docker=docker, systemd="215").files:
                if not f.is_unit_file:
                    continue
                for line in f.content.decode().replace("\\\n", " ").splitlines():
                    key, _, value = line.partition("=")
                    if key.startswith("Exec"):
                        words = shlex.split(value.lstrip("-@+!"))
                        if words[0] == "/bin/sh" and re.fullmatch(r"-e?ce?", words[1]):
                            found.append((f.path.rsplit("/", 1)[1], key, words[1], words[2]))
    return sorted(set(found))


@pytest.fixture(scope="module")
def sh_lines(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, str, str]]:
    lines: set[tuple[str, str, str, str]] = set()
    for _, tags in _sets(load_matrix()):
        lines.update(_sh_lines(_inventory(tmp_path_factory.mktemp("inv"), tags)))
    return sorted(lines)


def test_every_unit_sh_line_parses(floor: tuple[list[str], dict[str, str], Path],
                                   sh_lines: list[tuple[str, str, str, str]]) -> None:
    units = {u for u, _, _, _ in sh_lines}
    assert {"k8s-flannel.service", "docker.service"} <= units
    for unit, key, opts, text in sh_lines:
        # systemd replaces $MAINPID (and ${VAR} of EnvironmentFile=) before sh sees the line.
        out = _run(floor, f"sh -n {opts} {shlex.quote(text)}")
        assert out.returncode == 0, f"{unit} {key}: {out.stderr}"


def _subnet_wait(sh_lines: list[tuple[str, str, str, str]], subnet: Path, pid: int) -> str:
    waits = [t for u, k, _, t in sh_lines if u == "k8s-flannel.service" and k == "ExecStartPost" and "MAINPID" in t]
    assert len(waits) == 1, waits
    return waits[0].replace("/run/flannel/subnet.env", str(subnet)).replace("$MAINPID", str(pid))


def test_the_flannel_wait_ends_at_the_lease(floor: tuple[list[str], dict[str, str], Path], tmp_path: Path,
                                            sh_lines: list[tuple[str, str, str, str]]) -> None:
    subnet = tmp_path / "subnet.env"
    main = subprocess.Popen(["sleep", "60"])
    try:
        shell, env, _ = floor
        wait = subprocess.Popen([*shell, "-c", _subnet_wait(sh_lines, subnet, main.pid)], env=env,
                                stderr=subprocess.PIPE, text=True)
        subnet.write_text("FLANNEL_NETWORK=10.1.0.0/16\n")  # not the lease line yet
        assert wait.poll() is None
        subnet.write_text("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.5.1/24\n")
        assert wait.wait(timeout=20) == 0
    finally:
        main.kill()
        main.wait()


def test_the_flannel_wait_fails_when_the_main_process_dies(floor: tuple[list[str], dict[str, str], Path],
                                                           tmp_path: Path,
                                                           sh_lines: list[tuple[str, str, str, str]]) -> None:
    main = subprocess.Popen(["sleep", "60"])
    shell, env, _ = floor
    wait = subprocess.Popen([*shell, "-c", _subnet_wait(sh_lines, tmp_path / "subnet.env", main.pid)], env=env,
                            stderr=subprocess.PIPE, text=True)
    main.kill()
    main.wait()
    assert wait.wait(timeout=20) == 1
    assert "flanneld exited before it wrote" in (wait.stderr.read() if wait.stderr else "")


def test_no_sh_line_needs_more_than_busybox(sh_lines: list[tuple[str, str, str, str]]) -> None:
    # GNU-only options busybox's applets lack (tail --pid was the flannel wait's).
    gnu_only = re.compile(r"tail [^|;]*--pid|--sleep-interval|chmod --reference|grep [^|;]*--line-buffered")
    for unit, key, _, text in sh_lines:
        assert not gnu_only.search(text), f"{unit} {key}: {text}"


class _Key:
    blob = "AAAAC3NzaC1lZDI1NTE5AAAAIFloorFloorFloorFloorFloorFloorFloorFloor"
    line = f"ssh-ed25519 {blob} me@laptop"


def test_the_key_install_script(floor: tuple[list[str], dict[str, str], Path], tmp_path: Path) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "authorized_keys").write_text("ssh-rsa AAAAold old@host")  # no newline at the end
    out = _run(floor, keys.install_key_script(_Key()))
    assert out.stdout.strip() == "added", out.stderr
    assert (ssh / "authorized_keys").read_text() == f"ssh-rsa AAAAold old@host\n{_Key.line}\n"
    assert _run(floor, keys.install_key_script(_Key())).stdout.strip() == "present"


@pytest.mark.parametrize("include", [True, False], ids=["drop-in", "sshd_config"])
def test_the_password_off_script(floor: tuple[list[str], dict[str, str], Path], tmp_path: Path,
                                 include: bool) -> None:
    etc = tmp_path / "ssh"
    (etc / "sshd_config.d").mkdir(parents=True)
    config = etc / "sshd_config"
    config.write_text((f"Include {etc}/sshd_config.d/*.conf\n" if include else "") + "PasswordAuthentication yes\n")
    config.chmod(0o640)
    sshd = Path(floor[1]["PATH"]) / "sshd"
    sshd.write_text("#!/bin/sh\n[ \"$1\" = -T ] && echo 'passwordauthentication no'\nexit 0\n")
    sshd.chmod(0o755)
    text = keys.disable_password_script().replace("/etc/ssh/", f"{etc}/").replace("/etc/ssh", str(etc))
    out = _run(floor, text)
    assert out.returncode == 0 and out.stdout.strip() == "disabled", out.stderr
    if include:
        assert (etc / "sshd_config.d" / "00-piprov-no-password.conf").read_text() == keys.SSHD_DROPIN_TEXT
    else:
        assert config.read_text().startswith(keys.SSHD_DROPIN_TEXT) and config.stat().st_mode & 0o777 == 0o640
    assert "systemctl reload ssh" in floor[2].read_text()
