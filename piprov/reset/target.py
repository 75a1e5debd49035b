"""What a reset touches on one node (pure): the playbooks' components for its role, their ``leaves``
(graph.leaves), and piprov's record of what it wrote there (plan.owned).

The record says what piprov wrote; the playbooks' paths and units for the
node's role are added, so a node whose record was lost (or a run cut before
its first write) is reset as well. Names are checked against the same
patterns the facts accept: they go into the script unquoted-safe.
"""

from __future__ import annotations

import re

from piprov.errors import PlanError
from piprov.facts.model import PATH_RE, UNIT_RE, NodeFacts
from piprov.graph import ComponentGraph, render_expression
from piprov.inventory.model import Inventory, Node
from piprov.plan.model import RECORD
from piprov.plan.owned import parse_record
from piprov.reset.model import ResetTarget, Stage

_WORD_RE = re.compile(r"^[A-Za-z0-9._/:-]+$")
_CIDR_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")


def reset_target(inventory: Inventory, graph: ComponentGraph, node: Node, facts: NodeFacts, *,
                 wipe_data: bool = False) -> ResetTarget:
    """Raises FactsError for a garbled record (naming host, file and line) and PlanError for a
    playbook value that renders to something unsafe."""
    owned = parse_record(node.name, facts.file(RECORD))
    comps = list(graph.for_role(node.role))
    ctx = {"network": inventory.network, "vars": graph.vars, "node": node, "master": inventory.master}

    def render(text: str, pattern: re.Pattern[str]) -> str:
        out = render_expression(text, ctx)
        if not pattern.match(out):
            raise PlanError(f"a playbook's leaves value renders to {out[:60]!r}, not a safe name",
                            host=node.name, hint="see `leaves` in playbooks/")
        return out

    recorded_units = [o.name for o in owned if o.kind == "unit"]
    stages: list[Stage] = []
    for c in reversed(comps):
        host = c.leaves.containers.host if c.leaves.containers else None
        stages.append(Stage(c.name, c.units, render(host, _WORD_RE) if host else None))
    # Units the record names that the role's components do not (a role since changed, a component since
    # removed) stop first: nothing of the current stack depends on them.
    known = {u for s in stages for u in s.units}
    extra = tuple(u for u in dict.fromkeys(recorded_units) if u not in known and UNIT_RE.match(u))
    if extra:
        stages.insert(0, Stage("recorded", extra))
    files = [o.name for o in owned if o.kind == "file"] + graph.managed_paths(node.role)
    leaves = [c.leaves for c in comps]
    return ResetTarget(
        node=node.name,
        stages=tuple(stages),
        files=tuple(f for f in dict.fromkeys(files) if PATH_RE.match(f)),
        paths=tuple(dict.fromkeys(p for lv in leaves for p in lv.paths)),
        data=tuple(dict.fromkeys(p for lv in leaves for p in lv.data)),
        interfaces=tuple(dict.fromkeys(i for lv in leaves for i in lv.interfaces)),
        chains=tuple(dict.fromkeys(ch for lv in leaves for ch in lv.iptables_chains)),
        matches=tuple(dict.fromkeys(render(m, _WORD_RE) for lv in leaves for m in lv.iptables_match)),
        routes=tuple(dict.fromkeys(render(c, _CIDR_RE) for lv in leaves for c in lv.routes_in)),
        forward_policy=next((lv.forward_policy for lv in leaves if lv.forward_policy), None),
        container_roots=tuple(lv.containers.root for lv in leaves if lv.containers),
        docker=_program(graph, facts, "docker"),
        iptables=tuple(_program(graph, facts, p) for p in ("iptables", "ip6tables")
                       if p in graph.binary_paths or facts.binaries.get(p)),
        record=RECORD,
        wipe_data=wipe_data,
    )


def _program(graph: ComponentGraph, facts: NodeFacts, name: str) -> str:
    found = facts.binaries.get(name)
    path = found or graph.binary_paths.get(name, f"/usr/bin/{name}")
    if not PATH_RE.match(path):
        raise PlanError(f"the path of {name} is not a safe name: {path[:60]!r}", host=facts.host)
    return path
