"""`piprov node ...`: work on one node of a running cluster.

The procedures live in piprov.kube.procedures; this module only reads
options, renders their progress and decides exit codes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import click
from rich.markup import escape

from piprov.cli.app import EXIT_ERROR, ExitWith, err, error_line, inventory_option, out, skip_checks_option, \
    trust_option
from piprov.cli.rolling_cmd import say
from piprov.cli.views import Progress, checked_plan, print_report
from piprov.graph import ComponentGraph, load_graph
from piprov.inventory import Inventory, check_images, load
from piprov.inventory.model import HostKeyPolicy, Node
from piprov.kube.client import api_for, k8s_name
from piprov.kube.drain import DrainResult, drain, uncordon
from piprov.kube.pods import DrainOptions
from piprov.kube.procedures import NodeAddition, NodeRemoval, StepEvent, refuse_removing_master, \
    resolve_add_target, run_steps
from piprov.fleet import Fleet
from piprov.provision import run_lock


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
@skip_checks_option
def add_cmd(target: str, address: str | None, new_name: str | None, role: str, health_timeout: float | None,
            inventory_path: Path, policy: HostKeyPolicy | None, skip_checks: bool) -> None:
    """Join one new node to the running cluster; nothing else changes.

    Adds the node to the inventory if it is not there (comments kept), reads
    the facts of the whole fleet and plans it, then applies the plan of the
    new node ONLY: the master's etcd and apiserver are used, not restarted,
    and any change the plan shows on other nodes is reported, not applied.
    Before that, the new node gets the cheap checks of `piprov up` (`piprov
    check` without the SD card measure): a failing finding stops the join.
    Waits until the node is Ready in Kubernetes.

    \b
      piprov node add rpi-node-4 --address 192.168.1.104
      piprov node add 192.168.1.104              named rpi-node-N
      piprov node add rpi-node-4                 already in the inventory
    """
    found = resolve_add_target(inventory_path, load(inventory_path), target, address, new_name, role)
    if found.address is not None:
        err.print(f"added {escape(found.name)} ({found.address}) to {inventory_path}")
    add = NodeAddition.load(inventory_path, load_graph(), found.name)
    name = add.name
    with run_lock(add.inventory), Fleet.connect(add.inventory, policy=policy) as fleet:
        with err.status("reading facts from every node (one SSH command each)…"):
            add.plan_fleet(fleet)
        add.admit(checked_plan(add.inventory, add.graph, add.plan, fleet, skip=skip_checks, names=[name])[0])
        _print_addition_plan(add)
        t0 = time.monotonic()
        progress = Progress(add.inventory, add.graph, live=err.is_terminal)
        progress.nodes = [name]
        cancel = threading.Event()
        try:
            with progress:
                report = add.apply(fleet, health_timeout=health_timeout, on_event=progress, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
    print_report(report)
    touched = {s.node for s in report.run.steps.values() if s.status in ("changed", "failed")}
    if not report.run.ok:
        raise ExitWith(EXIT_ERROR)
    with err.status(f"waiting for {name} ({add.node.address}) to be Ready…"):
        ok = add.wait_ready(health_timeout or 300)
    if not ok:
        err.print(f"[bold red]✗[/] {escape(name)} did not become Ready in Kubernetes")
        raise ExitWith(EXIT_ERROR)
    others = add.others
    err.print(f"[bold green]✓[/] {escape(name)} joined and is Ready in {time.monotonic() - t0:.1f} s; "
              f"nodes changed: {', '.join(sorted(touched)) or 'none'}"
              + (f"; {len(others)} other nodes have pending changes (run `piprov plan`)" if others else
                 "; every other node: no change"))


def _print_addition_plan(add: NodeAddition) -> None:
    for np in add.plan.nodes:
        if np.node == add.name:
            continue
        fleet_wide = [c.component for c in np.components
                      if c.changed and c.component in add.graph.fleet_wide_components()]
        also = f"; [cyan]{escape(', '.join(fleet_wide))} updated for the new member[/]" if fleet_wide else ""
        if np.node in add.others:
            out.print(f"[bold]{escape(np.node)}[/]: [yellow]has changes, NOT applied by node add[/] "
                      f"[dim]({escape('; '.join(add.others[np.node][:3]))})[/]{also}")
        else:
            out.print(f"[bold]{escape(np.node)}[/]: [green]no change[/]{also}")
    for n, why in add.plan.errors.items():
        out.print(f"[bold]{escape(n)}[/]: [yellow]could not be planned ({escape(error_line(why))}); left alone[/]")
    mine = add.mine
    out.print(f"[bold]{escape(add.name)}[/] ({mine.address}): " + (
        f"{sum(1 for c in mine.components if c.changed)} components to change" if mine.changed else
        "[green]already as the inventory says[/]"))


# -- drain / uncordon ---------------------------------------------------------------------------------


def _k8s_node(inventory_path: Path, target: str) -> tuple[Inventory, str, str]:
    inventory = load(inventory_path)
    n = inventory.node(target)
    return inventory, n.name, k8s_name(n)


def _drain_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The pods a drain may remove, as kubectl drain's flags say it (see piprov.kube.pods for each rule's source)."""
    for opt in reversed([
        click.option("--force", is_flag=True,
                     help="Also remove pods no controller manages (they will not come back)."),
        click.option("--delete-local-data", is_flag=True,
                     help="Also remove pods with emptyDir volumes (their data is deleted with them)."),
        click.option("--ignore-daemonsets/--no-ignore-daemonsets", default=True, show_default=True,
                     help="Skip and list DaemonSet pods (their controller ignores the cordon and would recreate "
                     "them); --no-ignore-daemonsets refuses while there are any, as kubectl without the flag."),
        click.option("--grace-period", type=click.IntRange(min=-1), default=-1, show_default=True, metavar="SECONDS",
                     help="Seconds each pod gets to terminate; -1: the pod's own terminationGracePeriodSeconds."),
    ]):
        f = opt(f)
    return f


def _options(force: bool, delete_local_data: bool, ignore_daemonsets: bool, grace_period: int) -> DrainOptions:
    return DrainOptions(force=force, delete_local_data=delete_local_data, ignore_daemonsets=ignore_daemonsets,
                        grace_period=grace_period)


def drained_line(name: str, res: DrainResult) -> str:
    left = [f"{what}: {', '.join(keys)}" for what, keys in (("static pods left in place", res.mirror_skipped),
                                                            ("DaemonSet pods left in place", res.daemonset_skipped))
            if keys]
    return f"{name} drained: {res.message}" + (f"; {'; '.join(left)}" if left else "")


@node.command("drain")
@click.argument("target", metavar="NAME")
@click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True, metavar="SECONDS",
              help="Give up (and uncordon) when pods are still there after this long.")
@_drain_options
@click.option("--keep-cordoned", is_flag=True, help="On failure, leave the node cordoned.")
@inventory_option
def drain_cmd(target: str, timeout: float, force: bool, delete_local_data: bool, ignore_daemonsets: bool,
              grace_period: int, keep_cordoned: bool, inventory_path: Path) -> None:
    """Move every pod off a node, as kubectl drain of the cluster's release does.

    Cordons the node (only if it is Ready and schedulable: a node an admin
    cordoned is never uncordoned by piprov), then removes its pods and waits
    until they are gone. Static (mirror) and DaemonSet pods stay and are
    listed. Pods no controller manages, and pods with emptyDir data, stop the
    drain before anything changes, each named, unless --force /
    --delete-local-data allow them.

    How pods leave follows the apiserver's discovery: through the Eviction API
    where it has one (PodDisruptionBudgets hold; a budget that refuses, 429, is
    named and the eviction retried until --timeout); without it (Kubernetes
    1.1), by DELETE with the grace period, as kubectl 1.2 drain did. On failure
    the node is uncordoned again and the exit code is 1.
    """
    inventory, name, kname = _k8s_node(inventory_path, target)
    api = api_for(inventory)
    err.print(f"draining {escape(name)} ({kname})…")
    res = drain(api, kname, timeout=timeout, options=_options(force, delete_local_data, ignore_daemonsets, grace_period),
                keep_cordoned=keep_cordoned, say=say)
    err.print(f"[bold green]✓[/] {escape(drained_line(name, res))}")


@node.command("uncordon")
@click.argument("target", metavar="NAME")
@inventory_option
def uncordon_cmd(target: str, inventory_path: Path) -> None:
    """Let the scheduler place pods on a node again."""
    inventory, name, kname = _k8s_node(inventory_path, target)
    changed = uncordon(api_for(inventory), kname)
    err.print(f"{escape(name)}: " + ("uncordoned" if changed else "already schedulable"))


# -- remove -------------------------------------------------------------------------------------------


@node.command("remove")
@click.argument("target", metavar="NAME")
@click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True, metavar="SECONDS",
              help="How long the drain may take.")
@_drain_options
@click.option("--unreachable", is_flag=True,
              help="The node is gone (powered off, dead SD card): skip the steps that need SSH to it.")
@inventory_option
@trust_option
def remove_cmd(target: str, timeout: float, force: bool, delete_local_data: bool, ignore_daemonsets: bool,
               grace_period: int, unreachable: bool, inventory_path: Path, policy: HostKeyPolicy | None) -> None:
    """Take a worker out of the cluster for good.

    \b
    1. drain it (stops here if the drain fails: pods are never stranded)
    2. reset it as `piprov reset` does: units, containers, files, interfaces,
       routes, iptables (SSH; skipped with --unreachable)
    3. release its flannel subnet lease in the master's etcd
    4. delete its Node object
    5. remove it from the inventory (comments kept)
    """
    inventory, graph = load(inventory_path), load_graph()
    check_images(inventory, graph.image_names())
    n = inventory.node(target)
    refuse_removing_master(n)
    removal = NodeRemoval(inventory, graph, n, api_for(inventory), timeout=timeout,
                          options=_options(force, delete_local_data, ignore_daemonsets, grace_period),
                          unreachable=unreachable, say=say, policy=policy,
                          clean=lambda fleet: _reset(inventory, graph, fleet, n))
    with run_lock(inventory), Fleet.connect(inventory, [n.name], policy=policy) as fleet:
        removal.reach(fleet)
        run_steps(removal.steps(fleet), _print_step)
    err.print(f"[bold green]✓[/] {escape(n.name)} removed")


def _reset(inventory: Inventory, graph: ComponentGraph, fleet: Fleet, node: Node) -> str:
    """`piprov reset`'s work on the node alone (the drain, lease and Node are node remove's own steps)."""
    from piprov.reset.run import reset_node

    done = reset_node(inventory, graph, fleet, node, wipe_data=False, say=lambda _: None)
    counts = ", ".join(f"{k} {v}" for k, v in done.removed_by_kind().items()) or "nothing was there"
    left = "; left: " + ", ".join(f"{x.kind} {x.what}" for x in done.leftovers) if done.leftovers else ""
    return f"reset (as `piprov reset` does): removed {counts}{left}"


def _print_step(ev: StepEvent) -> None:
    at = f"{ev.index}/{ev.total}"
    if ev.kind == "announce":
        err.print(f"{at} {escape(ev.text)}…")
    elif ev.kind == "skipped":
        err.print(f"{at} [yellow]skipped[/] {escape(ev.step.title)}: {escape(ev.text)}")
    elif ev.announced:
        err.print(f"    {escape(ev.text)}")
    else:
        err.print(f"{at} {escape(ev.text)}")


# forget-key lives with the other key commands; it is a node verb to the user.
from piprov.cli.keys_cmd import forget_key_cmd  # noqa: E402

node.add_command(forget_key_cmd)
