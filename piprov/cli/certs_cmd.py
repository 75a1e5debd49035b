"""`piprov certs`: every certificate of the cluster PKI with its expiry; `certs rotate` re-issues and rolls out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from piprov.cli.app import err, inventory_option, out, trust_option
from piprov.graph import ComponentGraph
from piprov.inventory import Inventory, load
from piprov.inventory.model import HostKeyPolicy
from piprov.kube.client import forget_client_tls
from piprov.pki import CertInfo, Renewed, cluster_pki, expiring, pki_dir, read_certificates
from piprov.pki.store import utcnow


def cert_json(c: CertInfo, now: Any) -> dict[str, Any]:
    return {"name": c.name, "node": c.node, "path": str(c.path), "subject": c.subject,
            "not_after": c.not_after.isoformat(), "days_left": c.days_left(now)}


@click.group("certs", invoke_without_command=True)
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="The certificates as JSON.")
@click.pass_context
def certs_cmd(ctx: click.Context, inventory_path: Path, as_json: bool) -> None:
    """List the cluster's certificates: the CA, the controller's (admin) and each node's.

    They live next to the inventory (INVENTORY.pki/); `plan` or `up` makes
    the CA the first time and issues what a node lacks. A certificate with
    fewer than 30 days left is re-issued by the next `up` (the CA is not:
    see the docs on rotating it); `status` warns about them. `certs rotate`
    re-issues every leaf now and rolls them out (see its --help).
    """
    if ctx.invoked_subcommand is not None:
        return
    inventory = load(inventory_path)
    directory = pki_dir(inventory)
    certs = read_certificates(directory)
    now = utcnow()
    soon = {c.path for c in expiring(certs, now)}
    if as_json:
        out.print_doc({"pki": str(directory), "certificates": [
            dict(cert_json(c, now), expiring=c.path in soon) for c in certs]})
        return
    if not certs:
        err.print(f"no cluster PKI at {escape(str(directory))} yet: `piprov plan` or `piprov up` makes it")
        return
    t = Table(title=f"certificates in {escape(str(directory))}", title_justify="left", show_edge=False)
    for col in ("node", "name", "subject", "not after", "days left"):
        t.add_column(col)
    for c in certs:
        left = str(c.days_left(now))
        t.add_row(escape(c.node or "-"), escape(c.name), escape(c.subject), f"{c.not_after:%Y-%m-%d %H:%M}Z",
                  f"[bold yellow]{left}[/]" if c.path in soon else left)
    out.print(t)


@certs_cmd.command("rotate")
@inventory_option
@trust_option
@click.option("--node", "nodes", multiple=True, metavar="NAME",
              help="Re-issue only this node's certificates (repeatable; not the controller's admin certificate).")
@click.option("--batch", type=click.IntRange(min=1), metavar="N", help="This many workers at a time (default 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the rollout's result as JSON on stdout (as `up --rolling`).")
def rotate_cmd(inventory_path: Path, policy: HostKeyPolicy | None, nodes: tuple[str, ...], batch: int | None,
               as_json: bool) -> None:
    """Re-issue the leaf certificates and roll them out node by node: the cluster stays up.

    \b
    What changes: every node's certificates (etcd's, flannel's, the kubelet's,
    the proxy's, the apiserver's) and the controller's admin certificate get
    new keys and serials, with the same subjects and names, from the same CA.
    The CA does not change: certificates issued before stay valid until they
    expire, and a kubeconfig from `piprov kubeconfig` keeps working.

    \b
    Then exactly `piprov up --rolling`: the master first and alone, then the
    workers (--batch at a time); each batch drained, applied (what uses a new
    certificate restarts: etcd, flannel, kubelet, proxy; the apiserver's pod
    through its manifest), waited Ready and uncordoned. Replicated workloads
    keep serving. Stops at the first failed batch: the new certificates are
    already in INVENTORY.pki/, so fix the node and resume with
    `piprov up --rolling` (another rotate would re-issue them again).

    Rotating the CA itself invalidates every certificate at once: a planned
    outage of the control plane, done with `piprov up`, not with this
    command. See docs/security.md, "Rotating the CA".
    """
    from piprov.cli.rolling_cmd import rolling_up

    def reissue(inventory: Inventory, graph: ComponentGraph) -> dict[str, Any]:
        renewed = cluster_pki(inventory, graph=graph).rotate(inventory, nodes)
        # This run's own requests (probes, drains, Ready) present the new admin certificate.
        forget_client_tls(inventory)
        _print_renewed(renewed)
        return {"reissued": [{"node": r.node, "name": r.name, "serial": f"{r.new_serial:x}"} for r in renewed]}

    rolling_up(inventory_path, policy=policy, as_json=as_json, batch=batch, max_unavailable=None,
               health_timeout=None, before=reissue)


def _print_renewed(renewed: list[Renewed]) -> None:
    per: dict[str, list[str]] = {}
    for r in renewed:
        per.setdefault(r.node or "controller", []).append(r.name)
    err.print(f"re-issued {len(renewed)} certificates from the same CA:")
    for who, names in per.items():
        err.print(f"  {escape(who)}: {escape(', '.join(names))}")
