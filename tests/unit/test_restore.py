"""`piprov restore` (no root): the file refused unless it fits the inventory, the one script under
busybox/dash with a fake docker (data dir swapped, the old one aside, nothing left), its flags against
the matrix, the components brought up first, and the command's confirmation."""

from __future__ import annotations

import io
import shlex
import shutil
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from piprov.backup import archive, command
from piprov.backup.command import RESTORE_MARK, NodeBackup, RestoreTarget
from piprov.cli.app import EXIT_USAGE, cli, run
from piprov.errors import BackupError, RestoreError
from piprov.graph import load_graph
from piprov.graph.versions import load_matrix
from piprov.inventory.model import Inventory
from piprov.version import parse_version
from piprov.restore import bootstrap_components, check_backup, target_for
from test_floor import busybox_bin
from test_versions_render import _inventory, _sets

NOW = datetime(2026, 12, 2, 5, 30, 0, tzinfo=timezone.utc)
WAL = "etcd/v2/member/wal/0000000000000000-0000000000000000.wal"
SNAP = "etcd/v2/member/snap/0000000000000002-0000000000000010.snap"


def _seed(tmp: Path, profile: str = "seed", line: str = "2.x") -> Inventory:
    matrix = load_matrix()
    etcd = matrix.component("etcd")
    _, tags = next(s for s in _sets(matrix) if s[0] == profile and etcd.line(line).contains(parse_version(s[1]["etcd"])))
    tmp.mkdir(parents=True, exist_ok=True)
    return _inventory(tmp, tags)


def _backup(cluster: str, line: str = "2.x", stores: tuple[str, ...] = ("v2",), version: str = "2.1.1") -> bytes:
    files = {WAL: b"wal", SNAP: b"snap"}
    if "v3" in stores:
        files["etcd/v3.db"] = b"bolt"
    plan = command.BackupPlan("rpi-master", line, stores, ("a",), "")
    m = archive.manifest_for(plan, NodeBackup(version, b"", ""), files, cluster=cluster, address="10.0.0.1",
                             created=NOW)
    return archive.pack(m, files, NOW)


def test_a_backup_of_this_cluster_and_line_is_taken(tmp_path: Path) -> None:
    inv = _seed(tmp_path)
    m = check_backup(inv, load_graph(), load_matrix(), _backup(inv.cluster_name), "f")
    assert m.data["etcd"]["line"] == "2.x"


def test_garbage_and_foreign_backups_are_refused(tmp_path: Path) -> None:
    inv = _seed(tmp_path)
    graph, matrix = load_graph(), load_matrix()
    with pytest.raises(RestoreError, match="a backup of cluster 'other'"):
        check_backup(inv, graph, matrix, _backup("other"), "f")
    with pytest.raises(RestoreError, match="of line '3.3-3.5'; the inventory runs etcd line 2.x"):
        check_backup(inv, graph, matrix, _backup(inv.cluster_name, "3.3-3.5", ("v2", "v3"), "3.4.23"), "f")
    with pytest.raises(BackupError, match="not a piprov backup"):
        check_backup(inv, graph, matrix, b"garbage", "f")
    with tarfile.open(fileobj=io.BytesIO(_backup(inv.cluster_name)), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    members[WAL] = b"tampered"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BackupError, match="do not match the manifest"):
        check_backup(inv, graph, matrix, buf.getvalue(), "f")


def test_a_3x_backup_is_refused_saying_so(tmp_path: Path) -> None:
    inv = _seed(tmp_path, "last-hyperkube", "3.3-3.5")
    with pytest.raises(RestoreError, match="v2 store of etcd 2.x only") as e:
        check_backup(inv, load_graph(), load_matrix(), _backup(inv.cluster_name, "3.3-3.5", ("v2", "v3"), "3.4.23"),
                     "f")
    assert e.value.hint and "snapshot restore" in e.value.hint


def test_etcd_needs_the_bootstrap_daemon_first_and_nothing_else(tmp_path: Path) -> None:
    # The DAG says so (playbooks: etcd requires docker-bootstrap only; the one-shot listens on the loopback).
    assert bootstrap_components(load_graph(), _seed(tmp_path)) == ["docker-bootstrap"]


def test_the_one_shot_etcd_uses_only_flags_its_line_has(tmp_path: Path) -> None:
    inv = _seed(tmp_path)
    t = target_for(inv, load_graph(), "arm")
    assert t.docker == "docker -H unix:///var/run/docker-bootstrap.sock" and t.container == "k8s-etcd"
    assert t.units == ("k8s-etcd.service",) and t.image.endswith("etcd-arm:2.1.1"), t
    script = command.restore_script(t, b"x")
    run = next(ln for ln in script.splitlines() if f" run -d --name {command.ONE_SHOT} " in ln)
    words = shlex.split(run.split(" >", 1)[0])
    flags = load_matrix().component("etcd").line("2.x").flags
    given = words[words.index(t.etcd) + 1:]
    assert "--force-new-cluster" in given and "--listen-client-urls=http://127.0.0.1:2379" in given
    for w in given:
        assert w[2:].split("=", 1)[0] in flags["etcd"], w
    health = next(ln for ln in script.splitlines() if "cluster-health" in ln)
    assert "timeout 120 sh -c" in health and "--no-sync" in health and "--peers=http://127.0.0.1:2379" in health
    assert {"no-sync", "peers"} <= flags["etcdctl"]


FAKE_DOCKER = """#!/bin/sh
# docker -H SOCK VERB ...: what the restore script needs, recorded in $LOG.
shift 2
echo "$*" >> "$LOG"
case "$1" in
  version|stop) exit 0 ;;
  rm) exit 0 ;;
  inspect) [ -e "$STATE/pulled" ] ;;
  pull) : > "$STATE/pulled" ;;
  logs) echo "etcdmain: fake etcd log line" ;;
  run)
    for a in "$@"; do case $a in *:/var/etcd/data) src=${a%:/var/etcd/data} ;; esac; done
    ls "$src/member/wal" | grep -q wal || { echo "no wal in $src" >&2; exit 1; }
    case "$*" in *--force-new-cluster*) echo forced > "$src/member/forced" ;; esac
    echo 0123456789ab ;;
  exec) [ -n "$UNHEALTHY" ] && { echo "cluster is unhealthy"; exit 1; }; echo "cluster is healthy" ;;
  *) echo "fake docker: $*" >&2; exit 1 ;;
esac
"""


def _floor(tmp: Path, shell: str, *, unhealthy: str = "", old: bool = True) -> tuple[subprocess.CompletedProcess[str], Path]:
    busybox = shutil.which("busybox")
    assert busybox is not None
    bindir = busybox_bin(tmp / "bin", {"docker": FAKE_DOCKER,
                                       "systemctl": '#!/bin/sh\necho "systemctl $*" >> "$LOG"\n'})
    data = tmp / "var" / "etcd"
    if old:
        data.mkdir(parents=True)
        (data / "old").write_text("the old store")
    t = RestoreTarget("docker -H unix:///var/run/docker-bootstrap.sock", "k8s-etcd", ("k8s-etcd.service",),
                      "/usr/local/bin/etcd", "/var/etcd/data", str(data), "10.0.0.1:5000/etcd-arm:2.1.1")
    script = command.restore_script(t, _backup("c"), wait=2)
    argv = [busybox, "sh"] if shell == "busybox" else [str(shutil.which("dash"))]
    env = {"PATH": str(bindir), "LOG": str(tmp / "log"), "STATE": str(tmp), "UNHEALTHY": unhealthy, "LC_ALL": "C"}
    return subprocess.run([*argv, "-c", script], capture_output=True, text=True, env=env, timeout=60), data


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox")
@pytest.mark.parametrize("shell", [s for s in ("busybox", "dash") if shutil.which(s)])
def test_the_script_swaps_the_data_dir_and_keeps_the_old_one(tmp_path: Path, shell: str) -> None:
    proc, data = _floor(tmp_path / "ok", shell)
    assert proc.returncode == 0, proc.stderr
    steps = command.parse_restore("rpi-master", proc.stdout)
    assert steps["restored"] == str(data) and set(steps) == {"unpacked", "stopped", "force-new-cluster",
                                                             "moved-aside", "restored"}
    assert (data / "member" / "forced").read_text() == "forced\n"  # the one-shot ran on it
    assert (data / "member" / "wal" / "0000000000000000-0000000000000000.wal").read_bytes() == b"wal"
    aside = Path(steps["moved-aside"])
    assert aside.parent == data.parent and (aside / "old").read_text() == "the old store"
    assert sorted(p.name for p in data.parent.iterdir()) == sorted([data.name, aside.name])  # no temp dir left
    log = (tmp_path / "ok" / "log").read_text().splitlines()
    assert log[0] == "systemctl stop k8s-etcd.service" and "rm -f k8s-etcd piprov-etcd-restore" in log
    assert "pull 10.0.0.1:5000/etcd-arm:2.1.1" in log and log[-1] == "rm -f piprov-etcd-restore"
    fresh, data2 = _floor(tmp_path / "fresh", shell, old=False)
    assert fresh.returncode == 0, fresh.stderr
    assert "moved-aside" not in command.parse_restore("rpi-master", fresh.stdout) and (data2 / "member").is_dir()


@pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox")
@pytest.mark.parametrize("shell", [s for s in ("busybox", "dash") if shutil.which(s)])
def test_an_etcd_that_never_gets_healthy_leaves_the_old_store_in_place(tmp_path: Path, shell: str) -> None:
    proc, data = _floor(tmp_path, shell, unhealthy="1")
    assert proc.returncode == 1 and "was not healthy within 2 s" in proc.stderr, proc.stderr
    assert "fake etcd log line" in proc.stderr and f"{RESTORE_MARK} restored" not in proc.stdout
    assert [p.name for p in data.parent.iterdir()] == [data.name] and (data / "old").exists()
    with pytest.raises(BackupError, match="ended before the data dir was in place"):
        command.parse_restore("rpi-master", proc.stdout)
    assert (tmp_path / "log").read_text().splitlines()[-1] == "rm -f piprov-etcd-restore"


def test_a_playbook_backup_exec_it_cannot_read_is_refused() -> None:
    from piprov.graph.model import EtcdBackup

    with pytest.raises(BackupError, match="not `docker ... exec CONTAINER`"):
        command.restore_target(EtcdBackup("kubectl exec -it", "etcd --version", "/d", "/h", ""), (), "img")


def test_restore_asks_first_and_refuses_without_a_terminal(tmp_path: Path) -> None:
    inv = _seed(tmp_path)
    f = tmp_path / "b.tar.gz"
    f.write_bytes(_backup(inv.cluster_name))
    assert run(["restore", str(f), "-i", str(inv.path)]) == EXIT_USAGE  # pytest's stdin is no terminal
    helped = CliRunner().invoke(cli, ["restore", "--help"])
    assert helped.exit_code == 0 and "--force-new-cluster" in helped.output and "forget-key" in helped.output
