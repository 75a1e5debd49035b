"""`piprov node ...`: work on one node of a running cluster (and `up --rolling`'s output).

The logic lives in piprov.rolling; this module only reads options, prints
progress and decides exit codes.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from piprov import rolling
from piprov.cli.app import EXIT_ERROR, ExitWith, LiveView, err, inventory_option, out
from piprov.errors import PiprovError
from piprov.graph import ComponentGraph, load_graph
from piprov.inventory import Inventory, load
from piprov.inventory.edit import NewNode, add_nodes, remove_node
from piprov.plan import Plan, error_line
from piprov.provision import Fleet, apply_plan, facts_and_plan, run_lock, stop_units

trust_option = click.option(
    "--trust-new-hosts", is_flag=True,
    help="Pin the host key of nodes seen for the first time (trust on first use).",
)


def _say(text: str) -> None:
    err.print(f"  [dim]{escape(text)}[/]")


def _facts_plan(inventory: Inventory, graph: ComponentGraph, fleet: Fleet) -> Plan:
    with err.status("reading facts from every node (one SSH command each)…"):
        return facts_and_plan(inventory, graph, fleet)[1]


@click.group("node")
def node() -> None:
    """Add, drain, remove or re-key one node without taking the cluster down.

    \b
      piprov node add rpi-node-3 --address 192.168.1.103   join a new Pi
      piprov node drain rpi-node-1                          move its pods away
      piprov node uncordon rpi-node-1                       let pods come back
      piprov node remove rpi-node-1                         drain, stop, forget
      piprov node forget-key rpi-node-1                     after re-flashing its card

    A whole-fleet change that restarts kubelets or docker goes node by node
    with `piprov up --rolling`.
    """


# -- add --------------------------------------------------------------------------------------------


@node.command("add")
@click.argument("target", metavar="NAME|ADDRESS")
@click.option("--address", help="The node's address, when NAME is not in the inventory yet.")
@click.option("--name", "new_name", help="The name (hostname) for a node given by ADDRESS "
              "(default: the next free rpi-node-N).")
@click.option("--role", type=click.Choice(["worker"]), default="worker", show_default=True,
              help="Only workers join a running cluster; the master is built by `piprov up`.")
@click.option("--health-timeout", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Give up on any health check after this long.")
@inventory_option
@trust_option
def add_cmd(target: str, address: str | None, new_name: str | None, role: str, health_timeout: float | None,
            inventory_path: Path, trust_new_hosts: bool) -> None:
    """Join one new node to the running cluster; nothing else changes.

    Adds the node to the inventory if it is not there (comments kept), reads
    the facts of the whole fleet and plans it, then applies the plan of the
    new node ONLY: the master's etcd and apiserver are used, not restarted,
    and any change the plan shows on other nodes is reported, not applied.
    Waits until the node is Ready in Kubernetes.

    \b
      piprov node add rpi-node-4 --address 192.168.1.104
      piprov node add 192.168.1.104              named rpi-node-N
      piprov node add rpi-node-4                 already in the inventory
    """
    inv = load(inventory_path)
    name = _resolve_add(inventory_path, inv, target, address, new_name, role)
    inventory, graph = load(inventory_path), load_graph()
    node_ = inventory.node(name)
    if node_.role == "master":
        raise PiprovError(f"{name} is the master: it is built by `piprov up`, not joined with `node add`")
    with run_lock(inventory), Fleet.connect(inventory, policy="tofu" if trust_new_hosts else None) as fleet:
        plan = _facts_plan(inventory, graph, fleet)
        if name in plan.errors:
            raise PiprovError(plan.errors[name], host=None if plan.errors[name].startswith(name) else name,
                              hint="fix the node's SSH access (see `piprov keys`) and run `piprov node add` again")
        others = rolling.other_changes(plan, name)
        for np in plan.nodes:
            if np.node == name:
                continue
            if np.node in others:
                out.print(f"[bold]{escape(np.node)}[/]: [yellow]has changes, NOT applied by node add[/] "
                          f"[dim]({escape('; '.join(others[np.node][:3]))})[/]")
            else:
                out.print(f"[bold]{escape(np.node)}[/]: [green]no change[/]")
        for n, why in plan.errors.items():
            out.print(f"[bold]{escape(n)}[/]: [yellow]could not be planned ({escape(why)}); left alone[/]")
        mine = plan.node(name)
        out.print(f"[bold]{escape(name)}[/] ({mine.address}): " + (
            f"{sum(1 for c in mine.components if c.changed)} components to change" if mine.changed else
            "[green]already as the inventory says[/]"))
        t0 = time.monotonic()
        from piprov.cli.views import Progress, print_report

        progress = Progress(inventory, graph, live=err.is_terminal)
        progress.nodes = [name]
        cancel = threading.Event()
        try:
            with progress:
                report = apply_plan(inventory, graph, plan, fleet, only_nodes=[name], health_timeout=health_timeout,
                                    on_event=progress, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
    print_report(report)
    touched = {s.node for s in report.run.steps.values() if s.status in ("changed", "failed")}
    if not report.run.ok:
        raise ExitWith(EXIT_ERROR)
    api = rolling.api_for(inventory)
    with err.status(f"waiting for {name} ({node_.address}) to be Ready…"):
        ok = rolling.wait_ready(api, rolling.k8s_name(node_), health_timeout or 300)
    if not ok:
        err.print(f"[bold red]✗[/] {escape(name)} did not become Ready in Kubernetes")
        raise ExitWith(EXIT_ERROR)
    err.print(f"[bold green]✓[/] {escape(name)} joined and is Ready in {time.monotonic() - t0:.1f} s; "
              f"nodes changed: {', '.join(sorted(touched)) or 'none'}"
              + (f"; {len(others)} other nodes have pending changes (run `piprov plan`)" if others else
                 "; every other node: no change"))


def _resolve_add(path: Path, inv: Inventory, target: str, address: str | None, new_name: str | None,
                 role: str) -> str:
    for n in inv.nodes:
        if target in (n.name, n.address):
            if address and address != n.address:
                raise PiprovError(f"{n.name} is already in {path} with address {n.address}, not {address}",
                                  hint=f"`piprov inventory set nodes.{n.name}.address {address}` to change it")
            return n.name
    if rolling.is_address(target):
        if address and address != target:
            raise PiprovError(f"two addresses given: {target} and --address {address}")
        address, name = target, new_name
    else:
        if not address:
            raise PiprovError(f"{target} is not in {path}; give its address",
                              hint=f"piprov node add {target} --address 192.168.1.x")
        name = new_name or target
    chosen: list[str] = []

    def plan(current: Inventory) -> list[NewNode]:
        nm = name or rolling.next_worker_name(current)
        chosen.append(nm)
        return [NewNode(nm, str(address), role)]

    add_nodes(path, plan, what=f"add node {name or address}")
    err.print(f"added {escape(chosen[-1])} ({address}) to {path}")
    return chosen[-1]


# -- drain / uncordon ---------------------------------------------------------------------------------


def _k8s_node(inventory_path: Path, target: str) -> tuple[Inventory, str, str]:
    inventory = load(inventory_path)
    n = inventory.node(target)
    return inventory, n.name, rolling.k8s_name(n)


@node.command("drain")
@click.argument("target", metavar="NAME")
@click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True, metavar="SECONDS",
              help="Give up (and uncordon) when pods are still there after this long.")
@click.option("--force", is_flag=True, help="Also evict pods no controller manages (they will not come back).")
@click.option("--keep-cordoned", is_flag=True, help="On failure, leave the node cordoned.")
@inventory_option
def drain_cmd(target: str, timeout: float, force: bool, keep_cordoned: bool, inventory_path: Path) -> None:
    """Move every pod off a node through the eviction API (PodDisruptionBudgets hold).

    Cordons the node (only if it is Ready and schedulable: a node an admin
    cordoned is never uncordoned by piprov), evicts its pods except the
    kubelet's static (mirror) pods, and waits until they are gone. A budget
    that refuses an eviction (429) is named and the eviction retried until
    --timeout. On failure the node is uncordoned again and the exit code is 1.
    """
    inventory, name, kname = _k8s_node(inventory_path, target)
    api = rolling.api_for(inventory)
    err.print(f"draining {escape(name)} ({kname})…")
    res = rolling.drain(api, kname, timeout=timeout, force=force, keep_cordoned=keep_cordoned, say=_say)
    err.print(f"[bold green]✓[/] {escape(name)} drained: {res.message}"
              + (f"; static pods left in place: {len(res.mirror_skipped)}" if res.mirror_skipped else ""))


@node.command("uncordon")
@click.argument("target", metavar="NAME")
@inventory_option
def uncordon_cmd(target: str, inventory_path: Path) -> None:
    """Let the scheduler place pods on a node again."""
    inventory, name, kname = _k8s_node(inventory_path, target)
    changed = rolling.uncordon(rolling.api_for(inventory), kname)
    err.print(f"{escape(name)}: " + ("uncordoned" if changed else "already schedulable"))


# -- remove -------------------------------------------------------------------------------------------


@node.command("remove")
@click.argument("target", metavar="NAME")
@click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True, metavar="SECONDS",
              help="How long the drain may take.")
@click.option("--force", is_flag=True, help="Drain: also evict pods no controller manages.")
@click.option("--unreachable", is_flag=True,
              help="The node is gone (powered off, dead SD card): skip the steps that need SSH to it.")
@inventory_option
@trust_option
def remove_cmd(target: str, timeout: float, force: bool, unreachable: bool, inventory_path: Path,
               trust_new_hosts: bool) -> None:
    """Take a worker out of the cluster for good.

    \b
    1. drain it (stops here if the drain fails: pods are never stranded)
    2. stop and disable its units (SSH; skipped with --unreachable)
    3. release its flannel subnet lease in the master's etcd
    4. delete its Node object
    5. remove it from the inventory (comments kept)
    """
    inventory = load(inventory_path)
    n = inventory.node(target)
    if n.role == "master":
        raise PiprovError(
            f"{n.name} is the master: it runs etcd and the apiserver the whole cluster needs, so it cannot be removed",
            hint="to replace the master, rebuild the cluster: edit the inventory and run `piprov up`")
    graph = load_graph()
    api = rolling.api_for(inventory)
    kname = rolling.k8s_name(n)
    hint = "if the node is gone for good (powered off, dead card), run again with --unreachable"
    with run_lock(inventory), Fleet.connect(inventory, [n.name], policy="tofu" if trust_new_hosts else None) as fleet:
        if not unreachable:
            # Reach it before changing anything: a dead node fails here, not after its drain.
            try:
                fleet.transports[n.name].run("true", timeout=30)
            except PiprovError as e:
                e.hint = f"{e.hint} {hint}" if e.hint else hint
                raise
        if api.node(kname) is not None:
            err.print(f"1/5 draining {escape(n.name)} ({kname})…")
            res = rolling.drain(api, kname, timeout=timeout, force=force, keep_cordoned=False,
                                unreachable=unreachable, say=_say)
            err.print(f"    {res.message}")
        else:
            err.print(f"1/5 {escape(n.name)} has no Node object: nothing to drain")
        if unreachable:
            err.print("2/5 [yellow]skipped[/] stopping units: --unreachable (the node is not contacted)")
        else:
            units = rolling.units_to_stop(graph, n.role)
            try:
                outcome = stop_units(fleet, n.name, units)
            except PiprovError as e:
                e.hint = f"{e.hint} {hint}" if e.hint else hint
                raise
            if not outcome.ok:
                raise PiprovError(f"stopping its units failed: {outcome.detail}", host=n.name, hint=hint)
            err.print(f"2/5 stopped and disabled: {' '.join(units)}")
        gone = rolling.release_flannel_lease(inventory, n.address)
        err.print(f"3/5 flannel lease released: {', '.join(gone) if gone else 'none held'}")
        api.delete_node(kname)
        err.print(f"4/5 Node {kname} deleted")
        remove_node(inventory_path, n.name)
        err.print(f"5/5 {escape(n.name)} removed from {inventory_path}")
    err.print(f"[bold green]✓[/] {escape(n.name)} removed")


# -- up --rolling -------------------------------------------------------------------------------------


SYMBOL = {"pending": "[dim]·[/]", "draining": "[cyan]drain…[/]", "applying": "[cyan]apply…[/]",
          "waiting": "[cyan]ready?…[/]", "uncordoning": "[cyan]uncordon…[/]", "done": "[bold green]✓[/]",
          "failed": "[bold red]✗[/]", "skipped": "[yellow]–[/]"}


class _BatchView(LiveView):
    def __init__(self, results: list[rolling.BatchResult], live: bool) -> None:
        self.results = {r.batch.index: r for r in results}
        self.batches = [r.batch for r in results]
        self.started: dict[int, float] = {}
        # get_renderable: the table is rebuilt on every refresh, so the seconds tick.
        self.live = Live(console=err, refresh_per_second=4, get_renderable=self.table) if live else None

    def table(self) -> Table:
        t = Table(title="piprov up --rolling", title_justify="left", show_edge=False)
        for col in ("batch", "nodes", "drain", "status", "s", "detail"):
            t.add_column(col)
        for b in self.batches:
            r = self.results.get(b.index)
            status = r.status if r else "pending"
            secs = r.seconds if r and r.seconds else (time.monotonic() - self.started[b.index]
                                                     if b.index in self.started else 0.0)
            t.add_row(str(b.index + 1), escape(b.label()), "yes" if b.drain else "no",
                      SYMBOL.get(status, status), f"{secs:.0f}" if secs else "",
                      escape((r.detail if r else "")[:70]))
        return t

    def __call__(self, r: rolling.BatchResult) -> None:
        self.results[r.batch.index] = r
        self.started.setdefault(r.batch.index, time.monotonic())
        if self.live is not None:
            self.live.refresh()
        else:
            err.print(f"batch {r.batch.index + 1}/{len(self.batches)} ({escape(r.batch.label())}): "
                      f"{SYMBOL.get(r.status, r.status)} {r.status}"
                      + (f" [dim]{escape(r.detail[:200])}[/]" if r.status in ("done", "failed") else ""))


def rolling_up(inventory_path: Path, *, trust_new_hosts: bool, as_json: bool, batch: int | None,
               max_unavailable: float | None, health_timeout: float | None, drain_timeout: float = 300.0) -> None:
    """`piprov up --rolling`: the body behind the option (called by cluster.up_cmd)."""
    from piprov.cli.views import plan_summary

    inventory, graph = load(inventory_path), load_graph()
    api = rolling.api_for(inventory)
    with run_lock(inventory), Fleet.connect(inventory, policy="tofu" if trust_new_hosts else None) as fleet:
        plan = _facts_plan(inventory, graph, fleet)
        batches = rolling.rolling_batches(inventory, plan, batch=batch, max_unavailable_pct=max_unavailable)
        err.print(plan_summary(plan))
        if not batches:
            err.print("[green]nothing to roll[/]: no node has changes" + (
                " that could be planned" if plan.errors else ""))
        for b in batches:
            err.print(f"  batch {b.index + 1}: {escape(b.label())} "
                      + ("(drain, apply, wait Ready, uncordon)" if b.drain else "(in place: restarts no kube/docker unit)"))
        cancel = threading.Event()
        apply = rolling.apply_nodes(inventory, graph, plan, fleet, health_timeout=health_timeout, cancel=cancel)
        view = _BatchView([rolling.BatchResult(b) for b in batches], live=err.is_terminal and not as_json)
        try:
            with view:
                report = rolling.run_rollout(
                    inventory, plan, batches, api, apply, drain_timeout=drain_timeout,
                    ready_timeout=health_timeout or 300.0, on_batch=view, say=_say, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
    if report.state_note:
        err.print(f"[dim]{escape(report.state_note)}[/]")
    _print_moves(report)
    if as_json:
        out.print_json(json.dumps(_rollout_json(report)))
    failed = report.failed
    if failed is not None:
        left = [n for r in report.batches if r.status == "skipped" for n in r.batch.nodes]
        err.print(f"[bold red]✗ rollout stopped at batch {failed.batch.index + 1} ({escape(failed.batch.label())})[/]: "
                  f"{escape(failed.detail)}")
        err.print(f"  untouched: {escape(', '.join(left)) or 'none'}. Fix the node, then resume with: "
                  f"piprov up --rolling -i {inventory_path}"
                  + (f" --batch {batch}" if batch else f" --max-unavailable {max_unavailable:g}" if max_unavailable else ""))
    for n, why in report.plan_errors.items():
        err.print(f"[bold red]✗[/] {escape(error_line(n, why))} (not rolled)")
    if not report.ok:
        raise ExitWith(EXIT_ERROR)
    err.print(f"[bold green]✓[/] rollout done: {len(report.batches)} batches in {report.seconds:.1f} s")


def _print_moves(report: rolling.RolloutReport) -> None:
    nodes = sorted(set(report.pods_before) | set(report.pods_after))
    if not nodes:
        return
    t = Table(title="pods per node (what moved where)", title_justify="left", show_edge=False)
    for col in ("node", "before", "after", "arrived", "left"):
        t.add_column(col)
    for n in nodes:
        b, a = set(report.pods_before.get(n, [])), set(report.pods_after.get(n, []))
        t.add_row(escape(n), str(len(b)), str(len(a)), str(len(a - b)), str(len(b - a)))
    err.print(t)


def _rollout_json(report: rolling.RolloutReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "seconds": round(report.seconds, 3),
        "batches": [{"nodes": list(r.batch.nodes), "drain": r.batch.drain, "status": r.status,
                     "seconds": round(r.seconds, 3), "detail": r.detail,
                     "evicted": [p for d in r.drains for p in d.evicted]} for r in report.batches],
        "pods_before": report.pods_before,
        "pods_after": report.pods_after,
        "uncordoned_leftovers": report.uncordoned_leftovers,
        "plan_errors": report.plan_errors,
    }



# forget-key lives with the other key commands; it is a node verb to the user.
from piprov.cli.keys_cmd import forget_key_cmd  # noqa: E402

node.add_command(forget_key_cmd)
