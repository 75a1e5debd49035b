"""Commands on the whole cluster: plan, up, status, graph (kubeconfig: kubeconfig_cmd)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from piprov.cli.app import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, ExitWith, err, inventory_option, out, \
    skip_checks_option, trust_option
from piprov.cli.status_view import print_status, status_row
from piprov.cli.labels_view import apply_labels, label_plan, label_plan_ahead, label_plan_json, print_label_plan
from piprov.cli.views import Progress, checked_plan, checks_json, orphans_json, plan_json, plan_summary, \
    print_node_errors, print_orphans, print_plan, print_report, report_json
from piprov.errors import PiprovError
from piprov.facts import NodeFacts
from piprov.fleet import Fleet, FleetResult
from piprov.graph import ComponentGraph, components_dot, components_text, dag_dot, dag_text, load_graph, node_dag
from piprov.inventory import Inventory, check_images, load
from piprov.inventory.model import HostKeyPolicy
from piprov.keys import default_password_report
from piprov.kube.labels import LabelPlan, label_changes
from piprov.kube.client import orphans
from piprov.plan import Plan
from piprov.provision import ApplyReport, apply_plan, facts_and_plan, gather_facts, run_lock


def _version_notes(inventory: Inventory) -> list[str]:
    """What the master's running etcd and apiserver (their /version) say against the inventory."""
    from piprov.graph.support import check_inventory_versions, running_notes
    from piprov.provision import running_versions

    return running_notes(check_inventory_versions(inventory), running_versions(inventory))


def _load(path: Path) -> tuple[Inventory, ComponentGraph]:
    inventory, graph = load(path), load_graph()
    check_images(inventory, graph.image_names())
    return inventory, graph.for_inventory(inventory)


def _facts_and_plan(inventory: Inventory, graph: ComponentGraph, fleet: Fleet,
                    find_move: bool = True) -> tuple[FleetResult[NodeFacts], Plan]:
    with err.status("reading facts from every node (one SSH command each)…"):
        return facts_and_plan(inventory, graph, fleet, find_move=find_move)


# -- plan -----------------------------------------------------------------------------------------


@click.command("plan")
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (no file contents of secrets).")
@click.option("--no-diff", is_flag=True, help="List changed files without their diffs.")
@trust_option
def plan_cmd(inventory_path: Path, as_json: bool, no_diff: bool, policy: HostKeyPolicy | None) -> None:
    """Show what `piprov up` would change on every node, and why. Changes nothing.

    Reads each node's facts with one SSH command, then compares them with the
    inventory rendered through the templates: file diffs, units that would be
    enabled, restarted or started, the hostname.

    \b
    Exit code: 0 nothing to change, 2 changes to make, 1 error
    (like terraform plan -detailed-exitcode), so scripts can tell drift.
    """
    inventory, graph = _load(inventory_path)
    with Fleet.connect(inventory, policy=policy) as fleet:
        _, plan = _facts_and_plan(inventory, graph, fleet)
    notes = _version_notes(inventory)
    kube_nodes, why = _kube_nodes(inventory)  # one list of the Nodes for both the labels and the orphans
    labels = label_plan(inventory, None if why else kube_nodes)
    strays = orphans(inventory, kube_nodes)
    if as_json:
        out.print_doc({**plan_json(plan), "version_notes": notes, "labels": label_plan_json(labels),
                       "orphans": orphans_json(strays)})
    else:
        print_plan(plan, diffs=not no_diff)
        print_label_plan(labels)
        print_orphans(strays)
        for note in notes:
            err.print(f"[yellow]version:[/] {escape(note)}")
        err.print(plan_summary(plan))
    if plan.errors:
        raise ExitWith(EXIT_ERROR)
    raise ExitWith(EXIT_CHANGES if plan.changed or label_changes(labels) else EXIT_OK)


# -- up ---------------------------------------------------------------------------------------------


@click.command("up")
@inventory_option
@trust_option
@click.option("--json", "as_json", is_flag=True, help="Print the run's result as JSON on stdout.")
@click.option("--plan/--no-plan", "show_plan", default=True, help="Show the plan before applying it.")
@click.option("--health-timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Give up on any health check after this long (default: each check's own timeout "
              "from playbooks/, up to 300 s). Handy to fail fast when something is known broken.")
@click.option("--rolling", is_flag=True,
              help="Apply changes that restart kube or docker units node by node: drain, apply, wait Ready, "
              "uncordon; the master first and alone; stop at the first failed batch (a re-run resumes).")
@click.option("--batch", type=click.IntRange(min=1), metavar="N",
              help="With --rolling: this many workers at a time (default 1).")
@click.option("--max-unavailable", type=click.FloatRange(min=0, max=100), metavar="PCT",
              help="With --rolling: batches of this percentage of the workers (at least one).")
@skip_checks_option
def up_cmd(inventory_path: Path, policy: HostKeyPolicy | None, as_json: bool, show_plan: bool,
           health_timeout: float | None, rolling: bool, batch: int | None, max_unavailable: float | None,
           skip_checks: bool) -> None:
    """Provision the whole cluster: make every node as the inventory says.

    \b
    1. read every node's facts (one SSH command per node, in parallel)
    2. plan: what differs from the inventory rendered through templates/
    3. check the nodes with something to change: the cheap part of
       `piprov check` (all but the SD card's write measure), one SSH command
       each; a node with a failing finding is refused (nothing is applied
       there, what needs it is skipped), the others go ahead
    4. apply along ONE dependency graph (playbooks/), node x component, in
       parallel where independent; each step waits on real health checks
       (unit active, socket answers, /health, node Ready), never on a sleep.

    The master moved (the inventory's roles swapped: the new master's record
    shows it was a worker, the old one still runs etcd): before step 4, etcd's
    store follows it, `piprov backup` on the old master (the file kept in
    <inventory>.backups/), `piprov restore`'s steps on the new one; step 4 then
    makes the old master a worker. Afterwards `piprov kubeconfig` again: the
    apiserver moved.

    A re-run with nothing to change changes nothing and restarts nothing.
    A failed step stops only what depends on it; the summary names node,
    component and the last probe output. Only one `up` runs per cluster.

    \b
    With --rolling (a running cluster; e.g. after an image-tag edit):
      piprov up --rolling --batch 1          one worker at a time
      piprov up --rolling --max-unavailable 25
    """
    if (batch is not None or max_unavailable is not None) and not rolling:
        raise click.UsageError("--batch and --max-unavailable go with --rolling")
    if batch is not None and max_unavailable is not None:
        raise click.UsageError("give --batch or --max-unavailable, not both")
    if rolling:
        from piprov.cli.rolling_cmd import rolling_up

        rolling_up(inventory_path, policy=policy, as_json=as_json, batch=batch,
                   max_unavailable=max_unavailable, health_timeout=health_timeout, skip_checks=skip_checks)
        return
    inventory, graph = _load(inventory_path)
    ok, doc = run_up(inventory, graph, policy, as_json=as_json, show_plan=show_plan, health_timeout=health_timeout,
                     skip_checks=skip_checks)
    if as_json:
        out.print_doc(doc)
    if not ok:
        raise ExitWith(EXIT_ERROR)


def run_up(inventory: Inventory, graph: ComponentGraph, policy: HostKeyPolicy | None, *, as_json: bool,
           show_plan: bool, health_timeout: float | None, skip_checks: bool,
           restored: bool = False) -> tuple[bool, dict[str, Any]]:
    """The whole of `piprov up` but its --json print (also the last step of `piprov restore`, ``restored``:
    the master's store was just put back): ok, the JSON."""
    moved: list[dict[str, Any]] = []
    with run_lock(inventory):
        labels = label_plan_ahead(inventory)  # needed at once when nothing else is to do
        with Fleet.connect(inventory, policy=policy) as fleet:
            _, plan = _facts_and_plan(inventory, graph, fleet, find_move=not restored)
            if not plan.changed and not plan.errors:
                return _nothing_else(plan, fleet, labels())
            plan, checks = checked_plan(inventory, graph, plan, fleet, skip=skip_checks)
            if plan.move is not None:
                if show_plan and not as_json:
                    print_plan(plan, diffs=False)
                moved = _move_store(inventory, graph, fleet, plan)
                _, plan = _facts_and_plan(inventory, graph, fleet, find_move=False)
            report = _apply(inventory, graph, plan, fleet, as_json, show_plan and not moved, health_timeout)
    print_report(report)
    labels_ok = apply_labels(inventory) if report.run.ok else True
    ok = report.run.ok and not plan.errors and labels_ok
    if not ok:
        print_node_errors(plan)
    doc = {**report_json(report, plan), "checks": checks_json(checks)}
    return ok, {**doc, "master_move": moved} if moved else doc


def _move_store(inventory: Inventory, graph: ComponentGraph, fleet: Fleet, plan: Plan) -> list[dict[str, Any]]:
    """plan.move's backup and restore (``restore.move``), each step printed; its steps as JSON."""
    from piprov.restore.move import move_store

    assert plan.move is not None
    for n in (plan.move.old, plan.move.new):
        if n in plan.errors:
            raise plan.errors[n]
    steps = move_store(inventory, graph, fleet, plan.move, say=lambda s: err.print(f"[dim]{escape(s)}[/]"))
    for s in steps:
        err.print(f"[green]✓[/] move: {s.name:<9} {escape(s.detail)} [dim]({s.seconds:.1f} s)[/]")
    return [{"step": s.name, "detail": s.detail, "seconds": round(s.seconds, 1)} for s in steps]


def _apply(inventory: Inventory, graph: ComponentGraph, plan: Plan, fleet: Fleet, as_json: bool,
           show_plan: bool, health_timeout: float | None) -> ApplyReport:
    if show_plan and not as_json:
        print_plan(plan, diffs=False)
    err.print(plan_summary(plan))
    cancel = threading.Event()
    progress = Progress(inventory, graph, live=err.is_terminal and not as_json)
    try:
        with progress:
            return apply_plan(inventory, graph, plan, fleet, on_event=progress, cancel=cancel,
                              health_timeout=health_timeout)
    except KeyboardInterrupt:
        cancel.set()
        raise


def _nothing_else(plan: Plan, fleet: Fleet, read: LabelPlan) -> tuple[bool, dict[str, Any]]:
    """Every node as the inventory says: only the Node labels may still differ."""
    labels = label_changes(read)
    if labels and not apply_labels(fleet.inventory):
        return False, {"ok": False, "changed": True, "round_trips": fleet.round_trips()}
    err.print(f"[green]nothing {'else ' if labels else ''}to do[/]: all {len(plan.nodes)} nodes are as the "
              f"inventory says ({sum(fleet.round_trips().values())} SSH round trips)")
    return True, {"ok": True, "changed": bool(labels), "round_trips": fleet.round_trips()}


# -- status -------------------------------------------------------------------------------------------


@click.command("status")
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="Print node x component health as JSON.")
@trust_option
def status_cmd(inventory_path: Path, as_json: bool, policy: HostKeyPolicy | None) -> None:
    """Show node x component health: units active, node Ready in Kubernetes.

    Each component also shows how often systemd restarted its units by their
    Restart= and how long ago one last failed, since it was last started by hand
    (or by piprov) in this boot: a flapping component is seen even while it is
    active. Before systemd 235 (no restart counter) both come from the journal
    and cover the whole boot.

    Also warns about nodes that still accept the HypriotOS default password
    (pirate/hypriot): it tries it, over a connection whose host key matched
    known_hosts first; fix them with `piprov keys --disable-password`.

    Exit code 0 when every component is active and every node Ready, 1 otherwise.
    """
    inventory, graph = _load(inventory_path)
    with Fleet.connect(inventory, policy=policy) as fleet:
        with err.status("reading facts…"):
            facts = gather_facts(inventory, graph, fleet)
            default_pw = default_password_report(inventory)
    k8s, api_error = _kube_nodes(inventory)
    from piprov.graph.support import check_inventory_versions, running_notes, security_notes
    from piprov.provision import running_versions

    running = running_versions(inventory)
    selection = check_inventory_versions(inventory)
    notes, guarded = running_notes(selection, running), security_notes(selection)
    rows: list[dict[str, Any]] = []
    healthy = True
    for node in inventory.nodes:
        row, ok = status_row(node, facts.get(node.name), graph, k8s.get(node.address) or k8s.get(node.name),
                              api_error)
        row["default_password"] = default_pw.get(node.name)
        rows.append(row)
        healthy &= ok
    from piprov.pki import expiry_warnings

    cert_warnings = expiry_warnings(inventory)
    strays = orphans(inventory, k8s)
    if as_json:
        out.print_doc({"healthy": healthy, "nodes": rows, "api_error": api_error or None,
                                   "orphans": orphans_json(strays),
                                   "running": {"etcd": running["etcd"], "apiserver": running["hyperkube"]},
                                   "version_notes": notes, "certificate_warnings": cert_warnings,
                                   "firewalled": guarded})
    else:
        print_status(rows, [c.name for c in graph.components], api_error,
                      {c.name: list(c.units) for c in graph.components})
        err.print(f"running on the master: etcd {running['etcd'] or '?'}, apiserver {running['hyperkube'] or '?'}")
        for note in notes:
            err.print(f"[yellow]version:[/] {escape(note)}")
        for note in guarded:
            err.print(f"[dim]firewalled:[/] {escape(note)}")
    for w in cert_warnings:
        err.print(f"[bold yellow]warning:[/] {escape(w)}")
    print_orphans(strays)
    on_default = [n for n, v in default_pw.items() if v]
    if on_default:
        err.print(f"[bold yellow]warning:[/] {', '.join(escape(n) for n in on_default)} still accept "
                  "the default password (pirate/hypriot): run `piprov keys --disable-password`")
    if not healthy:
        raise ExitWith(EXIT_ERROR)


def _kube_nodes(inventory: Inventory) -> tuple[dict[str, Any], str]:
    """The cluster's Node objects by name, or why the API could not say."""
    from piprov.kube.client import api_for

    try:
        api = api_for(inventory, timeout=3)  # refuses a documentation address before any packet
        return {n["metadata"]["name"]: n for n in api.nodes()}, ""
    except PiprovError as e:
        return {}, e.message


# -- graph ------------------------------------------------------------------------------------------------


@click.command("graph")
@inventory_option
@click.option("--dot", is_flag=True, help="Graphviz DOT (pipe into `dot -Tsvg`).")
@click.option("--components", is_flag=True, help="The component graph alone, without the inventory's nodes.")
def graph_cmd(inventory_path: Path, dot: bool, components: bool) -> None:
    """Print the dependency graph that orders `piprov up` and the units' After=/Wants=/Requires=.

    Without --components: every (node, component) step, what it waits for and
    its health checks, for the nodes of the inventory.
    """
    graph = load_graph()
    if components or not inventory_path.exists():
        sys.stdout.write(components_dot(graph) if dot else components_text(graph))
        return
    inventory = load(inventory_path)
    check_images(inventory, graph.image_names())
    dag = node_dag(graph, inventory)
    sys.stdout.write(dag_dot(dag) if dot else dag_text(dag))
