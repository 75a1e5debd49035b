"""The backup file: a tar.gz of ``manifest.json`` and ``etcd/`` (pure: bytes in, bytes out).

``etcd/v2/`` is what ``etcdctl backup`` wrote (a data dir: ``member/snap``,
``member/wal``; etcd starts on it with ``--force-new-cluster``), ``etcd/v3.db``
what ``etcdctl snapshot save`` wrote (``etcdctl snapshot restore`` reads it),
where the etcd line has a v3 store. The manifest names the cluster, the
master, the time, etcd's version and line, the stores, the commands run, each
file's sha256 and size, and ``checksum``: the sha256 of those files' lines in
``sha256sum`` format, sorted by path (``sha256sum -c`` reads the same lines).
:func:`verify_backup` recomputes every one of them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from piprov.backup.command import V2_DIR, V3_FILE, BackupPlan, NodeBackup
from piprov.errors import BackupError

FORMAT = "piprov-etcd-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# What a later restore starts from, per store (etcd's v2 admin guide, "Restoring a backup";
# etcdctl's snapshot restore): said in the manifest so the file explains itself.
RESTORE = {
    "v2": f"etcd --data-dir=<{V2_DIR} extracted> --force-new-cluster",
    "v3": f"ETCDCTL_API=3 etcdctl snapshot restore {V3_FILE}",
}


@dataclass(frozen=True)
class Manifest:
    """A backup's manifest.json, as written and as read back."""

    data: Mapping[str, Any]

    @property
    def checksum(self) -> str:
        return str(self.data["checksum"])

    @property
    def files(self) -> Mapping[str, Mapping[str, Any]]:
        files = self.data.get("files")
        return files if isinstance(files, dict) else {}


def sums_text(files: Mapping[str, Mapping[str, Any]]) -> str:
    """The files' ``sha256sum`` lines, sorted by path."""
    return "".join(f"{files[p]['sha256']}  {p}\n" for p in sorted(files))


def checksum_of(files: Mapping[str, Mapping[str, Any]]) -> str:
    return "sha256:" + hashlib.sha256(sums_text(files).encode()).hexdigest()


def payload_files(host: str, payload: bytes, stores: tuple[str, ...]) -> dict[str, bytes]:
    """The regular files of the node's tar.gz (path -> bytes), or BackupError: only ``etcd/``, no links,
    no device, no ``..``; the v2 WAL and the v3 snapshot there when the line has them."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
            for m in tar:
                name = posixpath.normpath(m.name)
                if name.startswith(("/", "..")) or not (name == "etcd" or name.startswith("etcd/")):
                    raise BackupError(f"the backup holds {m.name!r}, outside etcd/", host=host)
                if m.isdir():
                    continue
                if not m.isfile():
                    raise BackupError(f"the backup holds {m.name!r}, not a regular file", host=host)
                f = tar.extractfile(m)
                assert f is not None
                out[name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BackupError(f"the backup from the master is not a tar.gz: {e}", host=host) from None
    if "v2" in stores and not any(p.startswith(f"{V2_DIR}/member/wal/") and p.endswith(".wal") for p in out):
        raise BackupError(f"the backup holds no v2 WAL ({V2_DIR}/member/wal/*.wal)", host=host)
    if "v3" in stores and not out.get(V3_FILE):
        raise BackupError(f"the backup holds no v3 snapshot ({V3_FILE})", host=host)
    return out


def manifest_for(plan: BackupPlan, node: NodeBackup, files: Mapping[str, bytes], *, cluster: str,
                 address: str, created: datetime) -> Manifest:
    listed = {p: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in sorted(files.items())}
    return Manifest({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cluster": cluster,
        "master": {"name": plan.host, "address": address},
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "etcd": {"version": node.version, "line": plan.line, "stores": list(plan.stores)},
        "contents": {s: (V2_DIR + "/" if s == "v2" else V3_FILE) for s in plan.stores},
        "commands": list(plan.commands_text),
        "restore": {s: RESTORE[s] for s in plan.stores},
        "files": listed,
        "checksum": checksum_of(listed),
    })


def pack(manifest: Manifest, files: Mapping[str, bytes], created: datetime) -> bytes:
    """The backup file's bytes: manifest.json first, then the files (0600, dirs 0700, owned by root)."""
    buf = io.BytesIO()
    stamp = int(created.timestamp())
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=stamp) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        dirs = sorted({posixpath.dirname(p) for p in files} | {"etcd"})
        members = [(MANIFEST, (json.dumps(manifest.data, indent=2, sort_keys=True) + "\n").encode())]
        for d in _with_parents(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, stamp
            tar.addfile(info)
        for name, data in [*members, *sorted(files.items())]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, stamp
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _with_parents(dirs: list[str]) -> list[str]:
    out: set[str] = set()
    for d in dirs:
        while d and d not in out:
            out.add(d)
            d = posixpath.dirname(d)
    return sorted(out)


def verify_backup(data: bytes, where: str = "the backup") -> Manifest:
    """The manifest of a backup file whose files all match it, or BackupError saying what does not."""
    files: dict[str, bytes] = {}
    manifest: dict[str, Any] | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for info in tar:
                f = tar.extractfile(info) if info.isfile() else None
                if f is None:
                    continue
                if info.name == MANIFEST:
                    manifest = json.loads(f.read())
                else:
                    files[info.name] = f.read()
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise BackupError(f"{where} is not a piprov backup (tar.gz): {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{where} has no {MANIFEST} of format {FORMAT!r}")
    m = Manifest(manifest)
    problems = [p for p, meta in m.files.items()
                if p not in files or hashlib.sha256(files[p]).hexdigest() != meta.get("sha256")]
    problems += [p for p in files if p not in m.files]
    if problems:
        raise BackupError(f"{where}: {len(problems)} file(s) do not match the manifest: {', '.join(sorted(problems)[:5])}")
    if checksum_of(m.files) != m.checksum:
        raise BackupError(f"{where}: the manifest's checksum does not match its file list")
    return m
