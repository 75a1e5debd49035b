"""One parser per record kind of the facts output, registered by its tag.

A record is one line, ``<tag> <field> ...``, split on single spaces. Each
parser checks its record strictly and stores the typed value it says into a
:class:`Collected`; anything unexpected is a :class:`FactsError` naming the host
and the record's number. :func:`parse_records` dispatches by tag; the framing
around the records is :mod:`piprov.facts.parse`'s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Sequence

from piprov.errors import FactsError
from piprov.facts.command import BEGIN, END
from piprov.facts.model import PATH_RE, UNIT_RE, WORD_RE, Address, FileFacts, UnitFacts

_STATE_RE = re.compile(r"^[a-z][a-z-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MODE_RE = re.compile(r"[0-7]{1,4}")
_SECONDS_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
_COUNT_RE = re.compile(r"[0-9]+")

# No piprov option shows the raw facts output: point at what the script needs
# and at the node itself.
HINT = (
    "the facts script needs a POSIX sh, coreutils, iproute2 and systemd on the node; "
    "to see more, log in with ssh and run e.g. `systemctl --version`, `ip -o addr` and `uname -m` by hand"
)


@dataclass(frozen=True)
class Output:
    """Which framed output is read: its markers, what it is called, its error class and hint.

    The facts' by default; the preflight check (piprov.check) frames its records
    the same way, reuses the facts' record parsers, and names its own output.
    """

    name: str = "facts"
    begin: str = BEGIN
    end: str = END
    error: type[FactsError] = FactsError
    hint: str = HINT


FACTS = Output()


def unreadable(host: str, what: str, hint: str | None = None, output: Output = FACTS) -> FactsError:
    """The one error for facts output that cannot be understood."""
    return output.error(f"cannot understand the {output.name} output: {what}", host=host, hint=hint or output.hint)


def snippet(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass
class Collected:
    """What the records said so far, slot by slot; NodeFacts is built from it."""

    machine: str | None = None
    hostname: str | None = None
    os_id: str = ""
    os_version: str = ""
    os_values: dict[str, str] = field(default_factory=dict)
    files: dict[str, FileFacts] = field(default_factory=dict)
    units: dict[str, UnitFacts] = field(default_factory=dict)
    addresses: list[Address] = field(default_factory=list)
    binaries: dict[str, str | None] = field(default_factory=dict)
    uptime: float | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    dropins: dict[str, list[str | None]] = field(default_factory=dict)
    # ``file ... !blob`` records whose content the next ``blob`` record carries.
    blobbed: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class Record:
    """One record line: its number (from 1) and its fields after the tag."""

    host: str
    number: int
    line: str
    args: tuple[str, ...]
    output: Output = FACTS

    def malformed(self) -> FactsError:
        return unreadable(self.host, f"record {self.number} is malformed: {snippet(self.line)}", output=self.output)

    def wrong(self, what: str) -> FactsError:
        return unreadable(self.host, f"record {self.number}: {what}", output=self.output)

    def base64(self, text: str) -> bytes:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self.wrong(f"invalid base64 {snippet(text, 40)}") from None

    def word(self) -> str:
        """The record's one field, a plain word."""
        if len(self.args) != 1 or not WORD_RE.match(self.args[0]):
            raise self.malformed()
        return self.args[0]


RecordParser = Callable[[Record, Collected], None]
RECORDS: dict[str, RecordParser] = {}


def record(tag: str) -> Callable[[RecordParser], RecordParser]:
    """Register the parser of the records tagged ``tag``."""

    def register(parser: RecordParser) -> RecordParser:
        if tag in RECORDS:
            raise ValueError(f"facts record {tag!r} registered twice")
        RECORDS[tag] = parser
        return parser

    return register


def parse_records(
    host: str, lines: Sequence[str], *, output: Output = FACTS, extra: Mapping[str, Callable[[Record], None]] | None = None
) -> Collected:
    """Every record in ``lines`` (the framing already removed), in order.

    ``extra``: parsers of the tags another output adds to the facts' own (each
    stores what it reads itself); a tag neither knows is malformed.
    """
    into = Collected()
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        tag, *args = line.split(" ")
        rec = Record(host, number, line, tuple(args), output)
        parser = RECORDS.get(tag)
        if parser is not None:
            parser(rec, into)
        elif extra and tag in extra:
            extra[tag](rec)
        else:
            raise rec.malformed()
    if into.blobbed:
        raise into.blobbed[0].wrong(f"the content of {into.blobbed[0].args[0]} never came (no blob record)")
    return into


@record("uname")
def _uname(rec: Record, into: Collected) -> None:
    into.machine = rec.word()


@record("hostname")
def _hostname(rec: Record, into: Collected) -> None:
    into.hostname = rec.word()


@record("osrelease")
def _osrelease(rec: Record, into: Collected) -> None:
    """``osrelease <base64 of /etc/os-release | ->``"""
    if len(rec.args) != 1:
        raise rec.malformed()
    if rec.args[0] != "-":
        into.os_values = os_release_values(rec.base64(rec.args[0]).decode("utf-8", "replace"))
        into.os_id, into.os_version = into.os_values.get("ID", ""), into.os_values.get("VERSION_ID", "")


def os_release_values(text: str) -> dict[str, str]:
    """/etc/os-release's KEY=value lines, quotes taken off (os-release(5))."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


@record("file")
def _file(rec: Record, into: Collected) -> None:
    """``file <path> present <sha256|-> <mode> <owner> <group> <size> <base64|!blob|!empty|!big|!secret>``,
    ``file <path> missing`` or ``file <path> notafile``."""
    if len(rec.args) < 2 or not PATH_RE.match(rec.args[0]):
        raise rec.malformed()
    path, state = rec.args[0], rec.args[1]
    if path in into.files or any(path == waiting.args[0] for waiting in into.blobbed):
        raise rec.wrong(f"file {path} reported twice")
    if state == "missing" and len(rec.args) == 2:
        into.files[path] = FileFacts(path, exists=False)
    elif state == "notafile" and len(rec.args) == 2:
        into.files[path] = FileFacts(path, exists=True, is_regular=False)
    elif state == "present" and len(rec.args) == 8 and rec.args[7] == "!blob":
        if not rec.args[6].isdigit():
            raise rec.malformed()
        into.blobbed.append(rec)
    elif state == "present" and len(rec.args) == 8:
        # !secret: a private key; its content never leaves the node.
        field_ = rec.args[7]
        into.files[path] = _present(rec, None if field_ in ("!big", "!secret") else b"" if field_ == "!empty"
                                    else rec.base64(field_))
    else:
        raise rec.malformed()


@record("blob")
def _blob(rec: Record, into: Collected) -> None:
    """``blob <base64>``: the contents of the ``!blob`` files before it, one after another, cut by their sizes."""
    if len(rec.args) != 1 or not into.blobbed:
        raise rec.malformed()
    data, at = rec.base64(rec.args[0]), 0
    sizes = [int(waiting.args[6]) for waiting in into.blobbed]
    if len(data) != sum(sizes):
        # Sizes are stat's, content is cat's a moment later: a file written in between.
        raise unreadable(rec.host, f"record {rec.number}: {len(data)} bytes of content for files of {sum(sizes)} "
                         "(one changed while it was read)", hint="retry", output=rec.output)
    for waiting, size in zip(into.blobbed, sizes):
        into.files[waiting.args[0]] = _present(waiting, data[at:at + size])
        at += size
    into.blobbed.clear()


def _present(rec: Record, content: bytes | None) -> FileFacts:
    sha, mode, owner, group, size = rec.args[2:7]
    # The node sends a checksum only with no content (!big, !secret); else it is hashed here.
    if not (_MODE_RE.fullmatch(mode) and size.isdigit() and WORD_RE.match(owner) and WORD_RE.match(group)):
        raise rec.malformed()
    if content is None:
        if not _SHA_RE.match(sha):
            raise rec.malformed()
    else:
        digest = hashlib.sha256(content).hexdigest()
        if len(content) != int(size) or sha not in ("-", digest):
            raise rec.wrong(f"content of {rec.args[0]} does not match its size/checksum")
        sha = digest
    return FileFacts(rec.args[0], True, sha, int(mode, 8), owner, group, int(size), content)


@record("dropin")
def _dropin(rec: Record, into: Collected) -> None:
    """``dropin <unit> <path>`` (its ``file`` record follows) or ``dropin <unit> !odd``
    (a name the script would not send); the path must be one of the unit's drop-in dirs."""
    if len(rec.args) != 2 or not UNIT_RE.match(rec.args[0]):
        raise rec.malformed()
    unit, path = rec.args
    if path == "!odd":
        into.dropins.setdefault(unit, []).append(None)
        return
    dirs = (f"/etc/systemd/system/{unit}.d/", f"/run/systemd/system/{unit}.d/")
    name = path.rsplit("/", 1)[-1]
    if not PATH_RE.match(path) or not name.endswith(".conf") or not any(path == d + name for d in dirs):
        raise rec.wrong(f"drop-in {snippet(path, 60)} is not a drop-in of {unit}")
    into.dropins.setdefault(unit, []).append(path)


@record("unit")
def _unit(rec: Record, into: Collected) -> None:
    """``unit <name> <is-active> <is-enabled>``"""
    if len(rec.args) != 3 or not UNIT_RE.match(rec.args[0]):
        raise rec.malformed()
    name, active, enabled = rec.args
    if not _STATE_RE.match(active) or not _STATE_RE.match(enabled):
        raise rec.malformed()
    into.units[name] = UnitFacts(name, active, enabled)


@record("unithistory")
def _unithistory(rec: Record, into: Collected) -> None:
    """``unithistory <name> <NRestarts|-> <Result|-> <InactiveEnterTimestampMonotonic|->``,
    after the unit's ``unit`` record (and the node's ``uptime``)."""
    if len(rec.args) != 4 or not UNIT_RE.match(rec.args[0]):
        raise rec.malformed()
    name, restarts_field, result, down_field = rec.args
    for number in (restarts_field, down_field):
        if number != "-" and not _COUNT_RE.fullmatch(number):
            raise rec.malformed()
    if result != "-" and not _STATE_RE.match(result):
        raise rec.malformed()
    unit = into.units.get(name)
    if unit is None:
        raise rec.wrong(f"history of unit {name} before its state")
    restarts = None if restarts_field == "-" else int(restarts_field)
    # 0 µs: the unit never went down since boot.
    down = None if down_field in ("-", "0") else int(down_field) / 1e6
    failed = _failed(unit.active, restarts, None if result == "-" else result)
    ago = None if not failed or down is None or into.uptime is None else max(0.0, into.uptime - down)
    into.units[name] = replace(unit, restarts=restarts, failed_ago=ago)


def _failed(active: str, restarts: int | None, result: str | None) -> bool:
    """Whether the unit's last entry into inactive/failed was a death systemd did not ask for.

    From systemd's src/core/service.c (read in the stored copies of v22x,
    v236..v24x and main, commit 8017ed7e):
    - service_enter_dead() passes a dying service through a state that maps to
      ``failed`` (Result != success) or ``inactive`` before Restart= arms its
      timer (main: SERVICE_FAILED/DEAD_BEFORE_AUTO_RESTART, skipped only with
      RestartMode=direct, which piprov's units do not set); unit_notify() in
      src/core/unit.c stamps InactiveEnterTimestamp on each entry into
      inactive/failed, so it is the time of the last death;
    - service_start() sets Result back to success on every start, Restart='s
      included: a Result other than success is seen only while the unit is
      failed or waiting for its restart;
    - service_enter_restart() counts NRestarts; a death without an automatic
      restart (a stop or restart by hand, by piprov too: service_stop() sets
      forbid_restart) sets flush_n_restarts, and the next service_start()
      zeroes the count; ``systemctl reset-failed`` zeroes it at once.
    So a Result other than success is a failure now; NRestarts > 0 means the
    unit died since it was last started by hand and systemd revived it (a
    clean exit under Restart=always counts: it was not asked to stop), unless
    it is inactive: then a stop by hand came after, and the last inactive-enter
    is that stop. Before systemd 235 (no NRestarts) a death that systemd
    already revived is not seen here: the ``unitjournal`` record tells it.
    """
    if result is not None and result != "success":
        return True
    return bool(restarts) and active != "inactive"


@record("unitjournal")
def _unitjournal(rec: Record, into: Collected) -> None:
    """``unitjournal <name> <restarts> <seconds|->``: a service's history on a systemd
    before 235 (no NRestarts), read from its journal by the facts command (``j()`` in
    piprov.facts.command says which messages): how many restarts systemd scheduled by
    Restart= in this boot, and the monotonic time of the last one or of its last entry
    into the failed state, the later of the two.

    After the unit's ``unit`` and ``unithistory`` records (and the node's ``uptime``).
    The journal's last death and unithistory's (a Result other than success: failed
    now) are both failures: the later one is the last. A restart message comes
    RestartSec= after the death it follows, so that time is late by as much.
    """
    if len(rec.args) != 3 or not UNIT_RE.match(rec.args[0]) or not _COUNT_RE.fullmatch(rec.args[1]):
        raise rec.malformed()
    name, count, last = rec.args
    if last != "-" and not _SECONDS_RE.fullmatch(last):
        raise rec.malformed()
    unit = into.units.get(name)
    if unit is None:
        raise rec.wrong(f"journal of unit {name} before its state")
    if unit.restarts is not None:
        raise rec.wrong(f"unit {name} has a restart count from both systemd's NRestarts and its journal")
    ago = unit.failed_ago
    if last != "-" and into.uptime is not None:
        seen = max(0.0, into.uptime - float(last))
        ago = seen if ago is None else min(ago, seen)
    into.units[name] = replace(unit, restarts=int(count), failed_ago=ago)


@record("uptime")
def _uptime(rec: Record, into: Collected) -> None:
    """``uptime <seconds since boot | ->`` (/proc/uptime's first field).

    Failure times are monotonic timestamps (seconds since boot) made into
    "seconds before the facts were read" with it, rather than the node's wall
    clock: a Pi has no RTC, and until NTP answers its clock is wherever
    fake-hwclock left it. /proc/uptime counts CLOCK_BOOTTIME, systemd's
    timestamps CLOCK_MONOTONIC: they differ by the time spent suspended, which
    a Pi of the shelf never is.
    """
    if len(rec.args) != 1 or not (rec.args[0] == "-" or _SECONDS_RE.fullmatch(rec.args[0])):
        raise rec.malformed()
    into.uptime = None if rec.args[0] == "-" else float(rec.args[0])


@record("addr")
def _addr(rec: Record, into: Collected) -> None:
    """``addr <index>: <ifname> inet <local>[/<len>] [peer <peer>/<len>] <attribute>... <label>``:
    the words of one line of `ip -o -4 addr show`, up to its lifetimes.

    The shapes are what iproute2 6.1.0 and busybox 1.35.0 ip printed for
    the same addresses in a network namespace (tests/unit/data/facts/addr/
    holds them): the two print alike (busybox leaves out ``metric``): the local address, then for a point-to-point address
    ``peer`` and the far end carrying the prefix length (``inet 10.8.0.6 peer
    10.8.0.5/32``), then brd/metric/scope and the flags (``secondary``,
    ``dynamic``, ``noprefixroute``, ...), then the label (the interface name,
    or ``eth0:1``). The attributes are skipped but must be plain words; what
    is read is checked: the family, an IPv4 address, a length of 0..32.
    """
    args = rec.args
    if len(args) < 4 or not _INDEX_RE.fullmatch(args[0]) or args[2] != "inet" or not WORD_RE.match(args[1]):
        raise rec.malformed()
    ifname, rest = args[1], list(args[4:])
    local, slash, length = args[3].partition("/")
    peer = None
    if not slash and rest[:1] == ["peer"] and len(rest) >= 2:
        peer, slash, length = rest[1].partition("/")
        rest = rest[2:]
    if not slash or not _is_ipv4(local) or (peer is not None and not _is_ipv4(peer)):
        raise rec.malformed()
    if not _COUNT_RE.fullmatch(length) or int(length) > 32 or not all(WORD_RE.match(w) for w in rest):
        raise rec.malformed()
    label = rest[-1] if rest and rest[-1].startswith(ifname) else None
    into.addresses.append(
        Address(ifname, f"{local}/{int(length)}", peer, None if label == ifname else label, "secondary" in rest)
    )


_INDEX_RE = re.compile(r"[0-9]+:")


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@record("bin")
def _bin(rec: Record, into: Collected) -> None:
    """``bin <name> <absolute path | ->``"""
    if len(rec.args) != 2 or not WORD_RE.match(rec.args[0]):
        raise rec.malformed()
    name, path = rec.args
    if path == "-":
        into.binaries[name] = None
    elif PATH_RE.match(path):
        into.binaries[name] = path
    else:
        raise rec.malformed()


# A version word: what tags and --version outputs hold ("20.10.24+dfsg1",
# "1.11.2", "252", "17.05.0-ce") or not (a wrapper printing "version:"): any
# printable word, judged by the support matrix; a control character or a
# non-ASCII byte is garbage.
_VERSION_WORD_RE = re.compile(r"[!-~]{1,64}")


@record("version")
def _version(rec: Record, into: Collected) -> None:
    """``version <program> <word | ->``: the word its --version printed where the version stands."""
    if len(rec.args) != 2 or not _PROGRAM_NAME_RE.fullmatch(rec.args[0]):
        raise rec.malformed()
    name, word = rec.args
    if name in into.versions:
        raise rec.wrong(f"version of {name} reported twice")
    if word != "-" and not _VERSION_WORD_RE.fullmatch(word):
        raise rec.wrong(f"{name} version {snippet(word, 40)} is not a version word")
    into.versions[name] = None if word == "-" else word


_PROGRAM_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
