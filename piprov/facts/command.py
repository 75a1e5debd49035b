"""The one facts command: a POSIX sh script printing every record planning needs.

One script per node keeps a no-op ``up`` at one SSH round trip. It needs only
coreutils, systemd and iproute2 on the node (the etcd keys piprov owns are read
from the controller: piprov.kube.etcd.read_keys); the
records it prints are parsed by :mod:`piprov.facts.records`, and the framing
(:data:`BEGIN`, :data:`END` and the record count) by :mod:`piprov.facts.parse`.
"""

from __future__ import annotations

import re
import shlex
from typing import Iterable, Sequence

from piprov.errors import FactsError
from piprov.facts.model import CLOUD_INIT_USER_DATA, DEVICE_INIT, OCCIDENTALIS, PATH_RE, UNIT_RE

BEGIN = "PIPROV-FACTS-BEGIN 1"
END = "PIPROV-FACTS-END"
# Content of files up to this size comes back (for diffs and in-place edits).
MAX_CONTENT = 64 * 1024
# Read on every node: hostname planning edits them.
HOST_FILES = (OCCIDENTALIS, DEVICE_INIT, *CLOUD_INIT_USER_DATA, "/etc/hostname", "/etc/hosts")
# Program names go into the script unquoted, like paths and units.
_PROGRAM_RE = re.compile(r"^[A-Za-z0-9._+-]+$")

# u(): ONE `systemctl show` for every unit, a block of KEY=VALUE lines per unit in
# argument order, blank-line separated. systemctl prints the properties in its own
# order, not in the order of -p (systemd 252 prints a service's NRestarts before
# its ActiveState), and leaves out, without an error, a property the unit does not
# have (seen on 252 with a made-up name): NRestarts before systemd 235 (NEWS,
# "CHANGES WITH 235": "a restart counter is now kept ... systemctl show -p
# NRestarts"), NRestarts on a .socket. So each block is read by key, in any order,
# and a missing value goes out as "-". What the values mean: the unithistory
# parser in piprov.facts.records.
PRELUDE = r"""export LC_ALL=C
n=0
r() { printf '%s\n' "$*"; n=$((n+1)); }
b64() { base64 -w 0; }
# The managed files, all at once: one stat for every readable regular file, one
# cat | base64 for the content of every small public one (a ``file ... !blob``
# record each, then one ``blob`` record the parser cuts by their sizes) and, for
# the secrets, one sha256sum. A file each costs 3 processes otherwise (~6 ms a
# file on a loaded node), and the cluster's certificates and keys are most of
# the files (17 on the master); one base64 a file was still 20-27 of the ~57
# processes of a no-op's facts (bench/nodecost.py, 2 Dec).
# Paths are plain absolute ones (PATH_RE): word splitting is safe. The while
# loops read a here-document, not a pipe: r() counts in this shell.
fl() {
  fok=
  for p; do
    if [ -f "$p" ] && [ -r "$p" ]; then fok="$fok $p"
    elif [ -e "$p" ]; then r "file $p notafile"
    else r "file $p missing"; fi
  done
}
fs() {
  fl "$@"; [ -n "$fok" ] || return 0
  blob=
  while read -r p st; do
    [ -n "$p" ] || continue
    size=${st##* }
    if [ "$size" = 0 ]; then r "file $p present - $st !empty"
    elif [ "$size" -le MAXCONTENT ] 2>/dev/null; then r "file $p present - $st !blob"; blob="$blob $p"
    else sum=$(sha256sum < "$p") && sum=${sum%% *} || sum=; r "file $p present $sum $st !big"; fi
  done <<EOF
$(stat -c '%n %a %U %G %s' $fok)
EOF
  [ -z "$blob" ] || { printf 'blob '; cat $blob | b64; printf '\n'; n=$((n+1)); }
}
hs() {
  fl "$@"; [ -n "$fok" ] || return 0
  set -- $(sha256sum $fok)
  while read -r p st; do
    [ -n "$p" ] || continue
    sum=
    if [ "$2" = "$p" ]; then sum=$1; shift 2; fi
    r "file $p present $sum $st !secret"
  done <<EOF
$(stat -c '%n %a %U %G %s' $fok)
EOF
}
u() {
  active= file= restarts= result= down= nr=
  while IFS='=' read -r key val; do
    case $key in
      ActiveState) active=$val ;;
      UnitFileState) file=$val ;;
      NRestarts) restarts=$val nr=1 ;;
      Result) result=$val ;;
      InactiveEnterTimestampMonotonic) down=$val ;;
      '') if [ $# -gt 0 ] && [ -n "$active" ]; then
            r "unit $1 $active ${file:-not-found}"
            r "unithistory $1 ${restarts:--} ${result:--} ${down:--}"; shift
          fi
          active= file= restarts= result= down= ;;
    esac
  done <<PIPROV_UNITS
$(systemctl show -p ActiveState -p UnitFileState -p NRestarts -p Result -p InactiveEnterTimestampMonotonic \
  -- "$@" 2>/dev/null)

PIPROV_UNITS
  for unit in "$@"; do r "unit $unit unknown not-found"; done
}
"""

# j(): the restart history NRestarts gives on systemd >= 235, from the journal
# on an older one: per service, how often systemd scheduled its restart by
# Restart= in this boot, and when (monotonic seconds) it last did or the unit
# last entered the failed state. It costs nothing where u() saw any NRestarts
# (systemd >= 235 with a service loaded); else it reads the version the
# versions block already asked for ($sv), and below 235 runs one journalctl
# whose filter is exact field matches (_PID=1 and
# the MESSAGE texts below), which journald answers from its field index
# without reading the units' own output (a kubelet's), plus one sh loop per
# service over the matched lines (two a death). What systemd prints, read in
# systemd/systemd-stable (tags v215..v234, src/core/service.c service_dispatch_timer
# SERVICE_AUTO_RESTART, src/core/unit.c unit_notify):
# - v215..v219: "UNIT holdoff time over, scheduling restart." ("UNIT has no
#   holdoff time, scheduling restart." with RestartSec=0) and "Unit UNIT
#   entered failed state.";
# - v220..v234: log_unit_*() prefixes "UNIT: " (src/shared/log.c, later
#   src/basic/log.c, log_object_internalv): "UNIT: Service hold-off time over,
#   scheduling restart." ("UNIT: Service has no hold-off time, ..."), "UNIT:
#   Unit entered failed state.";
# - a clean exit is logged at debug level, which systemd does not log by
#   default (v215 "main process exited" with f == SERVICE_SUCCESS; v220's
#   "Scheduled restart job." is log_unit_debug too), so the restart message
#   is what every revival leaves.
# -o short-monotonic ("[%5llu.%06llu] HOST IDENT[PID]: MESSAGE", v215
# src/shared/logs-show.c output_short) because short-unix only came in v230,
# and because facts times are monotonic anyway (see the uptime record). The
# count covers the boot, not NRestarts' "since last started by hand".
_JOURNAL_FN = r"""j() {
  [ -n "$nr" ] && return 0
  v=${sv#systemd }; v=${v%%[!0-9]*}
  [ -n "$v" ] && [ "$v" -lt 235 ] || return 0
  units=$*
  set --
  for u in $units; do
    set -- "$@" "MESSAGE=$u holdoff time over, scheduling restart." \
      "MESSAGE=$u has no holdoff time, scheduling restart." "MESSAGE=Unit $u entered failed state." \
      "MESSAGE=$u: Service hold-off time over, scheduling restart." \
      "MESSAGE=$u: Service has no hold-off time, scheduling restart." "MESSAGE=$u: Unit entered failed state."
  done
  jo=$(journalctl -b -q --no-pager -o short-monotonic _PID=1 "$@" 2>/dev/null) || return 0
  for u in $units; do
    c=0 t=-
    while IFS= read -r line; do
      case $line in
        *" $u holdoff time over, scheduling restart."|*" $u has no holdoff time, scheduling restart."|\
        *" $u: Service hold-off time over, scheduling restart."|\
        *" $u: Service has no hold-off time, scheduling restart.") c=$((c+1)) ;;
        *" Unit $u entered failed state."|*" $u: Unit entered failed state.") ;;
        *) continue ;;
      esac
      s=${line#\[}; s=${s%%]*}; s=${s##* }
      case $s in ''|*[!0-9.]*|*.*.*) ;; *) t=$s ;; esac
    done <<PIPROV_JOURNAL
$jo
PIPROV_JOURNAL
    r "unitjournal $u $c $t"
  done
}
"""

# `docker --version` is a Go program's start (30-40 ms on the lab, far more on a Pi 1):
# it runs in the background while the files and units are read, so the script
# waits for the slower of the two, not their sum. Its record goes through a temp
# file because the file records' lines would interleave with it; without a temp
# file it runs in line.
_SLOW_START = r"""kq=$(mktemp 2>/dev/null) || kq=
if [ -n "$kq" ]; then
  trap 'rm -f "$kq"' EXIT
  trap 'rm -f "$kq"; exit 1' HUP INT TERM
  { SLOW; } >"$kq" 2>/dev/null &
fi
"""

_SLOW_COLLECT = r"""if [ -n "$kq" ]; then
  wait
  while IFS= read -r line; do r "$line"; done <"$kq"
else
  SLOW
fi
"""

# hostname: /proc/sys/kernel/hostname is the nodename uname -n prints (proc(5)),
# read without starting a process; uname -n where /proc is not readable.
# addr: every line `ip -o -4 addr show` prints goes out as its words (one space
# between them, no glob expansion), up to the backslash -o puts before the
# lifetimes; the addr parser in piprov.facts.records reads them, peer and label
# included, so a shape the script did not foresee is a parse error there, tested
# from data, not a silently dropped field here.
SYSTEM = r"""r "uname $(uname -m)"
hn=; { read -r hn </proc/sys/kernel/hostname; } 2>/dev/null || hn=$(uname -n); r "hostname $hn"
up=; { read -r up _ </proc/uptime; } 2>/dev/null; r "uptime ${up:--}"
if [ -r /etc/os-release ]; then r "osrelease $(b64 < /etc/os-release)"; else r "osrelease -"; fi
ad() { set -f; set -- $1; set +f; [ $# -gt 0 ] && r "addr $*"; }
while IFS= read -r line; do ad "${line%%\\*}"; done <<PIPROV_ADDRS
$(ip -o -4 addr show 2>/dev/null)
PIPROV_ADDRS
"""

# The running programs' versions, one word each (the check script, piprov.check.command, reuses
# PRELUDE, SYSTEM and VERSIONS and their records): `docker --version` prints
# "Docker version 20.10.24+dfsg1, build 297e128" (1.11: "Docker version 1.11.2,
# build b9f10c9"), `systemctl --version` "systemd 215" then its features. The
# word goes out as is (the parser is strict about its characters, lenient about
# its form: piprov.version parses it); "-" when the program is missing or
# printed nothing. The support matrix (playbooks/versions.yaml) judges them.
# vw cuts the word in the shell (no printf | head | cut: four processes a
# version, bench/nodecost.py, 2 Dec); $3 is the word's number, a literal digit.
_VERSION_FN = r"""vw() {
  vn=$1 vi=$3 v=${2%%"
"*}
  set -f; set -- $v; set +f
  v=; [ $# -ge "$vi" ] && eval "v=\${$vi}"
  v=${v%,}; r "version $vn ${v:--}"
}
"""
# DOCKER_HOST names a socket that cannot exist: docker/cli 20.10 (Debian 11 and
# 12's docker.io) pings the daemon before it reads --version (cmd/docker/docker.go
# runDocker -> tcmd.Initialize -> cli/command/cli.go initializeFromClient, whose
# Ping has no timeout on a unix socket), and while systemd holds docker.socket
# for a docker.service that cannot start, that ping waits for ever: every facts
# read of the node hung until piprov's 60 s limit. Refused at once, the ping
# leaves --version's line as it was (1.x CLIs never ping for it), and a healthy
# daemon is spared a request per facts read.
_DOCKER_VERSION = r"""vw docker "$(DOCKER_HOST=unix:///dev/null/piprov-no-daemon docker --version 2>/dev/null)" 3"""
_SYSTEMD_VERSION = r"""sv=$(systemctl --version 2>/dev/null)
vw systemd "$sv" 2
"""
VERSIONS = _VERSION_FN + _SYSTEMD_VERSION + _DOCKER_VERSION + "\n"

# dr(): the drop-ins of the managed units, where an admin or a package puts them
# (/etc) and where a runtime `systemctl set-property` does (/run); systemd reads
# only *.conf there (systemd.unit(5), "drop-in"; the same from v215 on). Each is
# a ``dropin`` record and then its ``file`` record. A name the ``file`` record
# could not carry unquoted goes out as ``!odd`` (the planner refuses it).
_DROPINS = r"""dr() {
  for u in "$@"; do
    for p in /etc/systemd/system/"$u".d/*.conf /run/systemd/system/"$u".d/*.conf; do
      [ -e "$p" ] || [ -L "$p" ] || continue
      case $p in *[!A-Za-z0-9._/@+-]*) r "dropin $u !odd"; continue ;; esac
      r "dropin $u $p"; fs "$p"
    done
  done
}
"""

# `command -v` under sudo's PATH; a shell builtin or alias is not a program.
_BINARIES = r"""for b in BINARIES; do
  p=$(command -v "$b" 2>/dev/null) && case "$p" in /*) ;; *) p=- ;; esac || p=-
  r "bin $b $p"
done
"""


def prelude() -> str:
    """The script's helpers (``r`` counting records, ``b64``, the ``file`` records of ``fs``/``hs``, ``u``)."""
    return PRELUDE.replace("MAXCONTENT", str(MAX_CONTENT))


def facts_command(
    paths: Sequence[str],
    units: Sequence[str],
    *,
    binaries: Iterable[str] = (),
    secret_paths: Iterable[str] = (),
) -> str:
    """ONE POSIX sh script printing every fact planning needs on the node; run it with sudo.

    ``paths``: managed files (the host files hostname planning edits are always
    added); ``units``: managed units; ``binaries``: names of the programs the units run, located under sudo's
    PATH (the graph knows them: docker-ce on HypriotOS puts dockerd in
    /usr/bin, Debian's docker.io in /usr/sbin); a name → default path mapping
    will do, its keys are the names. ``secret_paths``: those of ``paths``
    whose content must never leave the node (private keys): only their
    checksum comes back, and the planner shows no diff of them.
    """
    all_paths = list(dict.fromkeys([*HOST_FILES, *paths]))
    programs = list(dict.fromkeys(binaries))
    _check_names(all_paths, units, programs)
    parts = [prelude()]
    services = [u for u in dict.fromkeys(units) if u.endswith(".service")]
    if services:
        parts.append(_JOURNAL_FN)
    parts.append(f"printf '%s\\n' {shlex.quote(BEGIN)}\n")
    parts.append(_VERSION_FN)
    parts.append(_SLOW_START.replace("SLOW", _DOCKER_VERSION))
    parts.append(SYSTEM)
    parts.append(_SYSTEMD_VERSION)
    if programs:
        parts.append(_BINARIES.replace("BINARIES", " ".join(programs)))
    secret = set(secret_paths)
    for fn, group in (("fs", [p for p in all_paths if p not in secret]), ("hs", [p for p in all_paths if p in secret])):
        if group:
            parts.append(f"{fn} {' '.join(group)}\n")
    if units:
        parts.append(_DROPINS)
        parts.append(f"dr {' '.join(dict.fromkeys(units))}\n")
        parts.append(f"u {' '.join(dict.fromkeys(units))}\n")
    if services:
        parts.append(f"j {' '.join(services)}\n")
    parts.append(_SLOW_COLLECT.replace("SLOW", _DOCKER_VERSION))
    parts.append(f'printf \'%s %s\\n\' {END} "$n"\n')
    return "".join(parts)


# What each kind of name must look like, and the refusal naming it, in _check_names' order.
_NAME_RULES = (
    (PATH_RE, "cannot ask for facts of path {!r}: only plain absolute paths are allowed"),
    (UNIT_RE, "cannot ask for facts of unit {!r}"),
    (_PROGRAM_RE, "cannot ask where program {!r} is"),
)


def _check_names(paths: Sequence[str], units: Sequence[str], programs: Sequence[str]) -> None:
    for (pattern, refusal), names in zip(_NAME_RULES, (paths, units, programs)):
        for name in names:
            if not pattern.match(name):
                raise FactsError(refusal.format(name))
