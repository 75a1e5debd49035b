"""How plans, progress and run reports look: shared by the cluster and node commands."""

from __future__ import annotations

import statistics
import threading
from typing import Any, Iterable, Sequence

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from piprov.check import NodeCheck
from piprov.cli.app import LiveView, err, error_line, out
from piprov.cli.fleetview import BIG_GRID, GROUP_AT, grouped, names_text, rows_to_show
from piprov.errors import CheckRefused
from piprov.fleet import Fleet
from piprov.graph import ComponentGraph, Vertex
from piprov.inventory import Inventory
from piprov.kube.client import orphan_fix
from piprov.orchestrate import Event, StepResult
from piprov.plan import ComponentPlan, EtcdKeyChange, FileChange, HostnameChange, NodePlan, OwnedChange, Plan
from piprov.provision import ApplyReport, preflight
from piprov.shell.script import commands

SYMBOL = {
    "pending": "[dim]·[/]",
    "running": "[cyan]…[/]",
    "unchanged": "[green]=[/]",
    "changed": "[bold green]✓[/]",
    "failed": "[bold red]✗[/]",
    "skipped": "[yellow]–[/]",
}


def step_detail(s: StepResult) -> str:
    """What a step did or why it failed; a step a PiprovError failed shows it with its hint (a refused node's
    steps only name the findings: the run's end says what they break and the fix)."""
    if isinstance(s.error, CheckRefused):
        return f"{s.error.host}: refused by the preflight check: {s.error.named}"
    return error_line(s.error) if s.error is not None else s.detail


# -- the plan as JSON (no file contents: secrets stay out) ---------------------------------------


def file_json(f: FileChange) -> dict[str, Any]:
    return {
        "path": f.path,
        "mode": f"{f.mode:04o}",
        "owner": f"{f.owner}:{f.group}",
        "old_sha256": f.old_sha256,
        "new_sha256": f.new_sha256,
        "reason": f.reason,
        "diff": None if f.secret else f.diff,
    }


def etcd_key_json(k: EtcdKeyChange) -> dict[str, Any]:
    return {"key": k.key, "value": k.value, "old_value": k.old_value, "reason": k.reason}


def hostname_json(hc: HostnameChange) -> dict[str, Any]:
    return {
        "old": hc.old,
        "new": hc.new,
        "method": hc.method,
        "reason": hc.reason,
        "files": [file_json(f) for f in hc.files],
        "commands": commands(hc.actions),
    }


def component_json(cp: ComponentPlan) -> dict[str, Any]:
    return {
        "component": cp.component,
        "changed": cp.changed,
        "reasons": list(cp.reasons),
        "files": [file_json(f) for f in cp.files],
        "removed": [{"path": r.path, "unit": r.unit, "reason": r.reason} for r in cp.remove],
        "daemon_reload": cp.daemon_reload,
        "unmask": list(cp.unmask),
        "enable": list(cp.enable),
        "restart": list(cp.restart),
        "start": list(cp.start),
        "etcd_keys": [etcd_key_json(k) for k in cp.etcd_keys],
    }


def owned_json(oc: OwnedChange) -> dict[str, Any]:
    return {
        "removed": [{"kind": r.kind, "component": r.component, "name": r.name, "reason": r.reason}
                    for r in oc.removals],
        "record": file_json(oc.record) if oc.record is not None else None,
    }


def node_json(np: NodePlan) -> dict[str, Any]:
    return {
        "node": np.node,
        "address": np.address,
        "changed": np.changed,
        "hostname": hostname_json(np.hostname_change) if np.hostname_change else None,
        "owned": owned_json(np.owned) if np.owned else None,
        "components": [component_json(c) for c in np.components],
    }


def plan_errors_json(plan: Plan) -> dict[str, str]:
    return {node: error_line(e) for node, e in plan.errors.items()}


def plan_json(plan: Plan) -> dict[str, Any]:
    m = plan.move
    move = None if m is None else {"old": m.old, "new": m.new, "component": m.component, "steps": m.steps}
    return {"changed": plan.changed, "master_move": move, "nodes": [node_json(n) for n in plan.nodes],
            "errors": plan_errors_json(plan)}


# -- the plan as text -----------------------------------------------------------------------------


def print_plan(plan: Plan, *, diffs: bool = True) -> None:
    """The plan, node by node; nodes whose changes read the same are said once with their names
    (``fleetview``: a big fleet), the diffs then the first node's."""
    if plan.move is not None:
        out.print(f"[bold yellow]master moves[/] from {escape(plan.move.old)} to {escape(plan.move.new)} "
                  f"(the inventory's roles): first")
        for i, step in enumerate(plan.move.steps, 1):
            out.print(f"  {i}. {escape(step)}")
    bodies = {np.node: _plan_lines(np) for np in plan.nodes}
    by_node = {np.node: np for np in plan.nodes}
    for lines, names in grouped((np.node, tuple(line for line, _ in bodies[np.node])) for np in plan.nodes):
        together = len(names) >= GROUP_AT
        for name in names[:1] if together else names:
            np = by_node[name]
            head = f"[bold]{escape(names_text(names))}[/]" if together else \
                f"[bold]{escape(np.node)}[/] ({np.address})"
            if not np.changed:
                out.print(f"{head}: [green]no change[/]")
                continue
            out.print(f"{head}:" + (f" [dim](the same changes; the diffs are {escape(name)}'s)[/]" if together else ""))
            for line, diff in bodies[name]:
                out.print(line)
                if diffs and diff:
                    from rich.syntax import Syntax  # pygments: only when there is a diff

                    out.print(Syntax(diff.rstrip("\n"), "diff", theme="ansi_dark", background_color="default"))
    for e in plan.errors.values():
        if isinstance(e, CheckRefused):  # what each finding breaks and its fix: at the run's end
            out.print(f"[red]refused[/] {escape(f'{e.host}: by the preflight check: {e.named}')}")
        else:
            out.print(f"[red]cannot plan[/] {escape(error_line(e))}")


def _plan_lines(np: NodePlan) -> list[tuple[str, str | None]]:
    """A node's planned changes as text lines, each with the diff shown under it (None: no diff or a secret)."""
    lines: list[tuple[str, str | None]] = []
    if np.hostname_change:
        hc = np.hostname_change
        lines.append((f"  [yellow]~[/] hostname {escape(hc.old)} -> {escape(hc.new)} ({hc.method})", None))
    if np.owned:
        lines.extend((line, None) for line in owned_lines(np.owned))
    for cp in np.components:
        if not cp.changed:
            continue
        lines.append((f"  [yellow]~[/] [bold]{cp.component}[/]", None))
        for f in cp.files:
            sign = "+" if f.old_sha256 is None else "~"
            lines.append((f"      {sign} {escape(f.path)}  [dim]({escape(f.reason)})[/]",
                          f.diff if f.diff and not f.secret else None))
        for r in cp.remove:
            lines.append((f"      [red]-[/] {escape(r.path)}  [dim]({escape(r.reason)})[/]", None))
        # In the order the node runs them (ComponentPlan.unit_actions).
        if cp.enable:
            lines.append((f"      [magenta]enable[/] {' '.join(cp.enable)}", None))
        if cp.daemon_reload:
            lines.append(("      systemctl daemon-reload", None))
        for verb, units in (("restart", cp.restart), ("start", cp.start)):
            if units:
                lines.append((f"      [magenta]{verb}[/] {' '.join(units)}", None))
        for k in cp.etcd_keys:
            lines.append((f"      etcd key {escape(k.key)} [dim]({escape(k.reason)})[/]", None))
    return lines


def owned_lines(oc: OwnedChange) -> list[str]:
    """The prune, in the order the node runs it, then the record (its diff is names only: no secret)."""
    lines = [f"  [red]-[/] {'stop, disable' if r.kind == 'unit' else 'remove'} {escape(r.name)}  "
             f"[dim]({escape(r.reason)})[/]" for r in oc.removals]
    if oc.record is not None:
        lines.append(f"  [yellow]~[/] {escape(oc.record.path)}  [dim]({escape(oc.record.reason)})[/]")
    return lines


def orphans_json(names: Sequence[str]) -> list[dict[str, str]]:
    return [{"node": n, "fix": orphan_fix(n)} for n in names]


def print_orphans(names: Sequence[str]) -> None:
    """Node objects of no inventory node: said with the command that removes each; nothing removes them unasked."""
    for n in names:
        err.print(f"[yellow]orphan:[/] Node {escape(n)} is no inventory node's; to remove it: {escape(orphan_fix(n))}")


def plan_summary(plan: Plan) -> str:
    changed = [n for n in plan.nodes if n.changed]
    restarts = sum(len(c.restart) for n in plan.nodes for c in n.components)
    files = sum(len(c.files) for n in plan.nodes for c in n.components)
    removed = sum(len(c.remove) for n in plan.nodes for c in n.components)
    pruned = sum(len(n.owned.removals) for n in plan.nodes if n.owned)
    return (
        (f"the master moves from {plan.move.old} to {plan.move.new}; " if plan.move else "")
        + f"{len(changed)} of {len(plan.nodes) + len(plan.errors)} nodes to change: "
        f"{files} files" + (f", {removed} drop-ins removed" if removed else "") + f", {restarts} unit restarts"
        + (f", {pruned} units and files no longer needed removed" if pruned else "")
        + (f"; {len(plan.errors)} nodes refused or could not be planned" if plan.errors else "")
    )


# -- the cheap checks of `up` and `node add` ------------------------------------------------------------


def checked_plan(inventory: Inventory, graph: ComponentGraph, plan: Plan, fleet: Fleet, *, skip: bool = False,
                 names: Iterable[str] | None = None) -> tuple[Plan, list[NodeCheck]]:
    """provision.preflight under a spinner, its warnings one line per node (``skip``: --skip-checks)."""
    if skip:
        return plan, []
    with err.status("checking the nodes to change (one SSH command each)…"):
        plan, checks = preflight(inventory, graph, plan, fleet, names=names)
    print_check_warnings(checks)
    return plan, checks


def print_check_warnings(checks: Sequence[NodeCheck]) -> None:
    """One line per node with warnings (they do not refuse it), nodes with the same warnings on one
    line; a refusal is said with the node's errors."""
    lines = []
    for c in checks:
        warned = [f for f in c.findings if f.severity == "warn"]
        if warned and not c.failed:
            lines.append((c.node, ", ".join(f"{f.title} ({f.code})" for f in warned)))
    for words, names in grouped(lines):
        who = names_text(names) if len(names) >= GROUP_AT else None
        for name in [who] if who else names:
            err.print(f"[yellow]! {escape(name)}[/]: {escape(words)}"
                      f" [dim](warnings; `piprov check {escape(names[0])}` says what they break)[/]")


def print_node_errors(plan: Plan) -> None:
    """The nodes left alone, at the end of a run: a refusal with each finding's breaks and fix on its own lines."""
    for e in plan.errors.values():
        if not isinstance(e, CheckRefused):
            err.print(f"[bold red]✗[/] {escape(error_line(e))}")
            continue
        err.print(f"[bold red]✗ {escape(str(e.host))}[/]: refused by the preflight check, nothing was applied there:")
        for f in e.findings:
            err.print(f"  [bold red]✗[/] {escape(f['title'])} [dim]({escape(f['code'])})[/]: {escape(f['breaks'])}")
            err.print(f"    [bold]fix:[/] {escape(f['fix'])}")
        err.print(f"  [yellow]hint:[/] {escape(e.hint or '')}")


def checks_json(checks: Sequence[NodeCheck]) -> dict[str, Any]:
    """Per node checked: refused or not, why it could not be checked, its warn and fail findings' words."""
    keys = ("code", "title", "severity", "detail", "breaks", "fix")
    return {c.node: {"refused": c.worst == "fail", "error": error_line(c.error) if c.error else None,
                     "findings": [{k: getattr(f, k) for k in keys} for f in c.findings if f.severity != "ok"]}
            for c in checks}


class Progress(LiveView):
    """Live node x component grid on a terminal; one line per finished step otherwise."""

    def __init__(self, inventory: Inventory, graph: ComponentGraph, live: bool) -> None:
        self.nodes = [n.name for n in inventory.nodes]
        self.components = [c.name for c in graph.components]
        self.state: dict[tuple[str, str], str] = {}
        for n in inventory.nodes:
            for c in graph.for_role(n.role):
                self.state[(n.name, c.name)] = "pending"
        self.lock = threading.Lock()
        self.live = Live(self.table(), console=err, refresh_per_second=8, transient=False) if live else None

    def table(self) -> Table:
        t = Table(title="piprov up", title_justify="left", show_edge=False, pad_edge=False)
        t.add_column("node")
        for c in self.components:
            t.add_column(c, justify="center")
        rows = [(n, tuple(self.state.get((n, c), "") for c in self.components)) for n in self.nodes]
        for label, row in rows_to_show(rows, rank=_urgency):
            t.add_row(escape(label), *(SYMBOL.get(s, "") for s in row))
        return t

    def __call__(self, e: Event) -> None:
        with self.lock:
            if e.kind == "start":
                self.state[(e.node, e.component)] = "running"
            elif e.kind == "done" and e.result is not None:
                self.state[(e.node, e.component)] = e.result.status
                if self.live is None and e.result.status != "unchanged":
                    r = e.result
                    err.print(f"{SYMBOL[r.status]} {escape(r.node)} {r.component}: {r.status}"
                              f" [dim]{r.seconds:.1f}s {escape(step_detail(r)[:100])}[/]")
            if self.live is not None:
                self.live.update(self.table())


def _urgency(row: tuple[str, ...]) -> int:
    """A grid row's place on a crowded screen: a failure first, then a node still at work."""
    return 0 if "failed" in row else 1 if "running" in row else 2


def print_report(report: ApplyReport) -> None:
    steps = list(report.run.steps.values())
    changed = [s for s in steps if s.status == "changed"]
    if changed:
        err.print(_changed_table(changed))
    for s in report.run.failed:
        err.print(f"[bold red]✗ {escape(s.node)} / {s.component}[/]: {escape(step_detail(s))}")
    skipped = report.run.skipped
    if skipped:
        err.print(f"[yellow]{len(skipped)} steps not started[/] because something they depend on failed:")
        for (component, detail), names in grouped((s.node, (s.component, s.detail)) for s in skipped):
            for who in [names_text(names)] if len(names) >= GROUP_AT else names:
                err.print(f"  – {escape(who)} / {component}: {escape(detail)}")
    cp, chain = report.critical_path()
    wall = report.run.wall_seconds
    trips = ", ".join(f"{escape(names_text(names))}={count}" if len(names) >= GROUP_AT else
                      ", ".join(f"{escape(n)}={count}" for n in names)
                      for count, names in grouped(report.round_trips.items()))
    err.print(
        f"[bold]{len(changed)} changed, {len(steps) - len(changed) - len(report.run.failed) - len(skipped)} unchanged, "
        f"{len(report.run.failed)} failed, {len(skipped)} skipped[/] in {wall:.1f} s "
        f"(critical path {cp:.1f} s: {' -> '.join(str(v) for v in chain) or '-'}); SSH round trips: {trips}"
    )


def _changed_table(changed: Sequence[StepResult]) -> Table:
    """Each changed step; on a big fleet, one row per component with its spread and its slowest node."""
    t = Table(title="steps that changed something", title_justify="left", show_edge=False)
    if len(changed) <= BIG_GRID:
        for col in ("node", "component", "apply s", "health wait s", "what"):
            t.add_column(col)
        for s in sorted(changed, key=lambda s: s.started):
            t.add_row(escape(s.node), s.component, f"{s.apply_seconds:.1f}", f"{s.wait_seconds:.1f}",
                      escape(s.detail[:80]))
        return t
    for col in ("component", "nodes", "apply s median / max", "health wait s median / max", "slowest"):
        t.add_column(col)
    by_comp: dict[str, list[StepResult]] = {}
    for s in sorted(changed, key=lambda s: s.started):
        by_comp.setdefault(s.component, []).append(s)
    for comp, ss in by_comp.items():
        slowest = max(ss, key=lambda s: s.seconds)
        t.add_row(comp, str(len(ss)), _spread([s.apply_seconds for s in ss]), _spread([s.wait_seconds for s in ss]),
                  f"{escape(slowest.node)} {slowest.seconds:.1f} s")
    return t


def _spread(xs: Sequence[float]) -> str:
    return f"{statistics.median(xs):.1f} / {max(xs):.1f}"


def report_json(report: ApplyReport, plan: Plan) -> dict[str, Any]:
    def step(v: Vertex, s: StepResult) -> dict[str, Any]:
        return {
            "node": s.node, "component": s.component, "status": s.status,
            "apply_seconds": round(s.apply_seconds, 3), "wait_seconds": round(s.wait_seconds, 3),
            "detail": step_detail(s),
        }

    cp, chain = report.critical_path()
    return {
        "ok": report.run.ok,
        "wall_seconds": round(report.run.wall_seconds, 3),
        "critical_path_seconds": round(cp, 3),
        "critical_path": [str(v) for v in chain],
        "round_trips": report.round_trips,
        "steps": [step(v, s) for v, s in report.run.steps.items()],
        "plan_errors": plan_errors_json(plan),
    }
