"""The master's backup timer (inventory `backup:`) and `piprov backup --fetch` (no root).

The inventory's `backup:` validated with file:line:col; the etcd-backup component rendered only
with it and only on the master, its take script the very script `piprov backup` runs, its timer's
directives in the systemd table at every supported systemd; its keep script on the floor (busybox
sh and dash, busybox applets only) with the fake docker of test_backup: whole backups only, the
newest N kept; the fetch script there too; the fetched output read strictly (garbage, cut short
or tampered refused) and written 0600 as a file `piprov backup --verify` accepts; and the prune
when `backup:` goes, with its reason.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from piprov.backup import archive, command, fetch, run
from piprov.backup.command import MARK
from piprov.errors import BackupError, ProblemList
from piprov.facts.model import FileFacts
from piprov.graph import load_graph
from piprov.graph.versions import load_matrix
from piprov.inventory import Inventory, load
from piprov.plan.owned import plan_owned, record_file
from piprov.render import desired_state
from piprov.transport import CommandResult
from test_floor import busybox_bin
from test_backup import FAKE_DOCKER, WAL, _framed, _payload
from test_systemd_floor import DIRECTIVES, SYSTEMDS, _directives
from test_versions_render import _inventory, _sets

BUSYBOX = shutil.which("busybox")
SHELLS = [s for s in ("busybox", "dash") if shutil.which(s)]
UNITS = ("/etc/systemd/system/k8s-etcd-backup.timer", "/etc/systemd/system/k8s-etcd-backup.service")
SCRIPTS = ("/var/lib/piprov/etcd-backup.sh", "/var/lib/piprov/etcd-backup-take.sh")


def _with_backup(tmp: Path, tags: dict[str, str], every: str = "6h", keep: int = 2) -> Inventory:
    tmp.mkdir(parents=True, exist_ok=True)
    inv = _inventory(tmp, tags)
    inv.path.write_text(inv.path.read_text() + f'\nbackup:\n  every: "{every}"\n  keep: {keep}\n')
    return load(inv.path)


def _seed_tags() -> dict[str, str]:
    return next(t for p, t in _sets(load_matrix()) if p == "seed")


# -- the inventory --------------------------------------------------------------------------------


@pytest.mark.parametrize("every", ["6h", "1h 30min", "2d", "90s", "daily", "weekly", "*-*-* 03:00",
                                   "Mon,Thu *-*-* 02:30:00", "*-*-1 04:00", "03:15"])
def test_a_good_backup_setting_loads(tmp_path: Path, every: str) -> None:
    inv = _with_backup(tmp_path, _seed_tags(), every, 7)
    assert inv.backup is not None and (inv.backup.every, inv.backup.keep) == (every, 7)
    assert inv.backup.is_span == bool(re.match(r"^\d", every) and ":" not in every)
    assert inv.backup.location is not None and inv.backup.location.line is not None


@pytest.mark.parametrize("text, words, offset", [
    ('backup:\n  every: "every day"\n  keep: 2\n', "backup.every: 'every day' is neither a time span", 1),
    ('backup:\n  every: minutely\n  keep: 2\n', "needs systemd 217", 1),
    ('backup:\n  every: 0h\n  keep: 2\n', "zero time span", 1),
    ('backup:\n  every: 6h\n  keep: 0\n', "backup.keep: 0 is not a number of backups to keep", 2),
    ('backup:\n  every: 6h\n  keep: "2"\n', "backup.keep", 2),
    ('backup:\n  every: 6h\n  keep: true\n', "backup.keep", 2),
    ('backup:\n  every: 6h\n  keep: 2\n  when: now\n', "when", 3),
    ('backup: 6h\n', "backup", 0),
])
def test_a_bad_backup_setting_is_refused_naming_file_line_col(tmp_path: Path, text: str, words: str,
                                                               offset: int) -> None:
    inv = _inventory(tmp_path, _seed_tags())
    base = inv.path.read_text() + "\n"
    inv.path.write_text(base + text)
    with pytest.raises(ProblemList) as e:
        load(inv.path)
    where = [(p.location.file, p.location.line, p.location.column) for p in e.value.problems if p.location]
    assert any(words in p.message for p in e.value.problems), [p.message for p in e.value.problems]
    assert (str(inv.path), base.count("\n") + 1 + offset) in [(f, ln) for f, ln, _ in where], where
    assert all(c for _, _, c in where)


# -- rendering ------------------------------------------------------------------------------------


def _files(inv: Inventory, node: str = "master", systemd: str = "215") -> dict[str, str]:
    n = inv.master if node == "master" else inv.workers[0]
    d = desired_state(inv, load_graph(), n, "armv7l", systemd=systemd)
    return {f.path: f.content.decode() for f in d.files}


def test_only_the_master_of_an_inventory_with_backup_gets_the_timer(tmp_path: Path) -> None:
    tags = _seed_tags()
    (tmp_path / "a").mkdir()
    without = _files(_inventory(tmp_path / "a", tags))
    assert not set(without) & {*UNITS, *SCRIPTS}
    inv = _with_backup(tmp_path / "b", tags)
    assert {*UNITS, *SCRIPTS} <= set(_files(inv))
    assert not set(_files(inv, "worker")) & {*UNITS, *SCRIPTS}
    d = desired_state(inv, load_graph(), inv.master, "armv7l")
    assert d.units["etcd-backup"] == ["k8s-etcd-backup.timer"]  # the timer starts the service, never `up`
    assert {f.path: f.mode for f in d.files if f.path in SCRIPTS} == {p: 0o700 for p in SCRIPTS}


def test_a_span_is_monotonic_and_a_calendar_event_persistent(tmp_path: Path) -> None:
    span = _files(_with_backup(tmp_path / "a", _seed_tags(), "6h"))[UNITS[0]]
    assert "OnActiveSec=6h\nOnUnitActiveSec=6h\n" in span and "OnCalendar" not in span
    cal = _files(_with_backup(tmp_path / "b", _seed_tags(), "*-*-* 03:00"))[UNITS[0]]
    assert "OnCalendar=*-*-* 03:00\nPersistent=true\n" in cal and "OnActiveSec" not in cal
    service = _files(_with_backup(tmp_path / "c", _seed_tags()))[UNITS[1]]
    assert "Type=oneshot\nExecStart=/bin/sh /var/lib/piprov/etcd-backup.sh\n" in service
    assert "After=k8s-etcd.service" in service and "[Install]" not in service


def test_the_take_script_is_the_one_piprov_backup_runs_for_each_etcd_line(tmp_path: Path) -> None:
    graph, matrix = load_graph(), load_matrix()
    for i, (_, tags) in enumerate(_sets(matrix)):
        inv = _with_backup(tmp_path / str(i), tags)
        assert run.plan_backup(inv, graph, matrix).script in _files(inv)[SCRIPTS[1]]


@pytest.mark.parametrize("systemd", SYSTEMDS)
@pytest.mark.parametrize("every", ["6h", "daily"])
def test_the_timer_uses_only_directives_its_systemd_has(tmp_path: Path, systemd: int, every: str) -> None:
    files = _files(_with_backup(tmp_path, _seed_tags(), every), systemd=str(systemd))
    for path in UNITS:
        for d in _directives(files[path]):
            assert d in DIRECTIVES, f"{path}: {d}= is not in versions.yaml's systemd directives"
            assert DIRECTIVES[d]["since"] <= systemd, f"{path}: {d}= needs systemd {DIRECTIVES[d]['since']}"


def test_the_kept_dir_is_one_name(tmp_path: Path) -> None:
    graph = load_graph()
    assert graph.component("etcd-backup").leaves.data == (fetch.KEPT_DIR,)
    assert f"top={fetch.KEPT_DIR}\n" in _files(_with_backup(tmp_path, _seed_tags()))[SCRIPTS[0]]


# -- the keep script and the fetch script on the floor --------------------------------------------

# A clock a day further at each call: three runs in one second get three names.
FAKE_DATE = """#!/bin/sh
n=$(cat "$CLOCK" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$CLOCK"
echo "2026120${n}T030000Z"
"""


def _floor(tmp: Path, shell: str, keep_sh: str, take_sh: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert BUSYBOX is not None
    bindir = tmp / "bin"
    if not bindir.exists():
        busybox_bin(bindir, {"docker": FAKE_DOCKER, "fakedate": FAKE_DATE})
        (tmp / "data").mkdir()
    (tmp / "take.sh").write_text(take_sh.replace("h=/var/lib/kubernetes/etcd", f"h={tmp / 'data'}"))
    script = keep_sh.replace(f"top={fetch.KEPT_DIR}", f"top={tmp / 'kept'}").replace(
        "/bin/sh /var/lib/piprov/etcd-backup-take.sh", f"sh {tmp / 'take.sh'}").replace(
        "t=$(date -u ", "t=$(fakedate -u ")  # busybox sh runs its own date applet, whatever PATH says
    assert "t=$(fakedate -u " in script and f"sh {tmp / 'take.sh'}" in script
    argv = [BUSYBOX, "sh"] if shell == "busybox" else [str(shutil.which("dash"))]
    full = {"PATH": str(bindir), "DATA": str(tmp / "data"), "CLOCK": str(tmp / "clock"), "LC_ALL": "C",
            "FAIL": "", "NOOP": "", **env}
    return subprocess.run([*argv, "-c", script], capture_output=True, text=True, env=full, timeout=60)


@pytest.mark.skipif(BUSYBOX is None, reason="needs busybox")
@pytest.mark.parametrize("shell", SHELLS)
def test_the_timer_keeps_the_newest_whole_backups_and_fetch_reads_the_newest(tmp_path: Path, shell: str) -> None:
    inv = _with_backup(tmp_path / "inv", next(t for p, t in _sets(load_matrix()) if p == "last-hyperkube"))
    files = _files(inv)
    keep_sh, take_sh = files[SCRIPTS[0]], files[SCRIPTS[1]]
    node = tmp_path / "node"
    for _ in range(3):
        proc = _floor(node, shell, keep_sh, take_sh)
        assert proc.returncode == 0, proc.stderr
    kept = node / "kept"
    assert sorted(p.name for p in kept.iterdir()) == ["20261202T030000Z", "20261203T030000Z"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o700 and list((node / "data").iterdir()) == []
    # A failed etcdctl, or a no-op one, leaves no partial dir and the kept ones as they were.
    for env in ({"FAIL": "1"}, {"NOOP": "1"}):
        bad = _floor(node, shell, keep_sh, take_sh, **env)
        assert bad.returncode == 1 and "the backup failed" in bad.stderr
        assert sorted(p.name for p in kept.iterdir()) == ["20261202T030000Z", "20261203T030000Z"]
    # The fetch script: the newest dir's name, then its framed output, read as `piprov backup` reads it.
    argv = [BUSYBOX, "sh"] if shell == "busybox" else [str(shutil.which("dash"))]
    env = {"PATH": str(node / "bin"), "LC_ALL": "C"}
    got = subprocess.run([*argv, "-c", fetch.fetch_script(str(kept))], capture_output=True, text=True, env=env)
    assert got.returncode == 0, got.stderr
    when, framed = fetch.split_output("m", got.stdout)
    assert when.strftime("%Y%m%dT%H%M%SZ") == "20261203T030000Z"
    plan = run.plan_backup(inv, load_graph(), load_matrix())
    back = archive.payload_files("m", command.parse_output("m", framed).payload, plan.stores)
    assert back["etcd/v3.db"] == b"bolt"
    none = subprocess.run([*argv, "-c", fetch.fetch_script(str(tmp_path / "empty"))], capture_output=True,
                          text=True, env=env)
    assert none.returncode == fetch.NO_BACKUP and "no backup kept" in none.stderr


@pytest.mark.skipif(BUSYBOX is None, reason="needs busybox")
@pytest.mark.parametrize("shell", SHELLS)
def test_the_keep_script_refuses_output_without_its_end_marker(tmp_path: Path, shell: str) -> None:
    inv = _with_backup(tmp_path / "inv", _seed_tags())
    keep_sh = _files(inv)[SCRIPTS[0]]
    cut = f"echo '{MARK} version etcd Version: 2.1.1'\necho '{MARK} payload'\necho AAAA\n"
    proc = _floor(tmp_path / "node", shell, keep_sh, cut)
    assert proc.returncode == 1 and "cut short" in proc.stderr
    assert list((tmp_path / "node" / "kept").iterdir()) == []


# -- fetch on the controller ----------------------------------------------------------------------


class _Fake:
    round_trips = 0

    def __init__(self, host: str, stdout: str, code: int = 0, stderr: str = "") -> None:
        self.host, self.stdout, self.code, self.stderr = host, stdout, code, stderr
        self.commands: list[str] = []

    def run(self, cmd: str, *, sudo: bool = False, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        assert sudo and stdin is None
        self.commands.append(cmd)
        self.round_trips += 1
        return CommandResult(self.host, cmd, self.code, self.stdout, self.stderr, 0.1)

    def close(self) -> None:
        pass


GOOD = _framed(_payload({WAL: b"wal", "etcd/v2/member/snap/0000000000000002-0000000000000010.snap": b"s"}))


def _fetch(tmp: Path, stdout: str, code: int = 0, stderr: str = "") -> tuple[run.BackupResult, _Fake]:
    inv = _with_backup(tmp, _seed_tags())
    fake = _Fake(inv.master.name, stdout, code, stderr)
    return fetch.fetch_backup(inv, fleet=run.Fleet(inv, {inv.master.name: fake})), fake


def test_fetch_is_one_round_trip_written_0600_and_verifies(tmp_path: Path) -> None:
    res, fake = _fetch(tmp_path, f"{fetch.HEAD} 20261202T030000Z\n" + GOOD)
    assert fake.commands == [fetch.fetch_script()] and res.round_trips == 1
    assert res.path.name.endswith("-20261202T030000Z.tar.gz")
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o600
    m = archive.verify_backup(res.path.read_bytes())
    assert m.data["created"] == "2026-12-02T03:00:00Z" and m.data["etcd"]["version"] == "2.1.1"


@pytest.mark.parametrize("stdout, words", [
    ("", "unexpected output from the fetch script"),
    ("garbage\n" + GOOD, "unexpected output from the fetch script"),
    (f"{fetch.HEAD} ../../etc\n" + GOOD, "unexpected output from the fetch script"),
    (f"{fetch.HEAD} 20261202T030000Z\n" + GOOD.rsplit(f"{MARK} end", 1)[0], "cut short"),
    (f"{fetch.HEAD} 20261202T030000Z\n" + GOOD.replace(GOOD.splitlines()[3][:8], "AAAAAAAA", 1),
     "checksum does not match"),
    (f"{fetch.HEAD} 20261202T030000Z\n" + _framed(_payload({"etc/passwd": b"x"})), "outside etcd/"),
])
def test_fetch_refuses_garbage_a_half_written_or_tampered_backup(tmp_path: Path, stdout: str, words: str) -> None:
    with pytest.raises(BackupError) as e:
        _fetch(tmp_path, stdout)
    assert words in e.value.message and e.value.host
    assert not (tmp_path / "inventory.yaml.backups").exists()


def test_fetch_says_when_the_master_keeps_none(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="keeps no backup") as e:
        _fetch(tmp_path, "", fetch.NO_BACKUP, "no backup kept in /var/lib/piprov/backups")
    assert e.value.hint and "backup:" in e.value.hint


# -- the prune when `backup:` goes ----------------------------------------------------------------


def test_removing_backup_prunes_the_timer_s_units_and_files_with_the_reason(tmp_path: Path) -> None:
    graph, tags = load_graph(), _seed_tags()
    with_b = desired_state(_with_backup(tmp_path / "a", tags), graph, "rpi-master", "armv7l")
    record = record_file(with_b)
    facts = FileFacts(path=record.path, exists=True, mode=0o644, owner="root", group="root",
                      content=record.content, sha256=record.sha256)
    (tmp_path / "b").mkdir()
    without = desired_state(_inventory(tmp_path / "b", tags), graph, "rpi-master", "armv7l")
    change = plan_owned(without, facts)
    assert change is not None
    removed = {(r.kind, r.name) for r in change.removals}
    assert removed == {("unit", "k8s-etcd-backup.timer"), *(("file", p) for p in (*UNITS, *SCRIPTS))}
    assert {r.reason for r in change.removals} == {"switched off: the inventory sets no backup:"}
    assert plan_owned(with_b, facts) is None


def test_a_component_s_when_is_an_inventory_switch(tmp_path: Path) -> None:
    from piprov.errors import GraphError

    (tmp_path / "templates").mkdir()
    pb = tmp_path / "playbooks"
    pb.mkdir()
    (pb / "a.yaml").write_text("components:\n  - name: a\n    roles: [master]\n    when: sometimes\n"
                               "    health: [{probe: unit, target: x.service}]\n")
    with pytest.raises(GraphError, match="when: 'sometimes' is not an inventory switch") as e:
        load_graph(pb)
    assert e.value.location is not None and e.value.location.line == 4
    graph = load_graph()
    assert graph.component("etcd-backup").when == "backup"
    assert "etcd-backup" not in [c.name for c in graph.for_role("master")]
    assert graph.switched_off == {"etcd-backup": "the inventory sets no backup:"}
    inv = _with_backup(tmp_path / "inv", _seed_tags())
    on = graph.for_inventory(inv)
    assert "etcd-backup" in [c.name for c in on.for_role("master")] and on.switched_off == {}
    assert "etcd-backup" not in [c.name for c in on.for_role("worker")]
