"""The apply scripts, run for real by the local sh (no SSH, no root needed)."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import subprocess
import time
from pathlib import Path

from piprov.plan.actions import WriteFile
from piprov.shell.script import EXIT_SCRIPT_GARBLED, TEMP_PREFIX, remove_stale_temps, run_script, wrap, write_file
from piprov.transport import CommandResult


class LocalTransport:
    """Runs commands with the local sh, as the SSH transport would on a node."""

    host = "local"

    def __init__(self, truncate_stdin_at: int | None = None) -> None:
        self.round_trips = 0
        self.truncate = truncate_stdin_at

    def run(self, command: str, *, sudo: bool = False, stdin: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        self.round_trips += 1
        data = stdin or b""
        if self.truncate is not None:
            data = data[: self.truncate]
        t0 = time.monotonic()
        p = subprocess.run(["sh", "-c", command], input=data, capture_output=True, timeout=timeout)
        return CommandResult("local", command, p.returncode, p.stdout.decode(), p.stderr.decode(),
                             time.monotonic() - t0)

    def close(self) -> None:
        pass


def me() -> tuple[str, str]:
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def test_write_file_is_exact_and_sets_mode(tmp_path: Path) -> None:
    user, group = me()
    target = tmp_path / "etc" / "kubernetes" / "k8s.conf"
    content = b"K8S_MASTER_IP=10.1.2.3\n" + bytes(range(256))  # binary-safe too
    out = run_script(LocalTransport(), wrap(write_file(WriteFile(str(target), content, 0o640, user, group))))
    assert out.ok, out.detail
    assert target.read_bytes() == content
    assert (target.stat().st_mode & 0o7777) == 0o640
    assert not list(target.parent.glob(TEMP_PREFIX + "*"))


def test_write_file_replaces_atomically(tmp_path: Path) -> None:
    user, group = me()
    target = tmp_path / "unit.service"
    target.write_text("old\n")
    inode_before = target.stat().st_ino
    out = run_script(LocalTransport(), wrap(write_file(WriteFile(str(target), b"new\n", 0o644, user, group))))
    assert out.ok and target.read_text() == "new\n"
    assert target.stat().st_ino != inode_before  # renamed into place, not rewritten


def test_failure_names_the_step_and_keeps_the_old_file(tmp_path: Path) -> None:
    user, group = me()
    target = tmp_path / "f"
    target.write_text("old\n")
    bad = WriteFile(str(target), b"new\n", 0o644, "no-such-user-piprov", group)
    out = run_script(LocalTransport(), wrap(write_file(bad)))
    assert not out.ok
    assert out.failed_step == f"write {target}"
    assert target.read_text() == "old\n"
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))


def test_truncated_script_is_never_run(tmp_path: Path) -> None:
    user, group = me()
    target = tmp_path / "f"
    script = wrap(write_file(WriteFile(str(target), b"x" * 5000, 0o644, user, group)))
    for cut in (10, len(script) // 2, len(script) - 1):
        out = run_script(LocalTransport(truncate_stdin_at=cut), script)
        assert out.result.exit_code == EXIT_SCRIPT_GARBLED
        assert not target.exists()


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / (TEMP_PREFIX + "abc123")).write_text("half")
    (tmp_path / "keep.txt").write_text("mine")
    out = run_script(LocalTransport(), wrap(remove_stale_temps([str(tmp_path)])))
    assert out.ok
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_one_round_trip_per_script(tmp_path: Path) -> None:
    user, group = me()
    t = LocalTransport()
    body = "".join(write_file(WriteFile(str(tmp_path / f"f{i}"), b"%d" % i, 0o644, user, group)) for i in range(8))
    assert run_script(t, wrap(body)).ok
    assert t.round_trips == 1
    assert hashlib.sha256((tmp_path / "f7").read_bytes()).hexdigest() == hashlib.sha256(b"7").hexdigest()


def test_actions_render_in_order_in_one_script(tmp_path: Path) -> None:
    from piprov.plan.actions import DisableUnits, RemoveFile, RemoveStaleTemps, WriteFile
    from piprov.shell.script import run_actions

    user, group = me()
    (tmp_path / (TEMP_PREFIX + "old")).write_text("half")
    gone = tmp_path / "gone"
    gone.write_text("x")
    t = LocalTransport()
    out = run_actions(t, [RemoveStaleTemps((str(tmp_path),)),
                          WriteFile(str(tmp_path / "a"), b"a\n", 0o600, user, group),
                          RemoveFile(str(gone)),
                          DisableUnits(("piprov-no-such-unit.service",))])
    assert out.ok, out.detail
    assert t.round_trips == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert (tmp_path / "a").stat().st_mode & 0o7777 == 0o600
    # A unit that does not exist is not an error: nothing to stop.
    assert out.result.stdout.strip() == "stopped:"
