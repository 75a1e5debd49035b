"""`piprov reset`: nodes back to what a freshly flashed one has, with an audit of what is left."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from piprov.cli.app import EXIT_ERROR, EXIT_OK, EXIT_USAGE, ExitWith, err, error_line, inventory_option, out, \
    trust_option
from piprov.fleet import Fleet
from piprov.graph import load_graph
from piprov.inventory import check_images, load
from piprov.inventory.model import HostKeyPolicy
from piprov.provision import run_lock
from piprov.reset import NodeReset, ResetReport, reset_cluster
from piprov.reset.run import chosen


@click.command("reset")
@click.argument("nodes", nargs=-1, metavar="[NODE]...")
@inventory_option
@trust_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--wipe-data", is_flag=True,
              help="Also remove etcd's store on the master (the cluster's objects): only with the whole cluster.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300, show_default=True, metavar="SECONDS",
              help="How long a worker's drain may take.")
@click.option("--hostname", "os_hostname", is_flag=True,
              help="Also give each node its OS's default hostname back (black-pearl on HypriotOS, raspberrypi on "
              "Raspberry Pi OS); a node whose OS default piprov does not know is refused, unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed and what is left as JSON.")
def reset_cmd(nodes: tuple[str, ...], inventory_path: Path, policy: HostKeyPolicy | None, yes: bool,
              wipe_data: bool, timeout: float, os_hostname: bool, as_json: bool) -> None:
    """Take nodes back to what a freshly flashed Pi has; the inventory is kept.

    \b
    Without NODE: the whole cluster: the workers at once, then every Node
    object and flannel lease while the master answers, then the master.
    With workers named: each is drained first (a drain that fails leaves it
    alone), then reset, its lease released and its Node deleted; the rest of
    the cluster keeps running. The master alone is refused.

    \b
    On each node, in ONE SSH command: the containers of both docker daemons,
    every unit piprov manages (stopped, disabled, its file removed), the
    kubelet's mounts and directories, flannel's lease file, the cbr0 and
    flannel interfaces, the iptables chains and rules of docker, kube-proxy,
    flannel and piprov's firewall, every file piprov wrote (its record in
    /var/lib/piprov/owned, and the playbooks' paths), then an audit: anything
    of those kinds still there is listed by kind. Images stay (the next `up`
    needs no pull); etcd's store stays unless --wipe-data. The hostname stays
    unless --hostname (a second command: the OS's way, occidentalis.txt or hostnamectl).

    \b
    `piprov up` builds it all again.
    Exit code: 0 every node reset and nothing left, 1 an error or something left.
    """
    inventory, graph = load(inventory_path), load_graph()
    graph = graph.for_inventory(inventory)
    check_images(inventory, graph.image_names())
    targets, whole = chosen(inventory, nodes)
    if wipe_data and not whole:
        err.print("[red]error:[/] --wipe-data removes the cluster's store: only with the whole cluster (no NODE)")
        raise ExitWith(EXIT_USAGE)
    names = ", ".join(n.name for n in targets)
    what = f"the whole cluster {inventory.cluster_name} ({names})" if whole else names
    if not yes:
        if not sys.stdin.isatty():
            err.print(f"[red]error:[/] reset would remove everything piprov built on {escape(what)}; "
                      "pass --yes to confirm without a terminal")
            raise ExitWith(EXIT_USAGE)
        click.confirm(f"Reset {what}{' and wipe etcd' if wipe_data else ''}?", abort=True, err=True)
    with run_lock(inventory), Fleet.connect(inventory, [n.name for n in targets], policy=policy) as fleet:
        report = reset_cluster(inventory, graph, fleet, nodes, wipe_data=wipe_data, timeout=timeout,
                               hostname=os_hostname, say=lambda s: err.print(f"[dim]{escape(s)}[/]"))
    if as_json:
        out.print_doc(report_json(report))
    else:
        print_report(report)
    raise ExitWith(EXIT_OK if report.ok else EXIT_ERROR)


def _node_json(r: NodeReset) -> dict[str, Any]:
    return {"removed": r.removed_by_kind(), "left": [{"kind": x.kind, "what": x.what} for x in r.leftovers],
            "cluster": r.cluster, "clean": r.clean, "hostname": r.hostname}


def report_json(report: ResetReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "whole": report.whole,
        "cluster": report.cluster,
        "nodes": {n: _node_json(r) for n, r in report.nodes.succeeded.items()},
        "errors": {n: error_line(e) for n, e in report.nodes.failed.items()},
    }


def print_report(report: ResetReport) -> None:
    for line in report.cluster:
        err.print(f"  {escape(line)}")
    for name, r in report.nodes.succeeded.items():
        counts = ", ".join(f"{k} {v}" for k, v in r.removed_by_kind().items()) or "nothing was there"
        mark = "[bold green]✓[/]" if r.clean else "[bold red]✗[/]"
        named = f"; hostname {escape(r.hostname)}" if r.hostname else ""
        out.print(f"{mark} [bold]{escape(name)}[/] reset: removed {escape(counts)}{named}")
        for line in r.cluster:
            out.print(f"    {escape(line)}")
        for x in r.leftovers:
            out.print(f"    [red]left[/] {x.kind} {escape(x.what)}")
    for e in report.nodes.failed.values():
        out.print(f"[bold red]✗[/] {escape(error_line(e))}")
