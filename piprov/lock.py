"""An exclusive lock on a file, naming its holder.

flock(2) is released by the kernel when the holder dies, even on kill -9, so
a lock can never be left behind by a crashed run: a stale lock *file* is just
a file whose lock nobody holds, and taking it is safe. The holder writes who
it is (pid, host, command, start time) so the refusal can name it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from piprov.errors import LockError


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    command: str
    since: float

    def describe(self) -> str:
        age = time.time() - self.since
        return f"pid {self.pid} on {self.host} ({self.command}), running for {age:.0f} s"


class FileLock:
    """``with FileLock(path, what="piprov up"):`` — refuse at once if held.

    ``wait`` > 0 waits up to that many seconds (for short critical sections such
    as inventory edits); 0 refuses immediately (for long runs such as `up`).
    """

    def __init__(self, path: Path, *, what: str, wait: float = 0.0) -> None:
        self.path = path
        self.what = what
        self.wait = wait
        self._fd: int | None = None

    def _holder(self) -> Holder | None:
        try:
            data = json.loads(self.path.read_text() or "{}")
            return Holder(int(data["pid"]), str(data["host"]), str(data["command"]), float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise LockError(f"cannot lock {self.path}: {e.strerror}") from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = self._holder()
                    who = holder.describe() if holder else "another process"
                    raise LockError(
                        f"{self.what} is already running: {who}",
                        hint=f"wait for it to finish; the lock is {self.path}",
                    ) from None
                time.sleep(0.05)
        # The previous holder's record may still be there (it was killed):
        # overwrite it, we hold the lock now.
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:200],
            "since": time.time(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
