"""`piprov status` as text: node x component health, each component's restarts; a big fleet's healthy
nodes grouped (``fleetview``), the unhealthy ones first and on their own."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.markup import escape
from rich.table import Table

from piprov.cli.app import err, out
from piprov.cli.fleetview import rows_to_show
from piprov.facts import NodeFacts
from piprov.graph import ComponentGraph
from piprov.inventory.model import Node


def _component_state(facts: NodeFacts, units: list[str]) -> str:
    states = [facts.units[u].active if u in facts.units else "unknown" for u in units]
    if all(s == "active" for s in states):
        return "active"
    bad = [f"{u}={s}" for u, s in zip(units, states) if s != "active"]
    return ", ".join(bad)


def _unit_history(facts: NodeFacts, units: list[str]) -> dict[str, dict[str, Any]]:
    """Per unit: its state, systemd's restart count and how long ago it last died, where known."""
    history: dict[str, dict[str, Any]] = {}
    for u in units:
        uf = facts.units.get(u)
        ago = None if uf is None or uf.failed_ago is None else round(uf.failed_ago, 1)
        history[u] = {"active": uf.active if uf else "unknown", "restarts": uf.restarts if uf else None,
                      "last_failure_seconds_ago": ago}
    return history


def _history_text(history: list[dict[str, Any]]) -> str:
    """A component's past over its units, e.g. ``3 restarts, last failure 2 min ago``; empty when none."""
    restarts = sum(h["restarts"] or 0 for h in history)
    agos = [h["last_failure_seconds_ago"] for h in history if h["last_failure_seconds_ago"] is not None]
    parts = [f"{restarts} restart{'s' if restarts != 1 else ''}"] if restarts else []
    if agos:
        parts.append(f"last failure {ago(min(agos))}")
    return ", ".join(parts)


def ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def status_row(node: Node, f: object, graph: ComponentGraph, kn: Any, api_error: str) -> tuple[dict[str, Any], bool]:
    """One node's row of `status`, and whether it is healthy."""
    from piprov.kube.client import is_ready, is_unschedulable

    row: dict[str, Any] = {"node": node.name, "address": node.address, "role": node.role}
    healthy = True
    if not isinstance(f, NodeFacts):
        row["error"] = str(f)
        healthy = False
    else:
        row["hostname"] = f.hostname
        # The node's docker and systemd, as their --version said (None: not installed).
        row["versions"] = {k: f.versions.get(k) for k in ("docker", "systemd")}
        row["components"] = {}
        row["units"] = {}
        for c in graph.for_role(node.role):
            state = _component_state(f, list(c.units))
            row["components"][c.name] = state
            # Restarts are history, not health: a component systemd revived is active.
            row["units"].update(_unit_history(f, list(c.units)))
            healthy &= state == "active"
    row["kubernetes"] = (
        ("Ready" if is_ready(kn) else "NotReady") + (",SchedulingDisabled" if is_unschedulable(kn) else "")
        if kn else ("unknown" if api_error else "not registered")
    )
    healthy &= row["kubernetes"].startswith("Ready")
    return row, healthy


def print_status(rows: list[dict[str, Any]], comps: list[str], api_error: str,
                 units: Mapping[str, Sequence[str]] | None = None) -> None:
    """The status table; ``units`` (component -> its units) adds each component's restarts.

    On a big fleet the rows of nodes with anything to see come first, one each, and the healthy
    nodes whose cells read the same share one row with their names (no address: there are many)."""
    t = Table(show_edge=False, caption="✓ every unit of the component active", caption_justify="left")
    for col in ["node", "address", "role"]:
        t.add_column(col, no_wrap=True)
    for col in comps:
        t.add_column(col.replace("-", "-\n", 1), justify="center")
    t.add_column("kubernetes", no_wrap=True)
    t.add_column("docker/\nsystemd", no_wrap=True)
    cells = [(r["node"], _cells(r, comps, units or {})) for r in rows]
    address = {r["node"]: r["address"] for r in rows}
    for label, row in rows_to_show(cells, rank=lambda row: 1 if row[0] == "healthy" else 0):
        shown = address[label] if label in address else ""
        t.add_row(escape(label), shown, *row[1:])
    out.print(t)
    if api_error:
        err.print(f"[yellow]Kubernetes API: {escape(api_error)}[/]")


def _cells(r: dict[str, Any], comps: list[str], units: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """A node's row after its name and address: ("healthy" or "look", role, cells...)."""
    if "error" in r:
        return ("look", r["role"], f"[red]{escape(r['error'][:60])}[/]", *[""] * (len(comps) - 1),
                r["kubernetes"], "")
    cells = []
    calm = True
    for name in comps:
        s = r["components"].get(name)
        seen = [r.get("units", {})[u] for u in units.get(name, ()) if u in r.get("units", {})]
        past = _history_text(seen)
        calm &= s in (None, "active") and not past
        cell = "" if s is None else "[green]✓[/]" if s == "active" else f"[red]✗ {escape(s)}[/]"
        cells.append(f"{cell} [yellow]{escape(past)}[/]" if cell and past else cell)
    k = r["kubernetes"]
    v = r.get("versions", {})
    calm &= k == "Ready"
    return ("healthy" if calm else "look", r["role"], *cells,
            f"[green]{k}[/]" if k.startswith("Ready") else f"[red]{k}[/]",
            escape(f"{v.get('docker') or '-'}/{v.get('systemd') or '-'}"))
