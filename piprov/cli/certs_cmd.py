"""`piprov certs`: every certificate of the cluster PKI with its expiry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from piprov.cli.app import err, inventory_option, out
from piprov.inventory import load
from piprov.pki import CertInfo, expiring, pki_dir, read_certificates
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
    see the docs on rotating it); `status` warns about them.
    """
    if ctx.invoked_subcommand is not None:
        return
    inventory = load(inventory_path)
    directory = pki_dir(inventory)
    certs = read_certificates(directory)
    now = utcnow()
    soon = {c.path for c in expiring(certs, now)}
    if as_json:
        out.print_json(json.dumps({"pki": str(directory), "certificates": [
            dict(cert_json(c, now), expiring=c.path in soon) for c in certs]}))
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
