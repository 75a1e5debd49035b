"""What a node is like now: one shell command, and a strict parser for its output.

:func:`facts_command` builds ONE POSIX sh script (run it with sudo) that needs
only coreutils, systemd, iproute2 and docker on the node, and prints framed
records::

    PIPROV-FACTS-BEGIN 1
    uname x86_64
    hostname rpi-node-1
    osrelease <base64 of /etc/os-release | ->
    file <path> present <sha256|-> <mode> <owner> <group> <size> <base64|!empty|!big>
    file <path> missing | file <path> notafile
    unit <name> <is-active> <is-enabled>
    etcdkey <key> ok <base64|!empty> | etcdkey <key> missing | etcdkey <key> unavailable
    addr <ifname> <address/len>
    bin <name> <absolute path | ->      (``command -v`` under sudo's PATH)
    PIPROV-FACTS-END <number of records>

The record count and every file's size let the parser tell a complete answer
from a truncated or mangled one. A file's checksum is only computed on the node
when its content does not come back (``!big``); otherwise the parser hashes the
content, which saves a process per file. :func:`parse_facts` turns
the output into :class:`NodeFacts` or raises :class:`FactsError` naming the
host and what was wrong. Nothing here decides anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

from piprov.errors import FactsError

BEGIN = "PIPROV-FACTS-BEGIN 1"
END = "PIPROV-FACTS-END"
# Content of files up to this size comes back (for diffs and in-place edits).
MAX_CONTENT = 64 * 1024
OCCIDENTALIS = "/boot/occidentalis.txt"
# Read on every node: hostname planning edits them.
HOST_FILES = (OCCIDENTALIS, "/etc/hostname", "/etc/hosts")

_PATH_RE = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9@_.:-]+$")
_KEY_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_WORD_RE = re.compile(r"^[A-Za-z0-9._@:+/-]+$")
_STATE_RE = re.compile(r"^[a-z][a-z-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")

EtcdKeyState = Literal["ok", "missing", "unavailable"]


@dataclass(frozen=True)
class FileFacts:
    path: str
    exists: bool
    sha256: str | None = None
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    size: int | None = None
    # None when missing or larger than MAX_CONTENT.
    content: bytes | None = None
    is_regular: bool = True

    @property
    def text(self) -> str | None:
        if self.content is None:
            return None
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError:
            return None


@dataclass(frozen=True)
class UnitFacts:
    name: str
    active: str  # active, inactive, failed, activating, deactivating, reloading, unknown
    enabled: str  # enabled, disabled, static, masked, not-found, ...

    @property
    def is_active(self) -> bool:
        return self.active in ("active", "reloading")

    @property
    def is_failed(self) -> bool:
        return self.active == "failed"

    @property
    def is_transient(self) -> bool:
        """Starting or stopping right now (also: waiting to auto-restart)."""
        return self.active in ("activating", "deactivating")

    @property
    def is_enabled(self) -> bool:
        # static units have no [Install]; systemd calls alias/linked ones enabled too.
        return self.enabled in ("enabled", "enabled-runtime", "static", "alias", "linked", "indirect")


@dataclass(frozen=True)
class EtcdKeyFacts:
    key: str
    state: EtcdKeyState
    value: str | None = None


@dataclass(frozen=True)
class Address:
    interface: str
    cidr: str  # 192.168.1.100/24

    @property
    def ip(self) -> str:
        return self.cidr.split("/", 1)[0]


@dataclass(frozen=True)
class NodeFacts:
    host: str
    machine: str  # uname -m
    hostname: str
    os_id: str
    os_version: str
    files: Mapping[str, FileFacts] = field(default_factory=dict)
    units: Mapping[str, UnitFacts] = field(default_factory=dict)
    etcd_keys: Mapping[str, EtcdKeyFacts] = field(default_factory=dict)
    addresses: tuple[Address, ...] = ()
    # Program name -> absolute path on the node, None when not installed.
    binaries: Mapping[str, str | None] = field(default_factory=dict)

    def file(self, path: str) -> FileFacts:
        """Facts of ``path``; a path the command did not ask about counts as missing."""
        return self.files.get(path) or FileFacts(path, exists=False)

    def unit(self, name: str) -> UnitFacts:
        return self.units.get(name) or UnitFacts(name, "unknown", "not-found")

    @property
    def occidentalis(self) -> str | None:
        """Content of /boot/occidentalis.txt (HypriotOS), None when absent."""
        f = self.file(OCCIDENTALIS)
        if not f.exists:
            return None
        return f.text if f.text is not None else ""

    @property
    def is_hypriot(self) -> bool:
        return self.file(OCCIDENTALIS).exists


# --------------------------------------------------------------------------
# The command

_PRELUDE = r"""export LC_ALL=C
n=0
r() { printf '%s\n' "$*"; n=$((n+1)); }
b64() { base64 -w 0; }
f() {
  if [ -f "$1" ] && [ -r "$1" ]; then
    st=$(stat -c '%a %U %G %s' "$1") || st=
    size=${st##* }
    if [ "$size" = 0 ]; then r "file $1 present - $st !empty"
    elif [ "$size" -le MAXCONTENT ] 2>/dev/null; then
      printf 'file %s present - %s ' "$1" "$st"; b64 < "$1"; printf '\n'; n=$((n+1))
    else sum=$(sha256sum < "$1") && sum=${sum%% *} || sum=; r "file $1 present $sum $st !big"; fi
  elif [ -e "$1" ]; then r "file $1 notafile"
  else r "file $1 missing"; fi
}
u() {
  while IFS='=' read -r key val; do
    case $key in
      ActiveState) active=$val ;;
      UnitFileState) file=$val ;;
      '') if [ $# -gt 0 ] && [ -n "$active" ]; then r "unit $1 $active ${file:-not-found}"; shift; fi
          active= file= ;;
    esac
  done <<PIPROV_UNITS
$(systemctl show -p ActiveState -p UnitFileState -- "$@" 2>/dev/null)

PIPROV_UNITS
  for unit in "$@"; do r "unit $unit unknown not-found"; done
}
"""

_ETCD_FN = r"""k() {
  if out=$(timeout 5 ETCDCTL get "$1" 2>&1); then
    if [ -n "$out" ]; then r "etcdkey $1 ok $(printf '%s' "$out" | b64)"; else r "etcdkey $1 ok !empty"; fi
  elif printf '%s' "$out" | grep -q 'Key not found'; then r "etcdkey $1 missing"
  else r "etcdkey $1 unavailable"; fi
}
"""

# etcd answers through `docker exec` (~150 ms on the lab, more on a Pi), so its
# keys are read in the background while the files and units are: a no-op run
# waits for the slower of the two, not their sum. The answers go through a
# temp file because lines of the file records would interleave with them.
_ETCD_START = r"""kq=$(mktemp 2>/dev/null) || kq=
if [ -n "$kq" ]; then
  trap 'rm -f "$kq"' EXIT
  trap 'rm -f "$kq"; exit 1' HUP INT TERM
  for key in KEYS; do k "$key"; done >"$kq" 2>/dev/null &
fi
"""

_ETCD_COLLECT = r"""if [ -n "$kq" ]; then
  wait
  while IFS= read -r line; do r "$line"; done <"$kq"
else
  for key in KEYS; do k "$key"; done
fi
"""

# Programs the units run, located on the node: docker-ce (HypriotOS) puts the
# daemon in /usr/bin, Debian's docker.io in /usr/sbin.
BINARIES = ("docker", "dockerd")

_TAIL = r"""r "uname $(uname -m)"
r "hostname $(uname -n)"
if [ -r /etc/os-release ]; then r "osrelease $(b64 < /etc/os-release)"; else r "osrelease -"; fi
while read -r _ ifc _ cidr _; do
  [ -n "$cidr" ] && r "addr $ifc $cidr"
done <<PIPROV_ADDRS
$(ip -o -4 addr show 2>/dev/null)
PIPROV_ADDRS
for b in BINARIES; do
  p=$(command -v "$b" 2>/dev/null) && case "$p" in /*) ;; *) p=- ;; esac || p=-
  r "bin $b $p"
done
"""


def facts_command(
    paths: Sequence[str],
    units: Sequence[str],
    *,
    etcdctl: str | None = None,
    etcd_keys: Sequence[str] = (),
) -> str:
    """ONE POSIX sh script printing every fact planning needs; run it with sudo.

    ``paths``: managed files (the host files hostname planning edits are always
    added); ``units``: managed units; ``etcdctl``: a command prefix reaching etcd
    (trusted: it comes from the playbook), used for ``etcd_keys`` when given.
    """
    all_paths = list(dict.fromkeys([*HOST_FILES, *paths]))
    for p in all_paths:
        if not _PATH_RE.match(p):
            raise FactsError(f"cannot ask for facts of path {p!r}: only plain absolute paths are allowed")
    for u in units:
        if not _UNIT_RE.match(u):
            raise FactsError(f"cannot ask for facts of unit {u!r}")
    for key in etcd_keys:
        if not _KEY_RE.match(key):
            raise FactsError(f"cannot ask for etcd key {key!r}")
    parts = [_PRELUDE.replace("MAXCONTENT", str(MAX_CONTENT))]
    keys = " ".join(shlex.quote(k) for k in etcd_keys) if etcdctl else ""
    if etcdctl and keys:
        if "\n" in etcdctl or "'" in etcdctl:
            raise FactsError(f"etcdctl command {etcdctl!r} must be one line without quotes")
        parts.append(_ETCD_FN.replace("ETCDCTL", etcdctl))
    parts.append(f"printf '%s\\n' {shlex.quote(BEGIN)}\n")
    if keys:
        parts.append(_ETCD_START.replace("KEYS", keys))
    parts.append(_TAIL.replace("BINARIES", " ".join(BINARIES)))
    parts.extend(f"f {p}\n" for p in all_paths)
    if units:
        parts.append(f"u {' '.join(dict.fromkeys(units))}\n")
    if keys:
        parts.append(_ETCD_COLLECT.replace("KEYS", keys))
    parts.append(f'printf \'%s %s\\n\' {END} "$n"\n')
    return "".join(parts)


# --------------------------------------------------------------------------
# The parser


def _snippet(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_facts(host: str, output: str) -> NodeFacts:
    """Parse :func:`facts_command` output; anything unexpected is a FactsError naming ``host``."""

    def fail(what: str, hint: str | None = None) -> FactsError:
        return FactsError(
            f"cannot understand the facts output: {what}",
            host=host,
            hint=hint or "run `piprov plan -v` to see the raw output; is the node a Linux with systemd?",
        )

    lines = output.splitlines()
    try:
        begin = next(i for i, line in enumerate(lines) if line.strip() == BEGIN)
    except StopIteration:
        first = next((line for line in lines if line.strip()), "")
        raise fail(
            "no facts in it (the command did not run?)" + (f"; it starts with {_snippet(first)}" if first else "; it is empty")
        ) from None
    end_idx: int | None = None
    declared = -1
    for i in range(begin + 1, len(lines)):
        if lines[i].startswith(END):
            tail = lines[i][len(END) :].strip()
            if not tail.isdigit():
                raise fail(f"bad end marker {_snippet(lines[i])}")
            end_idx, declared = i, int(tail)
            break
    records = lines[begin + 1 : end_idx]
    if end_idx is None:
        raise fail(f"it is truncated: no end marker after {len(records)} records", hint="the SSH session was cut; retry")
    if len(records) != declared:
        raise fail(f"it is mangled: {len(records)} records where the node counted {declared}")

    machine = hostname = None
    os_id = os_version = ""
    files: dict[str, FileFacts] = {}
    units: dict[str, UnitFacts] = {}
    keys: dict[str, EtcdKeyFacts] = {}
    addrs: list[Address] = []
    binaries: dict[str, str | None] = {}

    def b64(field_: str, lineno: int) -> bytes:
        try:
            return base64.b64decode(field_, validate=True)
        except (binascii.Error, ValueError):
            raise fail(f"record {lineno}: invalid base64 {_snippet(field_, 40)}") from None

    for lineno, raw in enumerate(records, start=1):
        line = raw.rstrip("\r")
        f = line.split(" ")
        kind = f[0]
        bad = fail(f"record {lineno} is malformed: {_snippet(line)}")
        if kind == "uname" and len(f) == 2 and _WORD_RE.match(f[1]):
            machine = f[1]
        elif kind == "hostname" and len(f) == 2 and _WORD_RE.match(f[1]):
            hostname = f[1]
        elif kind == "osrelease" and len(f) == 2:
            if f[1] != "-":
                os_id, os_version = _os_release(b64(f[1], lineno).decode("utf-8", "replace"))
        elif kind == "file" and len(f) >= 3 and _PATH_RE.match(f[1]):
            path = f[1]
            if path in files:
                raise fail(f"record {lineno}: file {path} reported twice")
            if f[2] == "missing" and len(f) == 3:
                files[path] = FileFacts(path, exists=False)
            elif f[2] == "notafile" and len(f) == 3:
                files[path] = FileFacts(path, exists=True, is_regular=False)
            elif f[2] == "present" and len(f) == 9:
                _, _, _, sha, mode_s, owner, group, size_s, content_s = f
                if not re.fullmatch(r"[0-7]{1,4}", mode_s) or not size_s.isdigit():
                    raise bad
                if not _WORD_RE.match(owner) or not _WORD_RE.match(group):
                    raise bad
                content: bytes | None
                if content_s == "!empty":
                    content = b""
                elif content_s == "!big":
                    content = None
                else:
                    content = b64(content_s, lineno)
                if content is None:
                    if not _SHA_RE.match(sha):
                        raise bad
                else:
                    digest = hashlib.sha256(content).hexdigest()
                    if len(content) != int(size_s) or sha not in ("-", digest):
                        raise fail(f"record {lineno}: content of {path} does not match its size/checksum")
                    sha = digest
                files[path] = FileFacts(path, True, sha, int(mode_s, 8), owner, group, int(size_s), content)
            else:
                raise bad
        elif kind == "unit" and len(f) == 4 and _UNIT_RE.match(f[1]):
            if not _STATE_RE.match(f[2]) or not _STATE_RE.match(f[3]):
                raise bad
            units[f[1]] = UnitFacts(f[1], f[2], f[3])
        elif kind == "etcdkey" and len(f) >= 3 and _KEY_RE.match(f[1]):
            if f[2] == "ok" and len(f) == 4:
                value = "" if f[3] == "!empty" else b64(f[3], lineno).decode("utf-8", "replace")
                keys[f[1]] = EtcdKeyFacts(f[1], "ok", value)
            elif f[2] in ("missing", "unavailable") and len(f) == 3:
                keys[f[1]] = EtcdKeyFacts(f[1], "missing" if f[2] == "missing" else "unavailable")
            else:
                raise bad
        elif kind == "bin" and len(f) == 3 and _WORD_RE.match(f[1]):
            if f[2] == "-":
                binaries[f[1]] = None
            elif _PATH_RE.match(f[2]):
                binaries[f[1]] = f[2]
            else:
                raise bad
        elif kind == "addr" and len(f) == 3 and re.fullmatch(r"[0-9.]+/[0-9]{1,2}", f[2]):
            addrs.append(Address(f[1], f[2]))
        else:
            raise bad

    if machine is None:
        raise fail("no architecture (uname -m) in it")
    if hostname is None:
        raise fail("no hostname in it")
    return NodeFacts(
        host=host,
        machine=machine,
        hostname=hostname,
        os_id=os_id,
        os_version=os_version,
        files=files,
        units=units,
        etcd_keys=keys,
        addresses=tuple(addrs),
        binaries=binaries,
    )


def _os_release(text: str) -> tuple[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values.get("ID", ""), values.get("VERSION_ID", "")
