"""`piprov inventory ...`: read and edit the inventory file from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from piprov.cli.app import err, inventory_option, out
from piprov.errors import InventoryError
from piprov.graph import load_graph
from piprov.inventory import Inventory, Node, check_images, edit, load
from piprov.inventory.edit import NewNode
from piprov.inventory.export import FORMATS, export
from piprov.inventory.schema import ROLES
from piprov.inventory.model import ARCH_MAP
from piprov.localfs import atomic_write


def node_dict(inv: Inventory, n: Node) -> dict[str, Any]:
    return {
        "name": n.name,
        "address": n.address,
        "role": n.role,
        "arch": n.arch,
        "mac": n.mac,
        "labels": dict(n.labels),
        "ssh": {
            "user": n.ssh.user,
            "port": n.ssh.port,
            "identity_file": n.ssh.identity_file,
            "host_key_policy": n.ssh.host_key_policy,
            "connect_timeout": n.ssh.connect_timeout,
            "known_hosts": str(inv.known_hosts),
        },
        "defined_at": str(n.location) if n.location else None,
    }


@click.group("inventory")
def inventory() -> None:
    """Show, check and edit the inventory file (the fleet as you want it).

    \b
    Edits keep your comments, key order, blank lines and quoting: only the
    text of the value you change is rewritten. Each edit is validated first
    (an edit that would make the file invalid is refused and changes nothing),
    runs under a lock (<inventory>.lock) so concurrent edits never lose each
    other, and replaces the file atomically.

    \b
    Examples:
      piprov inventory list
      piprov inventory add rpi-node-3 --address 192.168.1.103
      piprov inventory set images.hyperkube.tag v1.2.0
      piprov inventory set nodes.rpi-node-1.ssh.port 2222
      piprov inventory export --format ansible > hosts.yaml
    """


@inventory.command("list")
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="Print the nodes as JSON.")
def list_cmd(inventory_path: Path, as_json: bool) -> None:
    """List the nodes."""
    inv = load(inventory_path)
    if as_json:
        out.print_doc([node_dict(inv, n) for n in inv.nodes])
        return
    t = Table(title=f"{escape(inv.cluster_name)} ({escape(str(inv.path))})", title_justify="left")
    for col in ("NAME", "ROLE", "ADDRESS", "USER", "PORT", "ARCH", "LABELS"):
        t.add_column(col)
    for n in inv.nodes:
        t.add_row(
            escape(n.name),
            n.role,
            n.address,
            escape(n.ssh.user),
            str(n.ssh.port),
            escape(n.arch or "(detected)"),
            escape(", ".join(f"{k}={v}" for k, v in n.labels.items())),
        )
    out.print(t)


@inventory.command("show")
@inventory_option
@click.argument("node")
@click.option("--json", "as_json", is_flag=True, help="Print the node as JSON.")
def show_cmd(inventory_path: Path, node: str, as_json: bool) -> None:
    """Show one node (by name or address) with its effective SSH settings."""
    inv = load(inventory_path)
    n = inv.node(node)
    d = node_dict(inv, n)
    if as_json:
        out.print_doc(d)
        return
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in d.items():
        if k == "ssh":
            for sk, sv in v.items():
                t.add_row(f"ssh.{sk}", escape(str(sv)))
        elif k == "labels":
            t.add_row("labels", escape(", ".join(f"{a}={b}" for a, b in v.items()) or "-"))
        else:
            t.add_row(k, escape(str(v) if v is not None else "-"))
    out.print(t)


def _parse_labels(labels: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--label")
        result[key] = value
    return result


@inventory.command("add")
@inventory_option
@click.argument("name")
@click.option("--address", required=True, help="The node's IP address.")
@click.option("--role", type=click.Choice(ROLES), default="worker", show_default=True)
@click.option("--arch", type=click.Choice(sorted(ARCH_MAP)), help="Override the architecture the node reports.")
@click.option("--mac", help="The node's MAC address (lets discovery recognise it).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A Kubernetes label (repeatable).")
def add_cmd(
    inventory_path: Path, name: str, address: str, role: str, arch: str | None, mac: str | None, labels: tuple[str, ...]
) -> None:
    """Add a node NAME (the hostname piprov will set) to the inventory.

    This only edits the file; `piprov up` (or `piprov node add`) provisions it.
    """
    node = NewNode(name, address, role, arch, mac.lower() if mac else None, _parse_labels(labels))
    edit.add_node(inventory_path, node)
    err.print(f"added [bold]{escape(name)}[/] ({escape(address)}, {role}) to {escape(str(inventory_path))}")


@inventory.command("remove")
@inventory_option
@click.argument("name")
def remove_cmd(inventory_path: Path, name: str) -> None:
    """Remove node NAME from the file (its lines only; comments around it stay).

    This does not touch the node or the cluster: drain it first with
    `piprov node remove` if it is part of a running cluster.
    """
    edit.remove_node(inventory_path, name)
    err.print(f"removed [bold]{escape(name)}[/] from {escape(str(inventory_path))}")


@inventory.command("set")
@inventory_option
@click.argument("path", metavar="PATH")
@click.argument("value")
def set_cmd(inventory_path: Path, path: str, value: str) -> None:
    """Set the value at a dotted PATH.

    \b
    PATH walks the file; nodes are addressed by name:
      images.hyperkube.tag v1.2.0
      network.mtu 1400                   (null to unset)
      nodes.rpi-node-1.address 192.168.1.111
      nodes.rpi-node-1.labels.shelf top
      images.insecure_registries '[10.0.0.1:5000]'
    The value is converted to the type the setting needs (a tag stays a
    string even if it looks like a number). Missing sections are created.
    """
    parsed = edit.parse_value(path, value)
    edit.set_value(inventory_path, path, parsed)
    err.print(f"set {escape(path)} = {escape(json.dumps(parsed))} in {escape(str(inventory_path))}")


@inventory.command("rename")
@inventory_option
@click.argument("old")
@click.argument("new")
def rename_cmd(inventory_path: Path, old: str, new: str) -> None:
    """Rename node OLD to NEW (the next `piprov up` sets the new hostname)."""
    edit.rename_node(inventory_path, old, new)
    err.print(f"renamed {escape(old)} to [bold]{escape(new)}[/] in {escape(str(inventory_path))}")


@inventory.command("validate")
@inventory_option
def validate_cmd(inventory_path: Path) -> None:
    """Check the file; every problem is reported with file:line:column (exit 1 if any)."""
    inv = load(inventory_path)
    # The image names are the playbooks': only this command and those that
    # deploy read both (`inventory show/set` need not parse every playbook).
    check_images(inv, load_graph().image_names())
    from piprov.graph.support import check_inventory_versions

    profile = check_inventory_versions(inv).profile.name
    w = len(inv.workers)
    err.print(
        f"[green]ok[/]: {escape(str(inventory_path))}: cluster {escape(inv.cluster_name)}, "
        f"master {escape(inv.master.name)}, {w} worker{'s' if w != 1 else ''}, profile {escape(profile)}"
    )


@inventory.command("export")
@inventory_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Target format.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout."
)
def export_cmd(inventory_path: Path, fmt: str, output: Path | None) -> None:
    """Export the inventory for another tool.

    \b
    ansible: a YAML inventory with groups `master` and `workers`, and
    ansible_host/user/port/ssh_private_key_file plus the same known_hosts and
    host-key policy piprov uses:
      piprov inventory export --format ansible -o hosts.yaml
      ansible -i hosts.yaml workers -m ping
    """
    text = export(load(inventory_path), fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    if output.exists() and output.resolve() == inventory_path.resolve():
        raise InventoryError("refusing to export over the inventory itself", hint="choose another -o/--output")
    # An existing file keeps its mode; a new one is private (0600), as export has always made it.
    atomic_write(output, text.encode(), mode=None if output.exists() else 0o600)
    err.print(f"wrote {escape(str(output))}")
