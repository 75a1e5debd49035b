"""Facts: the one command runs under real POSIX shells; the parser rejects garbage by name.

Each record kind's parser is tested from its own fixtures,
``data/facts/<tag>/*.yaml``: the record lines in, and either the typed values
they say (the slots of :class:`Collected` that are not at their initial value)
or the substrings of the error.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from piprov.errors import FactsError
from piprov.facts import BEGIN, MAX_CONTENT, facts_command, parse_facts
from piprov.facts.records import RECORDS, parse_records
from piprov.graph import load_graph

DATA = Path(__file__).parent / "data" / "facts"
GARBAGE = yaml.safe_load((DATA / "cases.yaml").read_text())
RECORD_CASES = sorted(DATA.glob("*/*.yaml"))
SHELLS = [s for s in (["dash"], ["busybox", "sh"]) if shutil.which(s[0])]


def _assert_unreadable(error: FactsError, host: str, texts: list[str]) -> None:
    assert error.host == host
    assert str(error).startswith(f"{host}: cannot understand the facts output")
    for text in texts:
        assert text in str(error)
    assert error.hint


def _plain(value: Any) -> Any:
    """A fixture's view of a parsed value: dataclass fields not at their default, bytes as latin-1."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.default is not dataclasses.MISSING and v == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and v == f.default_factory():
                continue
            out[f.name] = _plain(v)
        return out
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("path", RECORD_CASES, ids=[f"{p.parent.name}/{p.stem}" for p in RECORD_CASES])
def test_record_parsers_from_fixtures(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    if "error" in case:
        with pytest.raises(FactsError) as e:
            parse_records("rpi-node-7", case["records"])
        _assert_unreadable(e.value, "rpi-node-7", case["error"])
    else:
        assert _plain(parse_records("rpi-node-7", case["records"])) == case["facts"]


def test_every_record_kind_has_fixtures() -> None:
    # "unknown" holds the lines no parser is registered for.
    assert {p.parent.name for p in RECORD_CASES} == {*RECORDS, "unknown"}


def test_parse_good_output() -> None:
    facts = parse_facts("192.168.1.101", (DATA / "good-hypriot.txt").read_text())
    assert facts.host == "192.168.1.101"
    assert (facts.machine, facts.hostname, facts.os_id, facts.os_version) == ("armv7l", "black-pearl", "raspbian", "8")
    assert [a.cidr for a in facts.addresses] == ["127.0.0.1/8", "192.168.1.101/24"]
    assert facts.addresses[1].ip == "192.168.1.101"
    assert facts.is_hypriot and facts.occidentalis == "hostname=black-pearl\n"
    hostname = facts.file("/etc/hostname")
    assert hostname.exists and hostname.content == b"hello\n" and hostname.mode == 0o644
    assert facts.file("/etc/hosts").content == b""
    assert not facts.file("/etc/kubernetes/k8s.conf").exists
    big = facts.file("/etc/kubernetes/big.json")
    assert big.exists and big.content is None and big.size == 100000 and big.owner == "pirate"
    assert not facts.file("/etc/kubernetes/manifests").is_regular
    assert not facts.file("/never/asked").exists
    assert facts.unit("docker-bootstrap.service").is_active
    flannel = facts.unit("k8s-flannel.service")
    assert flannel.is_failed and not flannel.is_enabled
    assert facts.unit("docker.service").enabled == "not-found"
    assert facts.unit("never.service").active == "unknown"
    assert facts.binaries == {"docker": "/usr/bin/docker", "dockerd": None}


def test_crlf_output_from_a_pty_parses() -> None:
    text = (DATA / "good-hypriot.txt").read_text().replace("\n", "\r\n")
    assert parse_facts("h", text).hostname == "black-pearl"


@pytest.mark.parametrize("case", GARBAGE, ids=[c["name"] for c in GARBAGE])
def test_garbage_is_an_error_naming_the_host(case: dict[str, object]) -> None:
    with pytest.raises(FactsError) as e:
        parse_facts("rpi-node-7", str(case["output"]))
    _assert_unreadable(e.value, "rpi-node-7", case["error"])  # type: ignore[arg-type]


def test_every_prefix_of_good_output_is_rejected() -> None:
    """Truncation anywhere (a cut SSH session) is caught, never half-parsed."""
    text = (DATA / "good-hypriot.txt").read_text()
    end = text.index("PIPROV-FACTS-END")
    for cut in range(0, end, 7):
        with pytest.raises(FactsError):
            parse_facts("h", text[:cut])


def test_command_refuses_unsafe_arguments() -> None:
    with pytest.raises(FactsError):
        facts_command(["/etc/x; rm -rf /"], [])
    with pytest.raises(FactsError):
        facts_command(["relative/path"], [])
    with pytest.raises(FactsError):
        facts_command([], ["docker.service && reboot"])
    with pytest.raises(FactsError):
        facts_command([], [], binaries=["docker; reboot"])


def test_command_is_one_script_without_bashisms() -> None:
    cmd = facts_command(["/etc/kubernetes/k8s.conf"], ["docker.service"])
    assert "[[" not in cmd and "function " not in cmd and "<(" not in cmd
    assert BEGIN in cmd
    # The host files hostname planning edits are always read.
    files = next(ln for ln in cmd.splitlines() if ln.startswith("fs ")).split()[1:]
    for p in ("/boot/occidentalis.txt", "/etc/hostname", "/etc/hosts"):
        assert p in files


@pytest.mark.parametrize("shell", SHELLS, ids=[s[0] for s in SHELLS])
def test_command_runs_under_a_posix_shell(shell: list[str], tmp_path: Path) -> None:
    small = tmp_path / "small.conf"
    small.write_text("K8S_MASTER_IP=10.0.0.1\n")
    small.chmod(0o640)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(MAX_CONTENT + 1))
    binary = tmp_path / "bin"
    binary.write_bytes(bytes(range(256)))
    (tmp_path / "adir").mkdir()
    paths = [str(p) for p in (small, empty, big, binary, tmp_path / "adir", tmp_path / "missing")]
    cmd = facts_command(paths, ["docker.service"], binaries=load_graph().binaries())
    out = subprocess.run([*shell, "-c", cmd], capture_output=True, text=True, timeout=60)
    facts = parse_facts("localhost", out.stdout)
    assert facts.machine == os.uname().machine
    assert facts.hostname == os.uname().nodename
    f = facts.file(str(small))
    assert f.content == b"K8S_MASTER_IP=10.0.0.1\n" and f.mode == 0o640 and f.owner == "root"
    assert facts.file(str(empty)).content == b"" and facts.file(str(empty)).size == 0
    assert facts.file(str(big)).content is None and facts.file(str(big)).size == MAX_CONTENT + 1
    assert facts.file(str(binary)).content == bytes(range(256))
    assert not facts.file(str(tmp_path / "adir")).is_regular
    assert not facts.file(str(tmp_path / "missing")).exists
    assert "docker.service" in facts.units
    assert any(a.ip == "127.0.0.1" for a in facts.addresses) or not shutil.which("ip")
    assert set(facts.binaries) == set(load_graph().binaries())
    for name, found in facts.binaries.items():
        assert found is None or found.startswith("/")


SYSTEMCTL_SHOW = """ActiveState=active
UnitFileState=enabled

ActiveState=inactive
UnitFileState=

ActiveState=failed
UnitFileState=masked
"""

# What systemd >= 235 prints for the same units: its own property order, not the
# order of -p (systemd 252 on the lab prints a service's NRestarts before its
# ActiveState); a socket has no NRestarts. a.service died twice and is back,
# b.service never started.
SYSTEMCTL_SHOW_235 = """Result=success
NRestarts=2
ActiveState=active
UnitFileState=enabled
InactiveEnterTimestampMonotonic=1000000

InactiveEnterTimestampMonotonic=0
ActiveState=inactive
UnitFileState=
Result=success
NRestarts=0

ActiveState=failed
UnitFileState=masked
InactiveEnterTimestampMonotonic=2000000
"""


@pytest.mark.parametrize("shell", SHELLS, ids=[s[0] for s in SHELLS])
@pytest.mark.parametrize("answer", ["blocks", "blocks-235", "no-systemd"])
def test_units_come_from_one_systemctl_call(shell: list[str], answer: str, tmp_path: Path) -> None:
    # One `systemctl show` for every unit (a call costs ~15 ms on a node); its
    # blocks come back in argument order. A node where it answers nothing
    # reports every unit as unknown, never as a misaligned neighbour's state.
    # "blocks" is a systemd before 235: no NRestarts, and (as the fake) nothing
    # else of the history either.
    log = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    show = {"blocks": SYSTEMCTL_SHOW, "blocks-235": SYSTEMCTL_SHOW_235}.get(answer)
    body = f"cat <<'EOF'\n{show}EOF\n" if show else "exit 1\n"
    version = 'if [ "$1" = --version ]; then echo "systemd 215"; exit 0; fi\n' if answer == "blocks" else ""
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{version}{body}')
    fake.chmod(0o755)
    _fake_journalctl(tmp_path, "", 0)
    cmd = facts_command([], ["a.service", "b.service", "c.socket"])
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    out = subprocess.run([*shell, "-c", cmd], capture_output=True, text=True, timeout=60, env=env)
    facts = parse_facts("localhost", out.stdout)
    units = facts.units
    # systemctl runs twice: `--version` (the systemd version fact, which j()
    # reuses: no second one where NRestarts is missing) and ONE `show`.
    calls = log.read_text().splitlines()
    assert sorted(calls, key=lambda c: c != "--version") == ["--version", *[c for c in calls if c.startswith("show ")]]
    assert len(calls) == 2
    assert "-p NRestarts -p Result -p InactiveEnterTimestampMonotonic" in log.read_text()
    got = {name: (u.active, u.enabled) for name, u in units.items()}
    if answer.startswith("blocks"):
        assert got == {"a.service": ("active", "enabled"), "b.service": ("inactive", "not-found"),
                       "c.socket": ("failed", "masked")}
    else:
        assert got == dict.fromkeys(["a.service", "b.service", "c.socket"], ("unknown", "not-found"))
    assert facts.uptime is not None and facts.uptime > 2  # this machine's /proc/uptime
    history = {name: (u.restarts, u.failed_ago is not None) for name, u in units.items()}
    if answer == "blocks-235":
        assert history == {"a.service": (2, True), "b.service": (0, False), "c.socket": (None, False)}
        assert units["a.service"].failed_ago == pytest.approx(facts.uptime - 1, abs=0.01)
    elif answer == "blocks":  # systemd 215: the counts come from its (here empty) journal
        assert history == {"a.service": (0, False), "b.service": (0, False), "c.socket": (None, False)}
    else:
        assert history == dict.fromkeys(["a.service", "b.service", "c.socket"], (None, False))


def _fake_journalctl(where: Path, output: str, status: int) -> Path:
    """A journalctl on ``where`` printing ``output``; its arguments land in ``journalctl.calls``, one a line."""
    calls = where / "journalctl.calls"
    fake = where / "journalctl"
    (where / "journal.txt").write_text(output)
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s|" "$a"; done >> {calls}\necho >> {calls}\n'
                    f"cat {where / 'journal.txt'}\nexit {status}\n")
    fake.chmod(0o755)
    return calls


JOURNAL_CASES = sorted((Path(__file__).parent / "data" / "journal").glob("*.yaml"))


@pytest.mark.parametrize("shell", SHELLS, ids=[s[0] for s in SHELLS])
@pytest.mark.parametrize("path", JOURNAL_CASES, ids=[p.stem for p in JOURNAL_CASES])
def test_restart_history_from_the_journal_before_systemd_235(shell: list[str], path: Path, tmp_path: Path) -> None:
    # data/journal/*.yaml: what `systemctl --version`, `systemctl show` and journalctl
    # print on a node, and the history the facts then say per unit ("at": the
    # monotonic time of the last failure, made into seconds ago with the node's uptime).
    case = yaml.safe_load(path.read_text())
    log = tmp_path / "systemctl.calls"
    show = case["show"]
    (tmp_path / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {log}\n'
        f'if [ "$1" = --version ]; then cat <<\'EOF\'\n{case["version"]}\nEOF\nexit 0; fi\n'
        f"cat <<'EOF'\n{show}EOF\n")
    (tmp_path / "systemctl").chmod(0o755)
    jcalls = _fake_journalctl(tmp_path, case["journal"], case.get("journal_exit", 0))
    cmd = facts_command([], case["units"])
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    out = subprocess.run([*shell, "-c", cmd], capture_output=True, text=True, timeout=60, env=env)
    facts = parse_facts("localhost", out.stdout)
    assert facts.uptime is not None
    got = {}
    for name, unit in facts.units.items():
        at = None if unit.failed_ago is None else round(facts.uptime - unit.failed_ago, 3)
        got[name] = {"restarts": unit.restarts, "at": at}
    want = {name: {"restarts": w["restarts"], "at": None if w["at"] is None else round(w["at"], 3)}
            for name, w in case["expect"].items()}
    assert got == want
    systemctl = log.read_text().splitlines()
    assert ("--version" in systemctl) == case.get("version_called", True)
    if not case["journal_called"]:
        assert not jcalls.exists()
        return
    (args,) = jcalls.read_text().splitlines()
    args_list = args.rstrip("|").split("|")
    # One call for every service, exact matches only: PID 1's messages about them, this boot.
    assert args_list[:6] == ["-b", "-q", "--no-pager", "-o", "short-monotonic", "_PID=1"]
    services = [u for u in case["units"] if u.endswith(".service")]
    assert len(args_list) == 6 + 6 * len(services)
    assert all(a.startswith("MESSAGE=") for a in args_list[6:])
    for u in services:
        assert f"MESSAGE=Unit {u} entered failed state." in args_list
        assert f"MESSAGE={u}: Service hold-off time over, scheduling restart." in args_list


def test_a_file_checksum_is_computed_from_its_content() -> None:
    good = "PIPROV-FACTS-BEGIN 1\nuname armv7l\nhostname x\nfile /etc/hosts present - 644 root root 3 YWJj\nPIPROV-FACTS-END 3\n"
    assert parse_facts("n", good).file("/etc/hosts").sha256 == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    # Without content (a big file) the node must send the checksum itself.
    big = good.replace("- 644 root root 3 YWJj", "- 644 root root 70000 !big")
    with pytest.raises(FactsError, match="record 3 is malformed"):
        parse_facts("n", big)


@pytest.mark.parametrize("shell", SHELLS, ids=[s[0] for s in SHELLS])
def test_command_locates_the_programs_it_is_given(shell: list[str], tmp_path: Path) -> None:
    # The graph gives name -> default path; only the names are asked for.
    program = tmp_path / "piprov-fake-dockerd"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    cmd = facts_command([], [], binaries={"piprov-fake-dockerd": "/usr/bin/x", "piprov-no-such-program": "/x"})
    out = subprocess.run([*shell, "-c", cmd], capture_output=True, text=True, timeout=60, env=env)
    assert parse_facts("localhost", out.stdout).binaries == {
        "piprov-fake-dockerd": str(program), "piprov-no-such-program": None}
    none = facts_command([], [], binaries=())
    assert "bin " not in none
    out = subprocess.run([*shell, "-c", none], capture_output=True, text=True, timeout=60)
    assert parse_facts("localhost", out.stdout).binaries == {}


# What `ip -o -4 addr show` printed in a network namespace (veth + bridge) for a
# point-to-point peer (tun0, ppp0), several addresses on eth0, a secondary one
# labelled eth0:1, metric/noprefixroute and a deprecated one: iproute2 6.1.0 and
# busybox 1.35.0, verbatim (the backslash and lifetimes of -o included).
IP_OUTPUTS = sorted(DATA.glob("ip-addr-*.txt"))


@pytest.mark.parametrize("shell", SHELLS, ids=[s[0] for s in SHELLS])
@pytest.mark.parametrize("ip_output", IP_OUTPUTS, ids=[p.stem for p in IP_OUTPUTS])
def test_every_address_line_ip_prints_is_read(shell: list[str], ip_output: Path, tmp_path: Path) -> None:
    # A function, not a program on PATH: Debian's busybox sh runs its own ip applet before PATH.
    fake = f"ip() {{ cat '{ip_output}'; }}\n"
    out = subprocess.run([*shell, "-c", fake + facts_command([], [])], capture_output=True, text=True, timeout=60)
    facts = parse_facts("localhost", out.stdout)
    assert len(facts.addresses) == len(ip_output.read_text().splitlines())
    tun = facts.address("10.8.0.6")
    assert tun is not None and (tun.interface, tun.cidr, tun.peer) == ("tun0", "10.8.0.6/32", "10.8.0.5")
    # The far end of a point-to-point link is not the node's address.
    assert facts.address("10.8.0.5") is None and facts.address("100.64.0.1") is None
    # The inventory's address is chosen among several on one interface.
    chosen = facts.address("192.168.1.101")
    assert chosen is not None and (chosen.interface, chosen.cidr, chosen.secondary) == ("eth0", "192.168.1.101/24", False)
    label = facts.address("192.168.1.102")
    assert label is not None and (label.interface, label.label, label.secondary) == ("eth0", "eth0:1", True)
    assert facts.address("10.9.9.9") is None


@pytest.mark.parametrize("shell", SHELLS, ids=[s[0] for s in SHELLS])
def test_dropins_come_with_their_content_under_a_posix_shell(shell: list[str], tmp_path: Path) -> None:
    # dr() as the node runs it, its two directories moved under tmp_path (the real
    # ones need root): *.conf only, a name it would not send as !odd, nothing for
    # a unit without drop-ins.
    from piprov.facts import command

    etc, run = tmp_path / "etc", tmp_path / "run"
    (etc / "docker.service.d").mkdir(parents=True)
    (run / "docker.service.d").mkdir(parents=True)
    (etc / "docker.service.d" / "overlay.conf").write_text("[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H fd://\n")
    (etc / "docker.service.d" / "notes.txt").write_text("not read by systemd\n")
    (run / "docker.service.d" / "50-CPUQuota.conf").write_text("[Service]\nCPUQuota=50%\n")
    (etc / "docker.service.d" / "my proxy.conf").write_text("[Service]\nEnvironment=HTTP_PROXY=x\n")
    body = (command._DROPINS.replace("/etc/systemd/system/", f"{etc}/").replace("/run/systemd/system/", f"{run}/"))
    prelude = command.PRELUDE.replace("MAXCONTENT", str(MAX_CONTENT))
    script = f"{prelude}{body}printf '%s\\n' '{command.BEGIN}'\ndr docker.service k8s-etcd.service\n" \
             f"printf '%s %s\\n' {command.END} \"$n\"\n"
    out = subprocess.run([*shell, "-c", script], capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert lines[0] == command.BEGIN and lines[-1].startswith(command.END), out
    records = lines[1:-1]
    dropins = [r for r in records if r.startswith("dropin ")]
    assert dropins == ["dropin docker.service !odd",  # "my proxy.conf": globs sort, m < o
                       f"dropin docker.service {etc}/docker.service.d/overlay.conf",
                       f"dropin docker.service {run}/docker.service.d/50-CPUQuota.conf"]
    files = [r.split(" ")[1] for r in records if r.startswith("file ")]
    assert files == [f"{etc}/docker.service.d/overlay.conf", f"{run}/docker.service.d/50-CPUQuota.conf"]
    assert lines[-1] == f"{command.END} {len(records)}"
