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


# -- restore: the one script putting a backup's v2 store back under etcd's data dir ----------------------

RESTORE_MARK = "PIPROV-RESTORE"
# The one-shot etcd that commits --force-new-cluster on the backup: a name of its own on the
# bootstrap daemon, a client port on the loopback only that nothing of the stack uses (the 1.1
# apiserver talks to 127.0.0.1:<etcd_port>: it must not write into the store being restored), and
# the peer URL the member has in the store (templates/k8s-etcd.service.j2: --name=etcd, peer
# http://127.0.0.1:7001), so the member keeps its peer URL.
ONE_SHOT = "piprov-etcd-restore"
ONE_SHOT_CLIENT = "http://127.0.0.1:2379"
ONE_SHOT_PEER = "http://127.0.0.1:7001"
ONE_SHOT_NAME = "etcd"
# A Pi's card replays the WAL in seconds; an image pull over the LAN is not in this wait.
RESTORE_WAIT = 120


@dataclass(frozen=True)
class RestoreTarget:
    """Where the master's etcd lives and how etcd runs beside it (the playbook's ``backup``, rendered)."""

    docker: str  # the docker command of etcd's daemon: "docker -H unix:///var/run/docker-bootstrap.sock"
    container: str  # the unit's container: k8s-etcd
    units: tuple[str, ...]  # the etcd component's units: stopped first
    etcd: str  # etcd's program in its image: /usr/local/bin/etcd
    data_dir: str  # etcd's --data-dir in its container
    host_data_dir: str  # the same on the node
    image: str  # the etcd image of the inventory, for the master's arch


def restore_target(b: EtcdBackup, units: tuple[str, ...], image: str) -> RestoreTarget:
    """``b`` (rendered) read as a restore needs it: ``exec`` is ``<docker> exec <container>``, ``version``
    is ``<etcd> --version``; anything else is refused (the playbook's ``backup`` is its data)."""
    docker, sep, container = b.exec.rpartition(" exec ")
    program = b.version.split()
    if not sep or not docker.split()[:1] == ["docker"] or len(container.split()) != 1 or not program:
        raise BackupError(f"the etcd component's backup.exec {b.exec!r} is not `docker ... exec CONTAINER`",
                          hint="playbooks/seed-stack.yaml: the etcd component's backup section")
    return RestoreTarget(docker, container, units, program[0], b.data_dir, b.host_data_dir, image)


def _one_shot(t: RestoreTarget) -> str:
    """etcd 2.x on the backup's data dir with --force-new-cluster, on the loopback only (2.x flags:
    etcd-io/etcd v2.1.1 etcdmain/config.go:145-166 and :203, playbooks/versions.yaml)."""
    flags = [f"--name={ONE_SHOT_NAME}", f"--data-dir={t.data_dir}", "--force-new-cluster",
             f"--listen-client-urls={ONE_SHOT_CLIENT}", f"--advertise-client-urls={ONE_SHOT_CLIENT}",
             f"--listen-peer-urls={ONE_SHOT_PEER}", f"--initial-advertise-peer-urls={ONE_SHOT_PEER}",
             f"--initial-cluster={ONE_SHOT_NAME}={ONE_SHOT_PEER}"]
    return (f'{t.docker} run -d --name {ONE_SHOT} --net=host -v "$t/etcd/v2":{shlex.quote(t.data_dir)} '
            f"{shlex.quote(t.image)} {shlex.quote(t.etcd)} {' '.join(flags)}")


def _healthy_wait(t: RestoreTarget, wait: int) -> str:
    """A bounded wait (coreutils/busybox timeout) for the one-shot's ``cluster-health``: etcdctl 2.1.1
    syncs to the members' published client URLs, so it answers only once the restarted member has
    a leader, published itself and moves its raft index (v2.1.1 etcdctl/command/cluster_health.go:27-91;
    3.4's v2 etcdctl asks each member's /health, v3.4.23 etcdctl/ctlv2/command/cluster_health.go:65-122)."""
    probe = (f"{t.docker} exec {ONE_SHOT} etcdctl --no-sync --peers={ONE_SHOT_CLIENT} cluster-health 2>/dev/null "
             "| grep -q '^cluster is healthy'")
    loop = f"until {probe}; do sleep 0.2; done"
    return (f"if ! timeout {wait} sh -c {shlex.quote(loop)}; then "
            f'{t.docker} logs --tail 5 {ONE_SHOT} >"$t/log" 2>&1; '
            f'fail "etcd started on the backup with --force-new-cluster was not healthy within {wait} s"; fi')


def restore_script(t: RestoreTarget, backup: bytes, *, wait: int = RESTORE_WAIT) -> str:
    """The master's restore, in ONE script (root): the backup file (already verified on the controller)
    unpacked into a temp dir beside etcd's data dir, etcd's units stopped, a one-shot etcd with
    --force-new-cluster on it until healthy (etcd-io/etcd v2.1.1 Documentation/admin_guide.md:158-182
    "Restoring a backup"), stopped; then the old data dir moved aside (never deleted) and the restored
    one renamed into place. The temp dir and the one-shot go on every way out."""
    h = shlex.quote(t.host_data_dir)
    digest = hashlib.sha256(backup).hexdigest()
    b64 = base64.encodebytes(backup).decode()
    q = shlex.quote
    return "\n".join([
        "umask 077",
        f"h={h}",
        'p=${h%/*}',
        'mkdir -p "$p" || { echo "cannot make $p" >&2; exit 1; }',
        't=$(mktemp -d "$p/.piprov-restore.XXXXXX") || { echo "cannot make a temp dir in $p" >&2; exit 1; }',
        f"trap '{t.docker} rm -f {ONE_SHOT} >/dev/null 2>&1; rm -rf \"$t\"' EXIT",
        "trap 'exit 129' HUP",
        "trap 'exit 130' INT",
        "trap 'exit 143' TERM",
        'fail() { echo "$1" >&2; tail -n 5 "$t/log" >&2 2>/dev/null; exit 1; }',
        f"base64 -d > \"$t/backup.tar.gz\" <<'{RESTORE_MARK}-EOF' || fail 'the backup is not base64'",
        b64 + f"{RESTORE_MARK}-EOF",
        f'[ "$(sha256sum < "$t/backup.tar.gz" | cut -c1-64)" = {digest} ] || fail "the backup arrived damaged"',
        f'tar -xzf "$t/backup.tar.gz" -C "$t" {V2_DIR} >"$t/log" 2>&1 || fail "cannot unpack {V2_DIR}"',
        f'ls "$t/{V2_DIR}/member/wal" 2>/dev/null | grep -q "\\.wal$" || fail "the backup holds no WAL in {V2_DIR}"',
        f'chmod 700 "$t/{V2_DIR}"',
        f"echo {RESTORE_MARK} unpacked",
        *(f"systemctl stop {q(u)} >/dev/null 2>&1" for u in t.units),
        f"{t.docker} rm -f {q(t.container)} {ONE_SHOT} >/dev/null 2>&1",
        f'{t.docker} version >"$t/log" 2>&1 || fail "etcd\'s docker daemon does not answer"',
        f"echo {RESTORE_MARK} stopped {' '.join(t.units)}",
        f'{t.docker} inspect --type=image {q(t.image)} >/dev/null 2>&1 || {t.docker} pull {q(t.image)} >"$t/log" 2>&1 '
        f'|| fail {q("cannot pull " + t.image)}',
        f'{_one_shot(t)} >"$t/log" 2>&1 || fail "cannot start etcd on the backup"',
        _healthy_wait(t, wait),
        f'{t.docker} stop {ONE_SHOT} >"$t/log" 2>&1 || fail "cannot stop the one-shot etcd"',
        f"echo {RESTORE_MARK} force-new-cluster",
        'if [ -e "$h" ]; then o="$h.before-restore.$(date -u +%Y%m%dT%H%M%SZ)"; '
        'mv "$h" "$o" || fail "cannot move $h aside"; echo "' + RESTORE_MARK + ' moved-aside $o"; fi',
        f'mv "$t/{V2_DIR}" "$h" || fail "cannot rename the restored data dir to $h (the old one: ${{o:-none}})"',
        f'echo "{RESTORE_MARK} restored $h"',
    ]) + "\n"


def parse_restore(host: str, stdout: str) -> dict[str, str]:
    """The restore script's steps (step -> its words); BackupError when it did not reach ``restored``."""
    steps = {}
    for line in stdout.splitlines():
        if line.startswith(RESTORE_MARK + " "):
            word, _, rest = line[len(RESTORE_MARK) + 1:].partition(" ")
            steps[word] = rest
    if "restored" not in steps:
        raise BackupError("the restore script ended before the data dir was in place", host=host)
    return steps
