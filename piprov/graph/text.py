"""Text and Graphviz DOT views of the node DAG and of the component graph (``piprov graph``)."""

from __future__ import annotations

from piprov.graph.dag import NodeDag, Vertex
from piprov.graph.model import ComponentGraph


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dag_text(dag: NodeDag) -> str:
    """Each step, what it waits for, and its health checks."""
    lines: list[str] = []
    for v in dag.vertices:
        preds = dag.predecessors(v)
        after = ", ".join(str(p) for p in preds) if preds else "(start)"
        checks = "; ".join(str(h) for h in dag.health[v])
        lines.append(f"{v}  <- {after}")
        lines.append(f"    health: {checks}")
    return "\n".join(lines) + "\n"


def dag_dot(dag: NodeDag) -> str:
    """Graphviz DOT, one cluster per node."""
    lines = ["digraph piprov {", "  rankdir=LR;", "  node [shape=box];"]
    by_node: dict[str, list[Vertex]] = {}
    for v in dag.vertices:
        by_node.setdefault(v.node, []).append(v)
    for i, (node, vs) in enumerate(by_node.items()):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={_q(node)};")
        for v in vs:
            lines.append(f"    {_q(str(v))} [label={_q(v.component)}];")
        lines.append("  }")
    for e in dag.edges:
        label = ", ".join(h.probe for h in e.gate)
        lines.append(f"  {_q(str(e.required))} -> {_q(str(e.dependent))} [label={_q(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def components_text(graph: ComponentGraph) -> str:
    """The component graph alone (no inventory): what runs where, after what."""
    lines: list[str] = []
    for c in graph.components:
        reqs = ", ".join(str(r) for r in c.requires) or "(nothing)"
        lines.append(f"{c.name} [{', '.join(c.roles)}] requires {reqs}")
        lines.append(f"    units: {' '.join(c.units) or '-'}")
        lines.append(f"    health: {'; '.join(str(h) for h in c.health)}")
    return "\n".join(lines) + "\n"


def components_dot(graph: ComponentGraph) -> str:
    """Graphviz DOT of the components; a requirement on the master is dashed."""
    lines = ["digraph components {", "  rankdir=LR;", "  node [shape=box];"]
    for c in graph.components:
        lines.append(f'  "{c.name}" [label="{c.name}\\n({", ".join(c.roles)})"];')
    for c in graph.components:
        for r in c.requires:
            style = "" if r.on == "same" else f' [style=dashed, label="on {r.on}"]'
            lines.append(f'  "{r.component}" -> "{c.name}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"
