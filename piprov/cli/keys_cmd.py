"""`piprov keys` (log-in keys on every node) and `piprov node forget-key` (host keys)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.markup import escape

from piprov.cli.app import EXIT_ERROR, ExitWith, err, inventory_option, out, trust_option
from piprov.errors import PiprovError
from piprov.inventory import load
from piprov.fleet import parallel
from piprov.inventory.model import HostKeyPolicy
from piprov.keys import (
    HYPRIOT_PASSWORD,
    NodeKeyResult,
    PublicKey,
    forget_host_key,
    generate_keypair,
    parse_public_key,
    public_key_path,
    setup_node,
)
from piprov.transport import PASSWORD_ENV


def _public_key(identity_file: str, yes: bool) -> PublicKey:
    pub = public_key_path(identity_file)
    if pub.exists():
        return parse_public_key(pub.read_text(errors="replace"), str(pub))
    private = Path(os.path.expanduser(identity_file))
    if private.exists():
        raise PiprovError(f"{private} has no {pub.name} beside it",
                          hint=f"recreate it: ssh-keygen -y -f {private} > {pub}")
    interactive = sys.stdin.isatty()
    if not yes and not (interactive and click.confirm(
            f"{private} does not exist. Create a new ed25519 key there?", default=True, err=True)):
        raise PiprovError(f"no SSH key at {private}",
                          hint="run again with --yes to create one, or: ssh-keygen -t ed25519 -f " + str(private))
    key = generate_keypair(private)
    err.print(f"created {escape(str(private))} (ed25519) and {escape(str(pub))}")
    return key


@click.command("keys")
@inventory_option
@click.option("--disable-password", is_flag=True,
              help="After key login is verified on a node, turn password login off there (sshd drop-in, "
              "checked with `sshd -t`, then reloaded). Nodes where key login failed keep their password.")
@click.option("--ask-password", is_flag=True,
              help="Prompt for the current password instead of trying the HypriotOS default (hypriot).")
@trust_option
@click.option("-y", "--yes", is_flag=True, help="Create the key pair (ed25519) without asking if it is missing.")
@click.argument("names", nargs=-1)
def keys_cmd(inventory_path: Path, disable_password: bool, ask_password: bool, policy: HostKeyPolicy | None,
             yes: bool, names: tuple[str, ...]) -> None:
    """Install your SSH key on every node (or NAMES), prove it works, optionally lock passwords out.

    \b
    Every HypriotOS card ships with pirate/hypriot. This logs in once with a
    password, appends the public key of ssh.identity_file (+ ".pub") to
    ~/.ssh/authorized_keys (idempotent, atomic), then opens a NEW connection
    with the key alone. Only where that worked does --disable-password turn
    password login off.

    \b
    The password is the HypriotOS default, or asked at the prompt with
    --ask-password, or read from $PIPROV_SSH_PASSWORD (for scripts). It is
    never accepted on the command line and never written anywhere.

    \b
      piprov keys                       install the key, keep passwords on
      piprov keys --disable-password    ... and then key-only login
    """
    inventory = load(inventory_path)
    nodes = [inventory.node(n) for n in names] if names else list(inventory.nodes)
    password = os.environ.get(PASSWORD_ENV) or None
    if ask_password:
        password = click.prompt("SSH password for the nodes", hide_input=True, err=True)
    if password is None:
        password = HYPRIOT_PASSWORD
    identity_files = {n.ssh.identity_file for n in nodes}
    keys: dict[str, PublicKey] = {}
    for ident in identity_files:
        if not ident:
            raise PiprovError("no ssh.identity_file in the inventory: piprov does not know which key to install",
                              hint=f"set ssh.identity_file in {inventory.path}, e.g. ~/.ssh/id_ed25519")
        keys[ident] = _public_key(ident, yes)

    by_name = {n.name: n for n in nodes}

    def one(name: str) -> NodeKeyResult:
        n = by_name[name]
        return setup_node(n, keys[n.ssh.identity_file or ""], inventory.known_hosts, password=password or "",
                          disable_password=disable_password, policy=policy)

    with err.status(f"installing the key on {len(nodes)} nodes…"):
        done = parallel(by_name, one, max_workers=16)
    for e in done.failed.values():
        raise e  # setup_node keeps a node's errors in its result; one that escapes it stops the command
    _print_key_results(list(done.succeeded.values()), disable_password)


def _print_key_results(results: list[NodeKeyResult], disable_password: bool) -> None:
    failed = 0
    for r in results:
        if r.error is not None:
            failed += 1
            err.print(f"[bold red]✗ {escape(r.node)}[/]: {escape(r.error.message)}")
            if r.error.hint:
                err.print(f"  [yellow]hint:[/] {escape(r.error.hint)}")
            continue
        what = "key already there" if r.key == "present" else "key added"
        extra = "; password login disabled" if r.password_disabled else (
            "; password login still on" if not disable_password else "")
        out.print(f"[green]✓[/] {escape(r.node)}: {what}, key login verified{extra}")
    if failed:
        err.print(f"[red]{failed} of {len(results)} nodes failed[/]; the others are done. "
                  "Run again after fixing them: it is safe to repeat.")
        raise ExitWith(EXIT_ERROR)


@click.command("forget-key")
@inventory_option
@click.argument("name")
def forget_key_cmd(inventory_path: Path, name: str) -> None:
    """Forget NAME's pinned SSH host key (after re-flashing its SD card).

    Removes the node's entries from piprov's known_hosts (atomically, under
    the same lock that pinning uses). The next connection then meets an
    unknown key: check its fingerprint on the node's console
    (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and pin it with
    `piprov up --trust-new-hosts`.
    """
    inventory = load(inventory_path)
    target = inventory.node(name)
    removed = forget_host_key(inventory.known_hosts, target)
    if removed:
        out.print(f"forgot {removed} host key entr{'y' if removed == 1 else 'ies'} of {escape(target.name)} "
                  f"({target.address}) in {escape(str(inventory.known_hosts))}")
    else:
        out.print(f"no host key of {escape(target.name)} ({target.address}) in "
                  f"{escape(str(inventory.known_hosts))}: nothing to forget")
    err.print("[yellow]next:[/] check the new key's fingerprint on the node, then pin it with "
              "`piprov up --trust-new-hosts`")

