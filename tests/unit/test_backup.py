"""`piprov backup` (no root): the commands per etcd line, their flags against the matrix, the script
under busybox/dash with a fake docker, the refusal of garbage output, the manifest and the file (0600)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shlex
import shutil
import stat
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from piprov.backup import archive, command, run
from piprov.backup.command import MARK, NodeBackup
from piprov.errors import BackupError
from piprov.graph import load_graph
from piprov.graph.versions import load_matrix
from piprov.transport import CommandResult
from test_floor import busybox_bin
from test_versions_render import _inventory, _sets

NOW = datetime(2026, 12, 2, 5, 30, 0, tzinfo=timezone.utc)


def _plans(tmp: Path) -> dict[str, command.BackupPlan]:
    """(profile/etcd line) -> the master's backup plan, for every set the matrix supports."""
    graph, matrix = load_graph(), load_matrix()
    out = {}
    for i, (profile, tags) in enumerate(_sets(matrix)):
        d = tmp / str(i)
        d.mkdir(parents=True)
        plan = run.plan_backup(_inventory(d, tags), graph, matrix)
        out[f"{profile}/{plan.line}"] = plan
    return out


def test_each_etcd_line_backs_up_its_stores_with_its_own_etcdctl(tmp_path: Path) -> None:
    plans = _plans(tmp_path)
    assert set(plans) == {"seed/2.x", "seed/3.3-3.5", "last-hyperkube/3.3-3.5"}
    exec_ = "docker -H unix:///var/run/docker-bootstrap.sock exec k8s-etcd"
    seed = plans["seed/2.x"]
    assert seed.stores == ("v2",)
    assert seed.commands_text == (
        f"{exec_} etcdctl backup --data-dir=/var/etcd/data --backup-dir=<backup-dir>/etcd/v2",)
    for name in ("seed/3.3-3.5", "last-hyperkube/3.3-3.5"):
        v2, v3 = plans[name].commands_text
        assert plans[name].stores == ("v2", "v3")
        # No --with-v3: it waits on the live etcd's bolt flock (playbooks/versions.yaml cites why).
        assert v2 == f"{exec_} env ETCDCTL_API=2 etcdctl backup --data-dir=/var/etcd/data --backup-dir=<backup-dir>/etcd/v2"
        assert v3.startswith(f"{exec_} env ETCDCTL_API=3 etcdctl --endpoints=https://")
        assert v3.endswith("--key=/etc/kubernetes/pki/apiserver-etcd-client.key snapshot save <backup-dir>/etcd/v3.db")


def test_every_etcdctl_flag_of_the_backup_is_in_the_matrix(tmp_path: Path) -> None:
    """As test_versions_render does for the units: each flag exists in the etcd line that runs it."""
    matrix = load_matrix()
    for name, plan in _plans(tmp_path).items():
        flags = matrix.component("etcd").line(plan.line).flags
        for cmd in plan.commands:
            words = shlex.split(cmd)
            rest = words[words.index("etcdctl") + 1:]
            if "backup" in rest:
                assert rest[0] == "backup", cmd
                program, given = "etcdctl backup", rest[1:]
            else:
                i = rest.index("snapshot")
                assert rest[i + 1] == "save" and len(rest) == i + 3, cmd
                program, given = "etcdctl3", rest[:i]
                assert flags["etcdctl3 snapshot save"] == frozenset()
            known = flags.get(program)
            assert known is not None, f"{name}: etcd {plan.line} lists no flags of {program!r}"
            for w in given:
                assert w.startswith("--") and w[2:].split("=", 1)[0] in known, f"{name}: {w} ({program})"


FAKE_DOCKER = """#!/bin/sh
# docker -H SOCK exec k8s-etcd [env ETCDCTL_API=N] PROGRAM ARGS: writes what etcdctl would, under $DATA.
shift 4
[ "$1" = env ] && shift 2
case "$1" in
  */etcd) echo "etcd Version: 3.4.23"; echo "Git SHA: fake"; exit 0 ;;
esac
# etcdctl 2.1.1 prints "Incorrect Usage." and exits 0 on a flag it lacks: $NOOP plays that.
[ -n "$NOOP" ] && { echo "Incorrect Usage."; exit 0; }
for a in "$@"; do
  case $a in
    --backup-dir=*) d=$DATA/${a#--backup-dir=/var/etcd/data/}; mkdir -p "$d/member/snap" "$d/member/wal"
       printf 'wal' > "$d/member/wal/0000000000000000-0000000000000000.wal"; printf 'snap' > "$d/member/snap/db" ;;
  esac
done
case "$*" in *"snapshot save "*) f=$DATA/${a#/var/etcd/data/}; printf 'bolt' > "$f" ;; esac
[ -n "$FAIL" ] && { echo "Error: etcdserver: request timed out" >&2; exit 1; }
exit 0
"""


def _floor_run(plan: command.BackupPlan, tmp: Path, shell: str, fail: str = "",
               noop: str = "") -> subprocess.CompletedProcess[str]:
    busybox = shutil.which("busybox")
    assert busybox is not None
    bindir = busybox_bin(tmp / "bin", {"docker": FAKE_DOCKER})
    data = tmp / "data"
    data.mkdir()
    script = plan.script.replace("h=/var/lib/kubernetes/etcd", f"h={data}")
    argv = [busybox, "sh"] if shell == "busybox" else [str(shutil.which("dash"))]
    env = {"PATH": str(bindir), "DATA": str(data), "FAIL": fail, "NOOP": noop, "LC_ALL": "C"}
    return subprocess.run([*argv, "-c", script], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox")
@pytest.mark.parametrize("shell", [s for s in ("busybox", "dash") if shutil.which(s)])
def test_the_script_runs_on_the_floor_and_leaves_no_temp_dir(tmp_path: Path, shell: str) -> None:
    plan = _plans(tmp_path / "p")["last-hyperkube/3.3-3.5"]
    proc = _floor_run(plan, tmp_path / "ok", shell)
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "ok" / "data").iterdir()) == []
    node = command.parse_output(plan.host, proc.stdout)
    assert node.version == "3.4.23"
    files = archive.payload_files(plan.host, node.payload, plan.stores)
    assert files["etcd/v3.db"] == b"bolt" and "etcd/v2/member/wal/0000000000000000-0000000000000000.wal" in files
    failed = _floor_run(plan, tmp_path / "bad", shell, fail="1")
    assert failed.returncode == 1 and "etcdctl backup failed" in failed.stderr and "timed out" in failed.stderr
    assert list((tmp_path / "bad" / "data").iterdir()) == [] and MARK not in failed.stdout
    noop = _floor_run(plan, tmp_path / "noop", shell, noop="1")
    assert noop.returncode == 1 and "etcdctl backup wrote no WAL into etcd/v2" in noop.stderr
    assert "Incorrect Usage." in noop.stderr and list((tmp_path / "noop" / "data").iterdir()) == []


def _payload(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _framed(payload: bytes, version: str = "etcd Version: 2.1.1", digest: str | None = None) -> str:
    b64 = base64.encodebytes(payload).decode()
    return (f"{MARK} version {version}\n{MARK} sha256 {digest or hashlib.sha256(payload).hexdigest()}\n"
            f"{MARK} payload\n{b64}{MARK} end\n")


WAL = "etcd/v2/member/wal/0000000000000000-0000000000000000.wal"


@pytest.mark.parametrize("stdout, words", [
    ("", "cut short"),
    ("hello\n", "unexpected output"),
    (f"{MARK} version etcd Version: 2.1.1\n{MARK} payload\nAAAA\n", "cut short"),
    (_framed(b"x", digest="0" * 64), "checksum does not match"),
    (_framed(b"x").replace("eA==", "e!=="), "not base64"),
    (_framed(b"x", version="sh: docker: not found"), "cannot tell etcd's version"),
])
def test_garbage_from_the_master_is_refused_naming_it(stdout: str, words: str) -> None:
    with pytest.raises(BackupError) as e:
        command.parse_output("pi-master", stdout)
    assert e.value.host == "pi-master" and words in e.value.message


@pytest.mark.parametrize("members, words", [
    ({"etcd/../../etc/passwd": b"x", WAL: b"w"}, "outside etcd/"),
    ({"/etc/shadow": b"x"}, "outside etcd/"),
    ({"etcd/v2/member/snap/db": b"x"}, "no v2 WAL"),
])
def test_a_payload_outside_its_shape_is_refused(members: dict[str, bytes], words: str) -> None:
    with pytest.raises(BackupError) as e:
        archive.payload_files("pi-master", _payload(members), ("v2",))
    assert words in e.value.message
    with pytest.raises(BackupError, match="not a tar.gz"):
        archive.payload_files("pi-master", b"garbage", ("v2",))
    with pytest.raises(BackupError, match="no v3 snapshot"):
        archive.payload_files("pi-master", _payload({WAL: b"w"}), ("v2", "v3"))


def test_a_backup_is_one_round_trip_written_0600_with_a_manifest_that_verifies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, matrix = load_graph(), load_matrix()
    profile, tags = next(s for s in _sets(matrix) if s[0] == "seed")
    inventory = _inventory(tmp_path, tags)
    plan = run.plan_backup(inventory, graph, matrix)
    stdout = _framed(_payload({WAL: b"wal", "etcd/v2/member/snap/0000000000000002-0000000000000010.snap": b"s"}))

    class Fake:
        host, round_trips = plan.host, 0
        commands: list[str] = []

        def run(self, cmd: str, *, sudo: bool = False, stdin: bytes | None = None,
                timeout: float | None = None) -> CommandResult:
            assert sudo and stdin is None
            self.commands.append(cmd)
            self.round_trips += 1
            return CommandResult(self.host, cmd, 0, stdout, "", 0.1)

        def close(self) -> None:
            pass

    fake = Fake()
    fleet = run.Fleet(inventory, {plan.host: fake})
    writes: list[tuple[Path, int | None]] = []
    real = run.localfs.atomic_write
    monkeypatch.setattr(run.localfs, "atomic_write",
                        lambda p, d, mode=None: (writes.append((p, mode)), real(p, d, mode=mode))[1])
    res = run.take_backup(inventory, now=NOW, fleet=fleet)
    assert fake.commands == [plan.script] and res.round_trips == 1
    assert res.path == tmp_path / "inventory.yaml.backups" / f"{inventory.cluster_name}-20261202T053000Z.tar.gz"
    assert writes == [(res.path, 0o600)]
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o600 and stat.S_IMODE(res.path.parent.stat().st_mode) == 0o700
    m = archive.verify_backup(res.path.read_bytes())
    assert m.data["cluster"] == inventory.cluster_name and m.data["created"] == "2026-12-02T05:30:00Z"
    assert m.data["etcd"] == {"version": "2.1.1", "line": "2.x", "stores": ["v2"]}
    assert m.data["master"]["name"] == plan.host and m.data["commands"] == list(plan.commands_text)
    assert m.checksum == archive.checksum_of(m.files) and set(m.files) == {
        WAL, "etcd/v2/member/snap/0000000000000002-0000000000000010.snap"}
    assert m.data["restore"]["v2"].endswith("--force-new-cluster")


def test_a_master_of_another_etcd_line_is_refused(tmp_path: Path) -> None:
    graph, matrix = load_graph(), load_matrix()
    _, tags = next(s for s in _sets(matrix) if s[0] == "seed")
    plan = run.plan_backup(_inventory(tmp_path, tags), graph, matrix)
    with pytest.raises(BackupError, match="not of the inventory's line 2.x"):
        run._check_version(plan, matrix, "3.4.23")


def _packed(tmp: Path) -> bytes:
    files = {WAL: b"wal", "etcd/v3.db": b"bolt"}
    plan = command.BackupPlan("pi-master", "3.3-3.5", ("v2", "v3"), ("a", "b"), "")
    m = archive.manifest_for(plan, NodeBackup("3.4.23", b"", ""), files, cluster="c", address="10.0.0.1", created=NOW)
    return archive.pack(m, files, NOW)


def test_verify_refuses_a_changed_or_foreign_file(tmp_path: Path) -> None:
    data = _packed(tmp_path)
    assert archive.verify_backup(data).data["contents"] == {"v2": "etcd/v2/", "v3": "etcd/v3.db"}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert list(members)[0] == "manifest.json"
    sums = archive.sums_text(json.loads(members["manifest.json"])["files"])
    assert sums == "".join(f"{hashlib.sha256(members[p]).hexdigest()}  {p}\n" for p in sorted(members) if p != "manifest.json")
    members["etcd/v3.db"] = b"tampered"
    with pytest.raises(BackupError, match="do not match the manifest: etcd/v3.db"):
        archive.verify_backup(_payload(members))
    with pytest.raises(BackupError, match="not a piprov backup"):
        archive.verify_backup(b"nope")
