"""`piprov lab ...`: the virtual Pi lab on the command line.

Plugged into piprov's CLI through the ``piprov.commands`` entry point, so the
product never imports the lab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, TypeVar

import click
from rich.console import Console
from rich.table import Table

from piprov_lab import image
from piprov_lab import inventory as lab_inventory
from piprov_lab.errors import LabError
from piprov_lab.lab import Lab, default_name

# Wide when piped, so tables are not truncated in logs and CI output.
out = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., object])


def name_option(f: F) -> F:
    return click.option(
        "--name",
        default=default_name,
        show_default="$PIPROV_LAB or piprov",
        help="Which lab (several can run side by side, each with its own bridge and subnet).",
    )(f)


def os_option(f: F) -> F:
    return click.option(
        "--os", "releases", default=image.SUITE, show_default=True, metavar="RELEASE[,RELEASE...]",
        help=f"Debian release of each node ({', '.join(image.RELEASES)}): a comma list is given to the "
        "nodes in turn (pi1 the first...). Each release has its own cached image, built on first use (~40 s).",
    )(f)


def _releases(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in image.RELEASES]
    if unknown or not names:
        raise click.BadParameter(f"{unknown[0] if unknown else value!r} is no release; releases: "
                                 f"{', '.join(image.RELEASES)}", param_hint="--os")
    return names


def _lab(name: str) -> Lab:
    return Lab(name, progress=lambda m: err.print(f"[dim]{m}[/]"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lab() -> None:
    """A virtual Pi lab on this machine: try piprov without hardware.

    \b
    Nodes are systemd-nspawn containers that behave like freshly flashed
    HypriotOS Pis (user pirate/hypriot, /boot/occidentalis.txt, avahi, docker,
    Raspberry Pi MACs), each in its own network namespace on a private bridge.
    Nothing the lab does leaves this machine. Needs root.

    \b
      piprov lab up --nodes 3 --decoys 2 [--profile last-hyperkube]
      piprov lab status
      piprov lab inventory > inventory.yaml
      piprov lab ssh pi1 -- uname -a
      piprov lab down
    """


@lab.command()
@name_option
@click.option("--nodes", default=3, show_default=True, help="How many Pi-like nodes to boot.")
@click.option("--decoys", default=0, show_default=True, help="Non-Pi mDNS hosts (a printer, a laptop...).")
@click.option("--rtt", "rtt", default=0.0, show_default=True, help="Round-trip time to each node's SSH, in ms.")
@click.option("--profile", default=lab_inventory.DEFAULT_PROFILE, show_default=True,
              type=click.Choice(lab_inventory.profiles()),
              help="Image tags `lab inventory` names: seed (hyperkube v1.1.2, etcd 2.1.1, flannel 0.5.5, "
              "pause 2.0) or last-hyperkube (v1.18.20, etcd 3.4.23, flannel v0.12.0, pause 3.2).")
@click.option("--decoy", "decoy_kinds", multiple=True, metavar="KIND",
              help="One more decoy of this kind (printer, laptop, or hostile: loopback-pi, spoofed-mac, six-names, "
              "own-address); repeatable.")
@click.option("--rpios", default=0, show_default=True,
              help="The last N nodes get Raspberry Pi OS's avahi defaults (host name raspberrypi, "
              "publish-workstation=no, no _ssh._tcp service): found only by their A record.")
@click.option("--cpu-quota", "cpu_quota", default=0, show_default=True, metavar="PCT",
              help="Slow nodes: each node gets at most PCT percent of one core (its cgroup's CFS quota, kept "
              "across reboots); 0 = no cap. See the README for which quota is which Pi.")
@click.option("--flavour", "--flavor", "flavours", default="", metavar="F[,F...]",
              help="The OS each node's card holds, given to the nodes in turn: hypriot-2016 (the default: "
              "/boot/occidentalis.txt), hypriot-1x (/boot/device-init.yaml read by that release's device-init), "
              "hypriot-cloud-init (HypriotOS 1.7-1.12: /boot/user-data read by a real cloud-init), "
              "raspios (Bookworm made in Imager: /boot/firmware, user ada, Debian's avahi, Docker's overlay.conf "
              "drop-in). piprov_lab/README.md lists each one's traits and sources.")
@os_option
def up(name: str, nodes: int, decoys: int, rtt: float, profile: str, decoy_kinds: tuple[str, ...],
       rpios: int, flavours: str, releases: str, cpu_quota: int) -> None:
    """Boot a lab; returns once every node's sshd answers."""
    t0 = time.monotonic()
    lb = _lab(name)
    lb.up(nodes=nodes, decoys=decoys, rtt_ms=rtt, profile=profile, decoy_kinds=decoy_kinds, rpios=rpios,
          flavours=[f for f in flavours.split(",") if f], releases=_releases(releases), cpu_quota_pct=cpu_quota)
    quota = f", {cpu_quota}% of a core each" if cpu_quota else ""
    err.print(f"lab [bold]{name}[/] is up ({profile} profile): {nodes} nodes{quota}, "
              f"{decoys + len(decoy_kinds)} decoys in {time.monotonic() - t0:.1f} s")
    err.print(f"[dim]next: piprov lab status --name {name}; piprov lab inventory --name {name} > inventory.yaml[/]")


@lab.command()
@name_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(name: str, as_json: bool) -> None:
    """Show the lab's nodes (IP, MAC, mDNS name, state) and decoys."""
    data = Lab(name).status()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    t = Table(title=f"lab {name}: bridge {data['bridge']} {data['bridge_ip']}, registry {data['registry']}")
    for col in ("node", "inventory", "OS", "IP", "MAC", "mDNS name", "state"):
        t.add_column(col)
    for n in data["nodes"]:  # type: ignore[attr-defined]
        if not n["running"]:
            state = "[red]stopped[/]"
        elif n["partitioned"]:
            state = "[yellow]partitioned[/]"
        elif n["sshd"]:
            state = "[green]running[/]"
        else:
            state = "[yellow]booting[/]"
        extra = []
        if n["rtt_ms"]:
            extra.append(f"rtt {n['rtt_ms']:g} ms")
        if n["loss_pct"]:
            extra.append(f"loss {n['loss_pct']:g}%")
        if n["cpu"].get("cpu_quota_pct"):
            extra.append(f"cpu {n['cpu']['cpu_quota_pct']:g}%")
        if extra:
            state += f" ({', '.join(extra)})"
        t.add_row(n["name"], n["inventory_name"], n["os"], n["ip"], n["mac"], n["mdns_name"] or "-", state)
    for d in data["decoys"]:  # type: ignore[attr-defined]
        t.add_row(d["name"], f"({d['kind']})", "-", d["ip"], d["mac"], "-", "running" if d["running"] else "stopped")
    out.print(t)


@lab.command(context_settings={"ignore_unknown_options": True})
@name_option
@click.argument("node")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def ssh(name: str, node: str, cmd: tuple[str, ...]) -> None:
    """Log in to NODE as its user (pirate; raspios: Imager's) over SSH (lab key, pinned host key); optional -- CMD."""
    lb = Lab(name)
    if shutil.which("ssh") is None:
        # No OpenSSH client: the nearest equivalent is a login shell as the node's user.
        argv = lb.exec_argv(node, ["su", "-l", lb.user(node), *(["-c", " ".join(cmd)] if cmd else [])])
    else:
        argv = lb.ssh_argv(node, list(cmd))
        if sys.stdin.isatty() and not cmd:
            argv.insert(1, "-t")
    raise SystemExit(subprocess.call(argv))


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@name_option
@click.argument("node")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, node: str, cmd: tuple[str, ...]) -> None:
    """Run CMD inside NODE as root (nsenter, no SSH): lab exec pi1 -- systemctl status."""
    argv = Lab(name).exec_argv(node, list(cmd))
    raise SystemExit(subprocess.call(argv))


@lab.command()
@name_option
@click.argument("node")
def kill(name: str, node: str) -> None:
    """Power cut: stop NODE at once, no clean shutdown (its disk stays)."""
    Lab(name).kill(node)
    err.print(f"{node}: power cut")


@lab.command()
@name_option
@click.argument("node")
def start(name: str, node: str) -> None:
    """Boot a stopped NODE again from its own disk."""
    _lab(name).start(node)
    err.print(f"{node}: up")


@lab.command()
@name_option
@click.argument("node")
def reboot(name: str, node: str) -> None:
    """Reboot NODE cleanly (systemctl reboot inside it)."""
    _lab(name).reboot(node)
    err.print(f"{node}: rebooted")


@lab.command()
@name_option
@click.option("--no-start", is_flag=True, help="Leave NODE off after the re-flash (`lab start` boots it).")
@click.argument("node")
def replace(name: str, node: str, no_start: bool) -> None:
    """Re-flash NODE's SD card: same MAC and address, a fresh disk, a new host key.

    \b
    NODE is powered off, gets the base image back (no piprov files, no docker
    data, a new machine-id, the image's host name) and a fresh network stack on
    the same cable, then boots; returns once sshd answers. `lab ssh` knows the
    new key at once; the inventory's known_hosts (piprov's) keeps the old one,
    so piprov stops with HOST KEY CHANGED, as after a real re-flash, until
    `piprov node forget-key` and a run with --trust-new-hosts.
    """
    t0 = time.monotonic()
    i = _lab(name).replace(node, start=not no_start)
    state = "booted" if i.running else "left off"
    err.print(f"{i.name} ({i.inventory_name}) re-flashed and {state} in {time.monotonic() - t0:.1f} s: "
              f"{i.ip}, {i.mac}, new host key {i.host_key_fingerprint}")
    err.print(f"[dim]piprov's known_hosts still pins the old key: `piprov node forget-key {i.inventory_name}`, "
              "then pin the new one with --trust-new-hosts[/]")


@lab.command(name="add-node")
@name_option
@click.option("--count", default=1, show_default=True, help="How many fresh nodes to add.")
@os_option
def add_node(name: str, count: int, releases: str) -> None:
    """Boot extra fresh nodes into a running lab."""
    for i in _lab(name).add_nodes(count, releases=_releases(releases)):
        out.print(f"{i.name}\t{i.ip}\t{i.mac}\t{i.os}")


@lab.command()
@name_option
@click.option("--rtt", type=float, default=None, help="Round-trip time to the node's SSH port, in ms (0 = off).")
@click.option("--loss", type=float, default=None, help="Packet loss per direction, in percent (0 = off).")
@click.argument("node", required=False)
def netem(name: str, rtt: float | None, loss: float | None, node: str | None) -> None:
    """Add latency and/or packet loss to one node (or all)."""
    if rtt is None and loss is None:
        raise click.UsageError("give --rtt and/or --loss")
    Lab(name).netem(rtt_ms=rtt, loss_pct=loss, node=node)


@lab.command()
@name_option
@click.argument("node")
@click.argument("state", type=click.Choice(["on", "off"]))
def partition(name: str, node: str, state: str) -> None:
    """Cut NODE off the LAN (on) or plug it back in (off), without stopping it."""
    Lab(name).partition(node, state == "on")


@lab.command()
@name_option
def inventory(name: str) -> None:
    """Print an inventory YAML pointing at the lab's nodes (first = master)."""
    click.echo(Lab(name).inventory_yaml(), nl=False)


@lab.command()
@name_option
@click.option("--all", "all_", is_flag=True, help="Every lab on this machine, also ones left by a crash.")
def down(name: str, all_: bool) -> None:
    """Remove everything the lab made: processes, mounts, namespaces, links, rules."""
    if all_:
        names = Lab.down_all()
        err.print(f"removed labs: {', '.join(names) or 'none (swept leftovers)'}")
    else:
        if not Lab(name).is_up and os.environ.get("PIPROV_LAB_QUIET") is None:
            err.print(f"lab {name} was not up (swept leftovers, if any)")
        Lab(name).down()


__all__ = ["lab", "LabError"]
