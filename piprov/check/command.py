"""The one check script: a POSIX sh script printing every record the preflight judges.

ONE script per node, one SSH round trip, framed like the facts
(:data:`BEGIN`, records, ``END <count>``) and built on the facts script's own
pieces (:func:`piprov.facts.command.prelude`, ``SYSTEM``, ``VERSIONS``: the
``uname``, ``hostname``, ``uptime``, ``osrelease``, ``addr``, ``version`` and
``file`` records, parsed by the facts' parsers). It needs nothing busybox
lacks (``tests/unit/test_floor.py`` runs it under busybox sh and dash).

Read-only: it changes nothing on the node but one temp file of the fsync
measure, in the first of ``probe.fsync_dirs`` that exists, removed on every
way out (a trap on EXIT, HUP, INT, PIPE (a cut SSH session) and TERM; the shell
runs it once the write under way returns). The records it adds, parsed by
:mod:`piprov.check.parse`::

    kernel <uname -r>
    model <base64 of /proc/device-tree/model | !empty | ->
    proccmdline|cgroups|swaps|cgroup2 <base64 | !empty | ->   /proc/cmdline, /proc/cgroups,
                                              /proc/swaps, /sys/fs/cgroup/cgroup.controllers
    cgroupunified <yes|no>                    a cgroup2 tree at /sys/fs/cgroup/unified (hybrid)
    dpkg <arch | ->                           dpkg --print-architecture
    elf <class> <data> <machine lo> <machine hi> | elf -     the ELF header of /bin/sh
    iptables <base64 of `iptables -V` | ->
    clock <seconds since the epoch>
    df <root|boot> <DIR|-> <base64 of `df -P -k DIR` | ->
    throttled <0x... | !failed | ->           vcgencmd get_throttled
    fsync <dir> <ns|cs> | fsync <dir|-> <!nodir|!nofile> | fsync - !skipped   (the measure left out)
    fsyncwrite <base|sync> <start> <end> | fsyncwrite <base|sync> !failed
"""

from __future__ import annotations

from dataclasses import dataclass

from piprov.errors import CheckError
from piprov.facts.command import SYSTEM, VERSIONS, prelude
from piprov.facts.model import OCCIDENTALIS, PATH_RE

BEGIN = "PIPROV-CHECK-BEGIN 1"
END = "PIPROV-CHECK-END"


@dataclass(frozen=True)
class Probe:
    """Where the script looks (from playbooks/check/checks.yaml ``probe``)."""

    cmdline: tuple[str, ...]  # the boot partition's cmdline.txt, first found wins
    boot: tuple[str, ...]  # the boot filesystem's mount point, first existing wins
    fsync_dirs: tuple[str, ...]  # where the fsync'd writes go, first existing wins
    vcgencmd: tuple[str, ...]  # vcgencmd by name or path, first found wins
    fsync_writes: int = 5
    fsync_bytes: int = 4096


# rb(): a file as one base64 field (/proc files have no size, so not fs()).
# The ELF header of /bin/sh tells the userland's word size and machine
# (e_ident[EI_CLASS] 1/2 = 32/64-bit, e_machine at offset 18): a 64-bit kernel
# (uname -m aarch64) often runs a 32-bit (armhf) userland on a Pi.
_RECORDS = r"""rb() { if [ -r "$2" ]; then x=$(b64 < "$2"); r "$1 ${x:-!empty}"; else r "$1 -"; fi; }
r "kernel $(uname -r)"
rb model /proc/device-tree/model
rb proccmdline /proc/cmdline
rb cgroups /proc/cgroups
rb swaps /proc/swaps
rb cgroup2 /sys/fs/cgroup/cgroup.controllers
if [ -e /sys/fs/cgroup/unified/cgroup.controllers ]; then r "cgroupunified yes"; else r "cgroupunified no"; fi
a=$(dpkg --print-architecture 2>/dev/null) || a=
case $a in ''|*[!a-z0-9]*) a=- ;; esac
r "dpkg $a"
set -- $(od -An -tu1 -N20 /bin/sh 2>/dev/null)
if [ $# -ge 20 ] && [ "$1 $2 $3 $4" = "127 69 76 70" ]; then r "elf $5 $6 ${19} ${20}"; else r "elf -"; fi
if command -v iptables >/dev/null 2>&1; then
  x=$(iptables -V 2>&1 | head -n 1 | b64); r "iptables ${x:-!empty}"
else r "iptables -"; fi
r "clock $(date +%s)"
dfr() { x=$(df -P -k "$2" 2>/dev/null | b64); r "df $1 $2 ${x:--}"; }
dfr root /
bd=-; for d in BOOTDIRS; do if [ -d "$d" ]; then bd=$d; break; fi; done
if [ "$bd" = - ]; then r "df boot - -"; else dfr boot "$bd"; fi
x=-
for v in VCGENCMD; do
  if command -v "$v" >/dev/null 2>&1; then
    x=$("$v" get_throttled 2>/dev/null); x=${x#throttled=}
    case $x in 0x*[!0-9a-fA-F]*|0x) x='!failed' ;; 0x*) ;; *) x='!failed' ;; esac
    break
  fi
done
r "throttled $x"
"""

# fy(): the SD card's synchronous-write latency. One plain write (the cost of
# starting dd and reading the clock, subtracted by the parser), then WRITES
# writes of BYTES each with conv=fsync (dd's fsync before it exits; GNU and
# busybox dd both have it, busybox has no oflag=dsync), each timed. The clock:
# `date +%s%N` where date knows %N (GNU; busybox prints "%N" as is), else
# /proc/uptime in hundredths of a second.
_FSYNC = r"""st() { if [ "$ck" = ns ]; then tv=$(date +%s%N); else read -r tv _ </proc/uptime; tv=${tv%%.*}${tv#*.}; fi; }
fw() {
  st; a=$tv
  if dd if=/dev/zero of="$tf" bs=BYTES count=1 $2 2>/dev/null; then st; r "fsyncwrite $1 $a $tv"
  else r "fsyncwrite $1 !failed"; return 1; fi
}
fy() {
  d=; for c in FSYNCDIRS; do if [ -d "$c" ]; then d=$c; break; fi; done
  if [ -z "$d" ]; then r "fsync - !nodir"; return 0; fi
  t=$(date +%s%N 2>/dev/null)
  case $t in ''|*[!0-9]*) ck=cs ;; *) ck=ns ;; esac
  trap 'rm -f "$tf"' EXIT
  trap 'rm -f "$tf"; exit 1' HUP INT PIPE TERM
  tf=$(mktemp "$d/.piprov-check.XXXXXX" 2>/dev/null) || tf=
  if [ -z "$tf" ]; then r "fsync $d !nofile"; return 0; fi
  r "fsync $d $ck"
  fw base "" || { rm -f "$tf"; return 0; }
  i=0
  while [ "$i" -lt WRITES ]; do fw sync conv=fsync || break; i=$((i+1)); done
  rm -f "$tf"
}
tf=
fy
"""


def check_command(probe: Probe, *, fsync: bool = True) -> str:
    """ONE POSIX sh script printing the records the preflight judges; run it with sudo (the fsync dir).

    ``fsync=False`` leaves the SD card's measure out (the cheap checks `piprov up`
    runs itself): the script then writes nothing at all and takes no time.
    """
    _check_probe(probe)
    parts = [prelude(), f"printf '%s\\n' '{BEGIN}'\n", SYSTEM, VERSIONS]
    parts.append(f"fs {OCCIDENTALIS} {' '.join(probe.cmdline)}\n")
    parts.append(_RECORDS.replace("BOOTDIRS", " ".join(probe.boot)).replace("VCGENCMD", " ".join(probe.vcgencmd)))
    if fsync:
        parts.append(_FSYNC.replace("FSYNCDIRS", " ".join(probe.fsync_dirs)).replace("WRITES", str(probe.fsync_writes))
                     .replace("BYTES", str(probe.fsync_bytes)))
    else:
        parts.append('r "fsync - !skipped"\n')
    parts.append(f'printf \'%s %s\\n\' {END} "$n"\n')
    return "".join(parts)


def _check_probe(probe: Probe) -> None:
    # Interpolated unquoted: plain absolute paths (and program names) only.
    for path in (*probe.cmdline, *probe.boot, *probe.fsync_dirs):
        if not PATH_RE.match(path):
            raise CheckError(f"cannot check path {path!r}: only plain absolute paths are allowed")
    for program in probe.vcgencmd:
        if not (PATH_RE.match(program) or program.replace("-", "").replace("_", "").isalnum()):
            raise CheckError(f"cannot run {program!r}: a program name or a plain absolute path")
    if not (1 <= probe.fsync_writes <= 50 and 512 <= probe.fsync_bytes <= 1 << 20):
        raise CheckError("the fsync measure takes 1..50 writes of 512 B..1 MiB")
