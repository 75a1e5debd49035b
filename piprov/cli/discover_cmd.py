"""`piprov discover`: find the Pis on the LAN over mDNS and, with --add, put them in the inventory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from piprov.cli.app import err, inventory_option, out
from piprov.discover import DiscoveryResult, Host, discover, inventory_match, plan_additions_why
from piprov.errors import InventoryError, InventoryNotFoundError, PiprovError
from piprov.inventory import Inventory, edit, load
from piprov.inventory.edit import NewNode
from piprov.inventory.schema import ROLES


def _load_optional(path: Path) -> Inventory | None:
    try:
        return load(path)
    except InventoryNotFoundError:
        return None


@click.command("discover")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.2, 120),
              help="Give up after S seconds (the browse usually ends long before).")
@click.option(
    "--quiet-period",
    "quiet",
    default=0.7,
    show_default=True,
    type=click.FloatRange(0.05, 30),
    help="Stop once no answer changed for this long.",
)
@click.option("--all", "all_", is_flag=True, help="Also browse printers, laptops... and show non-Pi devices.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    metavar="ADDR",
    help="Browse on the interface with this local IP address (repeatable; default: every LAN interface, "
    "i.e. not loopback, link-local, docker/CNI/flannel bridges or other virtual links).",
)
@click.option("--scan", "ssh_scan", is_flag=True,
              help="Also try port 22 on every address of the browsed subnets (at most a /22, 100 a second, 10 s) "
              "for Pis that announce nothing.")
@click.option("--add", is_flag=True, help="Add the new Pis to the inventory with planned host names.")
@click.option("--role", type=click.Choice(ROLES), default="worker", show_default=True, help="Role of added nodes.")
@click.option("--name-pattern", default="rpi-node-{n}", show_default=True, help="Names for added nodes; {n} = next free number.")
@inventory_option
def discover_cmd(
    timeout: float,
    quiet: float,
    all_: bool,
    as_json: bool,
    interfaces: tuple[str, ...],
    add: bool,
    role: str,
    name_pattern: str,
    ssh_scan: bool,
    inventory_path: Path,
) -> None:
    """Find Raspberry Pis on the LAN (mDNS) and tell them from other devices.

    \b
    Browses _workstation._tcp and _ssh._tcp (what HypriotOS's avahi announces),
    merges each host's services into one record and classifies it by the MAC's
    vendor prefix (Raspberry Pi Foundation/Trading) or, without a MAC, by the
    HypriotOS name black-pearl. Also asks for the A records of raspberrypi.local,
    raspberrypi-2.local... (Raspberry Pi OS announces no service). Stops once
    answers stop changing and no device is still probing for a name.

    Not passed, with the reason: an address of this machine or off the browsed
    subnet; a MAC its address does not answer ARP with (one datagram to its
    discard port makes the kernel ask); several names on one address; odd host
    names; one name claimed by two devices.

    \b
    Examples:
      piprov discover                      the Pis, marked if in inventory.yaml
      piprov discover --all --json         every device, as JSON
      piprov discover --add                append new Pis as rpi-node-N workers
      piprov discover --interface 10.0.0.1 browse one interface only

    --add adds each Pi that passed and is not in the inventory (by address or
    MAC) with its planned name, address and MAC; it lists the others with why.
    """
    if role == "master" and add:
        raise PiprovError("--add --role master: the inventory already names its master", hint="add workers, then edit by hand")
    inv = _load_optional(inventory_path)
    if add and inv is None:
        raise InventoryError(
            f"--add needs an inventory with the master in it; {inventory_path} does not exist",
            hint="start from inventory.example.yaml (or `piprov inventory add` after creating one)",
        )
    if not as_json:
        err.print(f"[dim]browsing mDNS on {', '.join(interfaces) or 'the LAN interfaces'} (up to {timeout:g} s)...[/]")
    result = discover(interfaces, timeout=timeout, quiet=quiet, all_types=all_, ssh_scan=ssh_scan)
    added: list[NewNode] = []
    not_added: list[tuple[str, str]] = []
    if add:
        inv, added, not_added = _add(result, inventory_path, name_pattern, role)
    if as_json:
        rejected = [(r.what, r.reason) for r in result.rejected] if add else []
        out.print_doc(_as_json(result, inv, all_, added, not_added + rejected))
        return
    _print_table(result, inv, all_, inventory_path)
    if add:
        _print_additions(added, not_added, inventory_path)


def _print_additions(added: list[NewNode], not_added: list[tuple[str, str]], inventory_path: Path) -> None:
    """What --add did; the answers that did not pass were listed as "ignored" with their reasons already."""
    for n in added:
        err.print(f"[green]added[/] {n.name} ({n.address}, {n.role}) to {escape(str(inventory_path))}")
    for what, why in not_added:
        err.print(f"[yellow]not added[/] {escape(what)}: {escape(why)}")
    if not added:
        err.print("nothing added")


def _add(
    result: DiscoveryResult, inventory_path: Path, pattern: str, role: str
) -> tuple[Inventory, list[NewNode], list[tuple[str, str]]]:
    """Append the new Pis to the inventory (planned against the file as it is under the lock)."""
    added: list[NewNode] = []
    skipped: list[tuple[str, str]] = []

    def plan(current: Inventory) -> list[NewNode]:
        new, why = plan_additions_why(result.hosts, current, pattern=pattern, role=role)
        added[:], skipped[:] = new, why
        return added

    return edit.add_nodes(inventory_path, plan, what="discover --add"), added, skipped


def _as_json(
    result: DiscoveryResult, inv: Inventory | None, all_: bool, added: list[NewNode], not_added: list[tuple[str, str]]
) -> dict[str, Any]:
    data = result.as_dict()
    for h in data["hosts"]:
        host = next(x for x in result.hosts if x.hostname == h["hostname"])
        h["inventory_node"], h["inventory_note"] = inventory_match(host, inv)
    if not all_:
        data["hosts"] = [h for h in data["hosts"] if h["kind"] == "pi"]
    data["added"] = [n.as_mapping() for n in added]
    data["not_added"] = [{"what": w, "reason": r} for w, r in not_added]
    return data


def _print_table(result: DiscoveryResult, inv: Inventory | None, all_: bool, inventory_path: Path) -> None:
    shown: list[Host] = [h for h in result.hosts if all_ or h.is_pi]
    t = Table(title_justify="left")
    t.add_column("NAME", overflow="fold")
    t.add_column("ADDRESS", no_wrap=True, min_width=15)
    t.add_column("MAC", no_wrap=True, min_width=17)
    t.add_column("KIND")
    t.add_column("SERVICES", overflow="fold")
    t.add_column("INVENTORY", overflow="fold")
    notes: list[str] = []
    for h in shown:
        node, note = inventory_match(h, inv)
        where = "-" if inv is None else (escape(node) if node else "[yellow]no[/]")
        if note:
            notes.append(f"{h.hostname}: {note}")
            where += " [yellow](!)[/]"
        if h.is_pi:
            kind = "[bold green]Pi[/]" + ("" if h.mac else " [dim](name)[/]")
        else:
            kind = "other"
        notes.extend(f"{h.hostname}: {w}" for w in h.warnings)
        services = ", ".join(x.split(".")[0].lstrip("_") for x in h.services)
        t.add_row(escape(h.hostname), "\n".join(h.addresses), h.mac or "-", kind, services, where)
    out.print(t)
    for n in notes:
        err.print(f"[yellow]note[/] {escape(n)}")
    for r in result.rejected:
        err.print(f"[yellow]ignored[/] {escape(r.what)}: {escape(r.reason)}")
    others = len(result.hosts) - len(result.pis)
    ending = "answers settled" if result.settled else "timeout"
    summary = f"{len(result.pis)} Pi{'s' if len(result.pis) != 1 else ''}"
    if others and not all_:
        summary += f" ({others} other device{'s' if others != 1 else ''} hidden; --all shows them)"
    elif others:
        summary += f", {others} other device{'s' if others != 1 else ''}"
    err.print(f"{summary} in {result.duration:.1f} s ({ending})")
    if result.claiming:
        err.print(f"[yellow]note[/] still claiming a name when the timeout hit: {', '.join(result.claiming)}; "
                  "run again, or with a longer --timeout")
    if result.skipped_interfaces:
        skipped = ", ".join(f"{escape(n)} ({escape(r)})" for n, r in result.skipped_interfaces)
        err.print(f"[dim]not browsed: {skipped}[/]")
    if inv is None:
        err.print(f"[dim]{escape(str(inventory_path))} does not exist: not checking which hosts are known[/]")
