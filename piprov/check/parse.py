"""The check script's output (:mod:`piprov.check.command`) as :class:`CheckFacts`.

The framing and the records it shares with the facts are read by the facts'
own parsers (:func:`piprov.facts.parse.framed_records`,
:func:`piprov.facts.records.parse_records`); this module reads the records it
adds, each strictly. Anything unexpected is a :class:`CheckError` naming the
host and the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from piprov.check.command import BEGIN, END
from piprov.check.model import CheckFacts, Disk, Fsync, Hierarchy, IptablesMode, Swap
from piprov.errors import CheckError
from piprov.facts.model import PATH_RE, FileFacts
from piprov.facts.parse import framed_records, node_facts
from piprov.facts.records import Output, Record, parse_records, snippet

CHECK = Output(
    name="check", begin=BEGIN, end=END, error=CheckError,
    hint="the check script needs a POSIX sh with busybox's applets or coreutils on the node; to see more, log in "
    "with ssh and run e.g. `uname -m`, `df -P /` and `cat /proc/cgroups` by hand")
_WORD_RE = re.compile(r"[A-Za-z0-9._+~-]{1,64}")
_COUNT_RE = re.compile(r"[0-9]{1,24}")
# Userland from dpkg's word or from the ELF header of /bin/sh: (EI_CLASS, e_machine) -> name.
_ELF = {(1, 0x28): "armhf", (2, 0xB7): "arm64", (2, 0x3E): "amd64", (1, 0x03): "i386"}
_DPKG_BITS = {"armhf": 32, "armel": 32, "i386": 32, "arm64": 64, "amd64": 64}


@dataclass
class _Seen:
    """The check's own records so far, slot by slot."""

    kernel: str | None = None
    b64: dict[str, str | None] = field(default_factory=dict)  # model, proccmdline, cgroups, swaps, cgroup2, iptables
    unified: bool = False
    dpkg: str | None = None
    elf: tuple[int, int] | None = None
    clock: int | None = None
    df: dict[str, Disk | None] = field(default_factory=dict)
    throttled: int | None = None
    vcgencmd: bool = False
    fsync_dir: str | None = None
    fsync_clock: str | None = None
    fsync_problem: str | None = None
    fsync_skipped: bool = False
    writes: list[tuple[str, int | None, int | None]] = field(default_factory=list)


def parse_check(host: str, output: str, *, asked: float, answered: float) -> CheckFacts:
    """Parse the check script's output; ``asked``/``answered``: the controller's clock around the round trip."""
    seen = _Seen()
    got = parse_records(host, framed_records(host, output, CHECK), output=CHECK, extra=_parsers(seen))
    base = node_facts(host, got, CHECK)
    if seen.kernel is None:
        raise CheckError("cannot understand the check output: no kernel release in it", host=host, hint=CHECK.hint)
    cmdline_path, configured = _configured(base.files)
    userland, bits = _userland(seen)
    text = {k: v or "" for k, v in seen.b64.items()}
    return CheckFacts(
        node=base, kernel=seen.kernel, os_values=got.os_values, model=text.get("model", "").strip("\0\n ") or None,
        userland=userland, userland_bits=bits, hierarchy=_hierarchy(seen, text),
        memory_effective=_memory(seen, text), memory_configured=configured, cmdline_path=cmdline_path,
        proc_cmdline=text.get("proccmdline", "").strip(), swaps=_swaps(host, text.get("swaps", "")),
        iptables=text.get("iptables", "").strip() or None, iptables_mode=_iptables_mode(seen.b64.get("iptables")),
        clock=seen.clock, skew=_skew(seen.clock, asked, answered),
        disks={k: d for k, d in seen.df.items() if d is not None}, throttled=seen.throttled,
        vcgencmd=seen.vcgencmd, fsync=_fsync(seen), fsync_problem=seen.fsync_problem,
        fsync_skipped=seen.fsync_skipped)


def _parsers(seen: _Seen) -> dict[str, Callable[[Record], None]]:
    def kernel(rec: Record) -> None:
        seen.kernel = _one(rec, _WORD_RE)

    def blob(rec: Record) -> None:
        field_ = _one(rec)
        tag = rec.line.split(" ", 1)[0]
        if tag in seen.b64:
            raise rec.wrong(f"{tag} reported twice")
        seen.b64[tag] = None if field_ == "-" else "" if field_ == "!empty" else \
            rec.base64(field_).decode("utf-8", "replace")

    def unified(rec: Record) -> None:
        seen.unified = _one(rec, re.compile("yes|no")) == "yes"

    def dpkg(rec: Record) -> None:
        word = _one(rec, re.compile(r"-|[a-z0-9]{1,16}"))
        seen.dpkg = None if word == "-" else word

    def clock(rec: Record) -> None:
        seen.clock = int(_one(rec, _COUNT_RE))

    def throttled(rec: Record) -> None:
        word = _one(rec, re.compile(r"-|!failed|0x[0-9a-fA-F]{1,8}"))
        seen.vcgencmd = word != "-"
        seen.throttled = int(word, 16) if word.startswith("0x") else None

    return {"kernel": kernel, "model": blob, "proccmdline": blob, "cgroups": blob, "swaps": blob, "cgroup2": blob,
            "iptables": blob, "cgroupunified": unified, "dpkg": dpkg, "elf": lambda rec: _elf(rec, seen),
            "clock": clock, "df": lambda rec: _df(rec, seen), "throttled": throttled,
            "fsync": lambda rec: _fsync_start(rec, seen), "fsyncwrite": lambda rec: _fsync_write(rec, seen)}


def _one(rec: Record, pattern: re.Pattern[str] | None = None) -> str:
    """The record's one field (matching ``pattern``)."""
    if len(rec.args) != 1 or not rec.args[0] or (pattern is not None and not pattern.fullmatch(rec.args[0])):
        raise rec.malformed()
    return rec.args[0]


def _elf(rec: Record, seen: _Seen) -> None:
    """``elf <class> <data> <machine lo> <machine hi>`` (bytes of /bin/sh's ELF header) or ``elf -``."""
    if rec.args == ("-",):
        return
    if len(rec.args) != 4 or not all(_COUNT_RE.fullmatch(a) and int(a) < 256 for a in rec.args):
        raise rec.malformed()
    cls, data, lo, hi = (int(a) for a in rec.args)
    seen.elf = (cls, lo + 256 * hi if data == 1 else hi + 256 * lo)


def _df(rec: Record, seen: _Seen) -> None:
    """``df <root|boot> <dir|-> <base64 of df -P -k output | ->``: its last line's size, available and mount point."""
    if len(rec.args) != 3 or rec.args[0] not in ("root", "boot") or rec.args[0] in seen.df:
        raise rec.malformed()
    which, path, blob = rec.args
    if blob == "-":
        seen.df[which] = None
        return
    if not PATH_RE.match(path) and path != "/":
        raise rec.malformed()
    lines = [ln for ln in rec.base64(blob).decode("utf-8", "replace").splitlines() if ln.strip()]
    # POSIX (-P): "Filesystem 1024-blocks Used Available Capacity Mounted on", then one line a filesystem
    # (a long device name is not folded with -P); the mount point is the rest of the line.
    words = lines[-1].split(None, 5) if len(lines) >= 2 else []
    if len(words) != 6 or not all(w.isdigit() for w in words[1:4]) or not words[5].startswith("/"):
        raise rec.wrong(f"df output {snippet(lines[-1] if lines else '', 60)} is not `df -P -k`'s")
    seen.df[which] = Disk(path, words[5], int(words[1]), int(words[3]))


def _fsync_start(rec: Record, seen: _Seen) -> None:
    """``fsync <dir> <ns|cs>``, ``fsync <dir|-> <!nodir|!nofile>`` or ``fsync - !skipped``."""
    if len(rec.args) != 2 or seen.fsync_dir is not None or seen.fsync_problem is not None or seen.fsync_skipped:
        raise rec.malformed()
    where, how = rec.args
    if where != "-" and not PATH_RE.match(where):
        raise rec.malformed()
    if how in ("ns", "cs") and where != "-":
        seen.fsync_dir, seen.fsync_clock = where, how
    elif how == "!nodir":
        seen.fsync_problem = "none of the directories to measure in exists"
    elif how == "!skipped" and where == "-":
        seen.fsync_skipped = True
    elif how == "!nofile":
        seen.fsync_problem = f"no temp file could be made in {where}"
    else:
        raise rec.malformed()


def _fsync_write(rec: Record, seen: _Seen) -> None:
    """``fsyncwrite <base|sync> <start> <end>`` or ``fsyncwrite <base|sync> !failed``, after ``fsync``."""
    if seen.fsync_dir is None or not rec.args or rec.args[0] not in ("base", "sync"):
        raise rec.malformed()
    kind = rec.args[0]
    if (kind == "base") != (not seen.writes):
        raise rec.wrong("the plain write comes first, once")
    if rec.args[1:] == ("!failed",):
        seen.writes.append((kind, None, None))
        seen.fsync_problem = f"dd could not write in {seen.fsync_dir}"
        return
    if len(rec.args) != 3 or not all(_COUNT_RE.fullmatch(a) for a in rec.args[1:]):
        raise rec.malformed()
    start, end = int(rec.args[1]), int(rec.args[2])
    if end < start:
        raise rec.wrong("a write ended before it started")
    seen.writes.append((kind, start, end))


def _fsync(seen: _Seen) -> Fsync | None:
    if seen.fsync_dir is None or seen.fsync_problem is not None or len(seen.writes) < 2:
        if seen.fsync_dir is not None and seen.fsync_problem is None:
            seen.fsync_problem = "no fsync'd write was timed"
        return None
    scale = 1e-6 if seen.fsync_clock == "ns" else 10.0
    times = [(e - s) * scale for _, s, e in seen.writes if s is not None and e is not None]
    base = times[0]
    return Fsync(seen.fsync_dir, "ns" if seen.fsync_clock == "ns" else "cs",
                 tuple(round(max(0.0, t - base), 3) for t in times[1:]), round(base, 3))


def _hierarchy(seen: _Seen, text: dict[str, str]) -> Hierarchy:
    if seen.b64.get("cgroup2") is not None:
        return "v2"
    if any(row[1] != "0" for row in _cgroup_rows(text.get("cgroups", ""))):
        return "hybrid" if seen.unified else "v1"
    return "none"


def _cgroup_rows(text: str) -> list[list[str]]:
    """/proc/cgroups' rows: subsys_name, hierarchy, num_cgroups, enabled."""
    return [row for line in text.splitlines() if not line.startswith("#") and len(row := line.split()) == 4]


def _memory(seen: _Seen, text: dict[str, str]) -> bool | None:
    """Whether the memory controller works: in the cgroup2 root's controllers, else /proc/cgroups' enabled."""
    if seen.b64.get("cgroup2") is not None:
        return "memory" in text.get("cgroup2", "").split()
    rows = {row[0]: row for row in _cgroup_rows(text.get("cgroups", ""))}
    if not rows:
        return None
    return "memory" in rows and rows["memory"][3] == "1"


def _configured(files: Mapping[str, FileFacts]) -> tuple[str | None, bool | None]:
    """The first cmdline.txt found and what it says of the memory cgroup: the last word about it wins."""
    for path, f in files.items():
        if not path.endswith("cmdline.txt") or not f.exists:
            continue
        say: bool | None = None
        for word in (f.text or "").split():
            key, _, value = word.partition("=")
            if key in ("cgroup_enable", "cgroup_disable") and "memory" in value.split(","):
                say = key == "cgroup_enable"
            elif key == "cgroup_memory" and value in ("0", "1"):
                say = value == "1"
        return path, say
    return None, None


def _userland(seen: _Seen) -> tuple[str | None, int | None]:
    if seen.dpkg is not None:
        return seen.dpkg, _DPKG_BITS.get(seen.dpkg)
    if seen.elf is not None:
        cls, machine = seen.elf
        return _ELF.get((cls, machine), f"elf{32 * cls}-{machine:#x}"), 32 * cls if cls in (1, 2) else None
    return None, None


def _swaps(host: str, text: str) -> tuple[Swap, ...]:
    """/proc/swaps after its header: Filename Type Size Used Priority (sizes in KiB)."""
    out = []
    for line in text.splitlines()[1:]:
        words = line.split()
        if not words:
            continue
        if len(words) != 5 or not words[2].isdigit() or not words[3].isdigit():
            raise CheckError(f"cannot understand the check output: /proc/swaps line {snippet(line, 60)}",
                             host=host, hint=CHECK.hint)
        out.append(Swap(words[0], words[1], int(words[2]), int(words[3])))
    return tuple(out)


def _iptables_mode(line: str | None) -> IptablesMode:
    """``iptables v1.8.9 (nf_tables)``, ``iptables v1.8.7 (legacy)``; before 1.8 only legacy existed."""
    if line is None:
        return "missing"
    if "(nf_tables)" in line:
        return "nf_tables"
    if "(legacy)" in line or re.search(r"\bv1\.[0-7]\.", line):
        return "legacy"
    return "unknown"


def _skew(clock: int | None, asked: float, answered: float) -> float | None:
    """The node's clock minus the controller's: 0 within the round trip (and the second `date` drops)."""
    if clock is None:
        return None
    if asked - 1 <= clock <= answered + 1:
        return 0.0
    return float(clock - (asked if clock < asked else answered))
