"""The run lock: one holder at a time, named in the refusal, never stale after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from piprov.errors import LockError
from piprov.lock import FileLock

HOLD = """
import sys, time
from pathlib import Path
from piprov.lock import FileLock
lock = FileLock(Path(sys.argv[1]), what="piprov up")
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_second_holder_is_refused_with_the_holders_name(tmp_path: Path) -> None:
    path = tmp_path / "cluster.lock"
    p = _holder(path)
    try:
        with pytest.raises(LockError) as e:
            FileLock(path, what="piprov up").acquire()
        assert f"pid {p.pid}" in str(e.value) and "already running" in str(e.value)
    finally:
        p.kill()
        p.wait()


def test_lock_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "cluster.lock"
    p = _holder(path)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert path.read_text()  # the dead holder's record is still there
    with FileLock(path, what="piprov up"):
        assert f'"pid": {os.getpid()}' in path.read_text()
    assert path.read_text() == ""


def test_reentrant_use_in_sequence(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    for _ in range(3):
        with FileLock(path, what="edit"):
            pass
