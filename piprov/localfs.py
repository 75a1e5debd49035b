"""Files on the controller: the one atomic write.

The inventory, its state files, keys, known_hosts and kubeconfigs are written
the way an editor that cares would: a temp file in the target's own directory
(same filesystem, so the rename is atomic), its mode set before a byte of
content lands (a private key is never world-readable, not even for a moment),
flushed to disk, renamed over the target, and the directory synced so the
rename survives a power cut. A reader sees the old file or the new one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from piprov.errors import PiprovError


class LocalWriteError(PiprovError):
    """A file on the controller could not be written."""


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``mode`` None keeps the mode (and, as root, the owner) of the file being
    replaced; a new file then gets 0644 less the umask's wishes, as
    ``open()`` would. Raises :class:`LocalWriteError` naming the file.
    """
    owner: tuple[int, int] | None = None
    try:
        st = os.stat(path)
        if mode is None:
            mode = stat.S_IMODE(st.st_mode)
            owner = (st.st_uid, st.st_gid)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise LocalWriteError(f"cannot write {path}: {e.strerror or e}") from None
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if owner is not None and os.geteuid() == 0:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
        tmp = None
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        raise LocalWriteError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
