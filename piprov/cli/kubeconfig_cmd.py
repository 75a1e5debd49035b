"""`piprov kubeconfig`: this cluster merged into the user's kubeconfig, as kind and k3sup do."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from piprov.cli.app import err, inventory_option
from piprov.errors import PiprovError
from piprov.inventory import Inventory, load
from piprov.kube import kubeconfig
from piprov.kube.client import apiserver_url


def kubeconfig_entry(inventory: Inventory) -> dict[str, Any]:
    """This cluster alone as a kubeconfig: the secure port, the CA and the admin's credentials."""
    from piprov.pki import cluster_pki

    tls = cluster_pki(inventory).controller_tls()
    return kubeconfig.entry(inventory.cluster_name, apiserver_url(inventory), ca=tls.ca_file.read_bytes(),
                            cert=tls.cert_file.read_bytes(), key=tls.key_file.read_bytes())


def kubeconfig_text(inventory: Inventory) -> str:
    """This cluster alone as a kubeconfig (what --print writes)."""
    return kubeconfig.dump(kubeconfig_entry(inventory))


@click.command("kubeconfig")
@inventory_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Merge into this file instead of $KUBECONFIG / ~/.kube/config.")
@click.option("--print", "to_stdout", is_flag=True, help="Write this cluster's kubeconfig to stdout; change no file.")
@click.option("--use", is_flag=True, help="Also make this cluster kubectl's current context.")
def kubeconfig_cmd(inventory_path: Path, output: Path | None, to_stdout: bool, use: bool) -> None:
    """Merge this cluster into your kubeconfig, as kind and k3sup do.

    Adds (or replaces) the cluster, user and context named piprov-<cluster
    name> in $KUBECONFIG (the first file of it that exists) or
    ~/.kube/config, keeping every other cluster, user and context. The file
    is replaced atomically with mode 0600. The current context changes only
    with --use.

    The entry reaches the apiserver's secure port and embeds the cluster's
    CA and the admin's client certificate and key (from the cluster PKI next
    to the inventory): treat the file like a password.

    \b
      piprov kubeconfig --use && kubectl get nodes
      piprov kubeconfig -o cluster.yaml     merge into (or create) cluster.yaml
      piprov kubeconfig --print             this cluster alone, on stdout
    """
    inventory = load(inventory_path)
    ours = kubeconfig_entry(inventory)
    if to_stdout:
        if output is not None or use:
            raise PiprovError("--print writes to stdout: it takes neither -o nor --use")
        sys.stdout.write(kubeconfig.dump(ours))
        return
    target = output if output is not None else kubeconfig.default_path()
    kubeconfig.write_merged(target, ours, use=use)
    name = kubeconfig.entry_name(inventory.cluster_name)
    err.print(f"merged context {escape(name)} into {escape(str(target))}")
    if not use:
        err.print(f"[dim]kubectl --context {escape(name)} get nodes, or `piprov kubeconfig --use` to make it current[/]")
