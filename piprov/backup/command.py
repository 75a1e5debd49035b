"""The one backup script run on the master, and its framed output read back (pure).

Per etcd line (``versions.etcd.backup_stores``, playbooks/versions.yaml):

* ``v2``: ``etcdctl backup --data-dir --backup-dir``, the v2 store's snap and
  WAL files copied with new node and cluster IDs. It reads the WAL without
  locks and stops at a half-written last record, so it runs on a live etcd;
  3.x's etcdctl needs ``ETCDCTL_API=2`` (``versions.etcd.etcdctl_api_env``) and
  drops the v3 raft entries from the copy (no ``--with-v3``: it waits on the
  running etcd's bolt flock forever, and 3.5 calls it offline).
* ``v3``: ``ETCDCTL_API=3 etcdctl snapshot save``, a consistent copy of the v3
  store over the client API (TLS, a client certificate).

The script runs etcd's own etcdctl in etcd's container (the release that wrote
the data), into a temp dir under the data dir (the one directory the container
and the node share), removed on every way out (trap on EXIT, HUP, INT, TERM).
Its stdout is framed: ``PIPROV-BACKUP version|sha256|payload|end`` and the
payload (a tar.gz of ``etcd/``) in base64 between; anything else is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
from dataclasses import dataclass

from piprov.errors import BackupError
from piprov.graph.model import EtcdBackup
from piprov.graph.versions import VersionLine

MARK = "PIPROV-BACKUP"
# The temp dir as the container sees it: a shell variable of the script.
DIR_VAR = '"$c"'
DIR_WORD = "<backup-dir>"
V2_DIR = "etcd/v2"
V3_FILE = "etcd/v3.db"
_VERSION_RE = re.compile(r"[Vv]ersion:?\s*v?(\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class BackupPlan:
    """What the master runs: the etcd line, the stores, each etcdctl command and the whole script."""

    host: str
    line: str
    stores: tuple[str, ...]
    commands: tuple[str, ...]
    script: str

    @property
    def commands_text(self) -> tuple[str, ...]:
        """The commands as the manifest records them (the temp dir named ``<backup-dir>``)."""
        return tuple(c.replace(DIR_VAR, DIR_WORD) for c in self.commands)


def etcdctl_commands(b: EtcdBackup, line: VersionLine) -> tuple[str, ...]:
    """The etcdctl commands of ``line`` (``b``'s jinja already rendered), one per store."""
    stores = tuple(str(s) for s in line.features["backup_stores"])
    out = []
    if "v2" in stores:
        api = "env ETCDCTL_API=2 " if line.features["etcdctl_api_env"] else ""
        out.append(f"{b.exec} {api}etcdctl backup --data-dir={b.data_dir} --backup-dir={DIR_VAR}/{V2_DIR}")
    if "v3" in stores:
        out.append(f"{b.exec} env ETCDCTL_API=3 etcdctl {b.v3_client} snapshot save {DIR_VAR}/{V3_FILE}")
    unknown = [s for s in stores if s not in ("v2", "v3")]
    if unknown or not out:
        raise BackupError(f"etcd {line.name}: no backup command for stores {list(stores)}",
                          hint="playbooks/versions.yaml: backup_stores holds v2 and/or v3")
    return tuple(out)


_STEP = {
    "v2": ("backup", f'ls "$d/{V2_DIR}/member/wal" 2>/dev/null | grep -q "\\.wal$" || fail "etcdctl backup wrote no WAL into {V2_DIR}"'),
    "v3": ("snapshot save", f'[ -s "$d/{V3_FILE}" ] || fail "etcdctl snapshot save wrote no {V3_FILE}"'),
}


def backup_plan(host: str, b: EtcdBackup, line: VersionLine) -> BackupPlan:
    """The script backing up etcd on ``host`` (``b`` rendered for the inventory; ``line`` its etcd line)."""
    commands = etcdctl_commands(b, line)
    stores = tuple(str(s) for s in line.features["backup_stores"])
    steps = []
    for store, cmd in zip(stores, commands):
        name, check = _STEP[store]
        steps += [f'{cmd} >"$d/log" 2>&1 || fail {shlex.quote(f"etcdctl {name} failed")}', check]
    script = "\n".join([
        "umask 077",
        f"h={shlex.quote(b.host_data_dir)}",
        'd=$(mktemp -d "$h/piprov-backup.XXXXXX") || { echo "cannot make a temp dir in $h" >&2; exit 1; }',
        "trap 'rm -rf \"$d\"' EXIT",
        "trap 'exit 129' HUP",
        "trap 'exit 130' INT",
        "trap 'exit 143' TERM",
        f'c={shlex.quote(b.data_dir)}/"${{d##*/}}"',
        'fail() { echo "$1" >&2; tail -n 5 "$d/log" >&2 2>/dev/null; exit 1; }',
        f'v=$({b.exec} {b.version} 2>&1 | head -n 1)',
        'mkdir "$d/etcd" || fail "cannot make $d/etcd"',
        *steps,
        'tar -cf "$d/payload.tar" -C "$d" etcd && gzip "$d/payload.tar" || fail "cannot pack the backup"',
        f'printf "%s version %s\\n" {MARK} "$v"',
        f'printf "%s sha256 %s\\n" {MARK} "$(sha256sum < "$d/payload.tar.gz" | cut -c1-64)"',
        f"echo {MARK} payload",
        'base64 < "$d/payload.tar.gz" || fail "cannot send the backup"',
        f"echo {MARK} end",
    ]) + "\n"
    return BackupPlan(host, line.name, stores, commands, script)


@dataclass(frozen=True)
class NodeBackup:
    """What the master sent back: etcd's version word and the payload (tar.gz of ``etcd/``)."""

    version: str
    payload: bytes
    sha256: str


def parse_output(host: str, stdout: str) -> NodeBackup:
    """The framed output of the backup script, or BackupError naming ``host``: nothing else is taken."""
    lines = stdout.splitlines()
    fields: dict[str, str] = {}
    body: list[str] | None = None
    ended = False
    for line in lines:
        if body is not None and not line.startswith(MARK + " "):
            body.append(line)
            continue
        word, _, rest = line.partition(" ")[2].partition(" ")
        if not line.startswith(MARK + " "):
            raise BackupError(f"unexpected output from the backup script: {line[:80]!r}", host=host)
        if word == "payload":
            body = []
        elif word == "end" and body is not None:
            ended = True
            break
        elif word in ("version", "sha256") and body is None:
            fields[word] = rest.strip()
        else:
            raise BackupError(f"unexpected output from the backup script: {line[:80]!r}", host=host)
    if not ended or body is None or "sha256" not in fields:
        raise BackupError("the backup script's output is cut short (no end marker)", host=host,
                          hint="the connection may have dropped; run `piprov backup` again")
    try:
        payload = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise BackupError("the backup's payload is not base64", host=host) from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != fields["sha256"]:
        raise BackupError(f"the backup's checksum does not match (node {fields['sha256'][:16]}..., "
                          f"received {digest[:16]}...)", host=host, hint="run `piprov backup` again")
    m = _VERSION_RE.search(fields.get("version", ""))
    if m is None:
        raise BackupError(f"cannot tell etcd's version from {fields.get('version', '')[:80]!r}", host=host,
                          hint="is k8s-etcd running on the master? `piprov status` shows it")
    return NodeBackup(m.group(1), payload, digest)
