"""What piprov owns on a node: the record it keeps there, and the prune of what is no longer desired.

Each node keeps, at :data:`RECORD`, the units and files piprov manages there,
by component, in graph order. The planner compares the record with the
desired state: a unit or file in the record but no longer desired (the node's
role changed, a component left ``playbooks/``, a template's path moved) is a
planned removal like any other change, with its reason, in the reverse order
of the graph. Nothing outside the record is ever removed: a node that runs
something piprov never wrote keeps it.

The record is written in the node's prelude (before any component writes),
after the removals and already naming every desired file: a run cut between
that write and a component's write leaves a record naming a file that does not
exist yet, which the next run writes (nothing is lost: a later prune of it is a
``rm -f``). A run cut before the write keeps the old record, so the removals
are planned again. Pure: the record's text in, typed removals out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from piprov.errors import FactsError, Location
from piprov.facts.model import PATH_RE, UNIT_RE, FileFacts
from piprov.plan.desired import DesiredFile, DesiredNode
from piprov.plan.files import plan_file
from piprov.plan.model import RECORD, Kind, OwnedChange, Removal

FORMAT = "piprov-owned 1"
OWNER = "piprov"  # the record's "component" in a plan
_HEAD = "# What piprov manages on this node, by component in graph order (piprov prunes by it; do not edit).\n"
_COMPONENT_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Owned:
    kind: Kind
    component: str
    name: str  # the unit's name, or the file's absolute path


def owned_of(desired: DesiredNode) -> list[Owned]:
    """What piprov manages on the node once it is as desired, in graph order."""
    out: list[Owned] = []
    for comp, units in desired.units.items():
        out += [Owned("unit", comp, u) for u in units]
        out += [Owned("file", comp, f.path) for f in desired.files_for(comp)]
    return out


def record_file(desired: DesiredNode) -> DesiredFile:
    """The record as the node should have it: root's, world-readable (names only, no secret)."""
    lines = [f"{o.kind} {o.component} {o.name}\n" for o in owned_of(desired)]
    return DesiredFile(RECORD, (_HEAD + FORMAT + "\n" + "".join(lines)).encode(), 0o644, "root", "root", OWNER)


def parse_record(host: str, facts: FileFacts) -> list[Owned]:
    """The node's record (strict: a line piprov did not write is an error naming the host, file and line).

    A record root does not own, or others may write, is refused: removing what
    it names is root's power, so only root may have written it.
    """
    if not facts.exists:
        return []
    text = facts.text
    if text is None or not facts.is_regular:
        raise _bad(host, None, "not a readable text file (larger than the facts limit, binary, or not a file)")
    if facts.owner != "root" or (facts.mode or 0) & 0o022:
        raise _bad(host, None, f"owned by {facts.owner}:{facts.group} with mode {facts.mode or 0:04o}: "
                   "only root may write it (piprov writes it root:root 0644)")
    out: list[Owned] = []
    seen_format = False
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if not seen_format:
            if line != FORMAT:
                raise _bad(host, n, f"expected {FORMAT!r} before any entry, found {line[:60]!r}")
            seen_format = True
            continue
        out.append(_entry(host, n, line))
    return out


def _entry(host: str, n: int, line: str) -> Owned:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] not in ("unit", "file") or not _COMPONENT_RE.match(parts[1]):
        raise _bad(host, n, f"expected 'unit|file COMPONENT NAME', found {line[:80]!r}")
    kind: Kind = "unit" if parts[0] == "unit" else "file"
    comp, name = parts[1], parts[2]
    ok = UNIT_RE.match(name) and "/" not in name if kind == "unit" else (
        PATH_RE.match(name) and not any(p in ("", ".", "..") for p in name.split("/")[1:]) and name != RECORD)
    if not ok:
        raise _bad(host, n, f"not a {'unit name' if kind == 'unit' else 'managed absolute path'}: {name[:80]!r}")
    return Owned(kind, comp, name)


def _bad(host: str, line: int | None, what: str) -> FactsError:
    return FactsError(f"piprov's record of what it owns is garbled: {what}", host=host,
                      location=Location(RECORD, line),
                      hint=f"look at {RECORD} on the node; removing it makes piprov forget what it wrote there "
                      "(nothing is removed, the next `piprov up` writes it anew)")


def plan_owned(desired: DesiredNode, record: FileFacts) -> OwnedChange | None:
    """What the record names that the node no longer needs, newest component first; None: nothing to do."""
    old = parse_record(desired.name, record)
    want_units = set(desired.all_units)
    want_files = set(desired.paths)
    change = OwnedChange()
    for o in reversed(old):
        wanted = want_units if o.kind == "unit" else want_files
        if o.name in wanted or any(r.kind == o.kind and r.name == o.name for r in change.removals):
            continue
        change.removals.append(Removal(o.kind, o.component, o.name, _why(desired, o)))
    change.record = plan_file(record_file(desired), record)
    if change.record is not None and not record.exists:
        change.record = replace(change.record, reason="new: what piprov manages here, for prune and reset")
    return change if change.removals or change.record is not None else None


def _why(desired: DesiredNode, o: Owned) -> str:
    if o.component in desired.switched_off:
        return f"switched off: {desired.switched_off[o.component]}"
    if o.component in desired.units:
        return f"no longer {'a unit' if o.kind == 'unit' else 'a file'} of {o.component}"
    if o.component in desired.known_components:
        return f"role changed: a {desired.node.role} does not run {o.component}"
    return f"component removed: {o.component} is no longer in playbooks/"

