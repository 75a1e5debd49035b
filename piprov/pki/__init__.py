"""The cluster PKI: one CA per cluster on the controller, and the certificates issued from it.

PyCA ``cryptography`` makes the keys and certificates (the standard library
verifies X.509 but cannot issue it). The CA lives next to the inventory
(:mod:`.store`); which component gets which certificate, with which subject
and names, is the playbooks' ``credentials`` (:mod:`piprov.graph.credentials`);
a node's certificates come out as desired files (:meth:`ClusterPki.node_files`),
planned and written like any other, their content never shown.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator

from piprov.graph import ComponentGraph, probe_context, render_expression
from piprov.graph.model import Credential
from piprov.inventory.model import Inventory, Node
from piprov.pki import x509 as px
from piprov.pki.store import (
    PASSPHRASE_ENV,
    CertInfo,
    Clock,
    LeafStore,
    PkiError,
    Renewed,
    ensure_ca,
    passphrase_from_env,
    pki_dir,
    read_certificates,
    utcnow,
)
from piprov.plan.desired import DesiredFile

__all__ = [
    "PASSPHRASE_ENV", "CertInfo", "ClientTls", "ClusterPki", "PkiError", "Renewed", "cluster_pki", "expiring",
    "expiry_warnings", "pki_dir", "read_certificates",
]

_DNS_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class ClientTls:
    """What the controller presents (the admin certificate) and trusts (the cluster CA)."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def context(self) -> ssl.SSLContext:
        """Verifies the server against the cluster CA only (and its name or IP), presents the admin cert."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


def _leaf_spec(cred: Credential, component: str, ctx: dict[str, object]) -> px.LeafSpec:
    def one(text: str) -> str:
        return render_expression(text, ctx).strip()

    dns: list[str] = []
    ips: list[str] = []
    for expr in cred.sans:
        value = one(expr)
        try:
            ip = str(ipaddress.ip_address(value))
            if ip not in ips:
                ips.append(ip)
        except ValueError:
            if not _DNS_RE.match(value):
                raise PkiError(f"component {component}, credential {cred.name}: SAN {value!r} "
                               "is neither an IP address nor a DNS name") from None
            if value not in dns:
                dns.append(value)
    cn = one(cred.cn)
    if not cn:
        raise PkiError(f"component {component}, credential {cred.name}: its cn renders empty")
    kind: px.Kind = "server" if cred.kind == "server" else "client"
    o = one(cred.o) if cred.o else ""
    return px.LeafSpec(cred.name, kind, cn, o or None, tuple(dns), tuple(ips))


class ClusterPki:
    """The CA of one cluster and the leaves issued from it."""

    def __init__(self, directory: Path, graph: ComponentGraph, *, clock: Clock = utcnow,
                 passphrase: bytes | None = None) -> None:
        self.directory = directory
        self.graph = graph
        self.clock = clock
        self._leaves = LeafStore(directory, clock, passphrase)

    @property
    def ca_cert_pem(self) -> bytes:
        return self._leaves.ca_cert_pem

    def controller_tls(self) -> ClientTls:
        """The controller's admin certificate (issued if needed) and the CA, as files."""
        self._leaves.get(None, self._admin_spec())
        crt, key = self._leaves.paths(None, "admin")
        return ClientTls(self.directory / "ca.crt", crt, key)

    def node_files(self, inventory: Inventory, node: Node) -> list[DesiredFile]:
        """The node's certificates and keys as desired files, owned as the playbooks say."""
        pki = self.graph.pki
        if pki is None:
            return []
        files: list[DesiredFile] = []
        for comp, cred, spec in self._credentials(inventory, node):
            paths = cred.paths(pki.dir)
            # Certificates are public, but a plan shows none of the PKI's
            # bytes: a changed one reads "secret changed", with no diff.
            if spec is None:
                files.append(DesiredFile(paths[0], self.ca_cert_pem, 0o644, "root", "root", comp,
                                         restarts=cred.restarts, redacted=True))
                continue
            pair = self._leaves.get(node.name, spec)
            files.append(DesiredFile(paths[0], pair.cert_pem, 0o644, "root", "root", comp,
                                     restarts=cred.restarts, redacted=True))
            files.append(DesiredFile(paths[1], pair.key_pem, 0o600, "root", "root", comp,
                                     restarts=cred.restarts))
        return files

    def rotate(self, inventory: Inventory, nodes: Collection[str] = ()) -> list[Renewed]:
        """Re-issue every leaf of the cluster from the same CA: new keys and serials, same subjects and names.

        Every node's leaves and the controller's admin certificate; with
        ``nodes`` (names or addresses), only those nodes' leaves. The CA is
        never touched: the old leaves stay valid until they expire, and the
        next plan carries the new ones as "secret changed" (they pass the reuse
        rules of :meth:`node_files`), restarting what uses each.
        """
        chosen = {inventory.node(n).name for n in nodes}
        leaves: list[tuple[str | None, px.LeafSpec]] = [
            (node.name, spec) for node in inventory.nodes if not nodes or node.name in chosen
            for _, _, spec in self._credentials(inventory, node) if spec is not None]
        if not nodes:
            leaves.append((None, self._admin_spec()))
        return self._leaves.renew(leaves)

    def _credentials(self, inventory: Inventory, node: Node) -> Iterator[tuple[str, Credential, px.LeafSpec | None]]:
        """Each credential the node's components use, by component, with its leaf (None: the CA's certificate)."""
        ctx = dict(probe_context(inventory, node), vars=dict(self.graph.vars))
        for comp in self.graph.for_role(node.role):
            for cred in comp.credentials_for(node.role):
                yield comp.name, cred, None if cred.kind == "ca" else _leaf_spec(cred, comp.name, ctx)

    def _admin_spec(self) -> px.LeafSpec:
        pki = self.graph.pki
        if pki is None:
            raise PkiError("the playbooks have no 'pki': there is no admin certificate to present")
        return px.LeafSpec("admin", "client", pki.admin_cn, pki.admin_o or None)

    def certificates(self) -> list[CertInfo]:
        return read_certificates(self.directory)


def cluster_pki(inventory: Inventory, *, graph: ComponentGraph | None = None, clock: Clock = utcnow) -> ClusterPki:
    """The cluster's PKI next to ``inventory``, its CA made on first use (under the PKI's lock).

    ``$PIPROV_CA_PASSPHRASE``, when set, encrypts a new CA key and opens an
    existing encrypted one (needed only when a certificate must be issued).
    """
    if graph is None:
        from piprov.graph import load_graph

        graph = load_graph()
    directory = pki_dir(inventory)
    passphrase = passphrase_from_env()
    ensure_ca(directory, f"{inventory.cluster_name} CA", clock(), passphrase)
    return ClusterPki(directory, graph, clock=clock, passphrase=passphrase)


def expiring(certs: list[CertInfo], now: dt.datetime | None = None) -> list[CertInfo]:
    """The certificates with fewer than 30 days left (or already expired)."""
    when = now or utcnow()
    return [c for c in certs if c.not_after - when < px.RENEW_BEFORE]



def expiry_warnings(inventory: Inventory, now: dt.datetime | None = None) -> list[str]:
    """What `status` says of the cluster's certificates that expire within 30 days (read from disk only)."""
    warnings = []
    when = now or utcnow()
    for c in expiring(read_certificates(pki_dir(inventory)), when):
        who = f"{c.node}/{c.name}" if c.node else c.name
        left = c.days_left(when)
        state = f"expired on {c.not_after:%Y-%m-%d}" if left < 0 else f"expires {c.not_after:%Y-%m-%d} ({left} days left)"
        fix = ("a new CA means new certificates everywhere: see docs on rotating the CA" if c.name == "ca" and not c.node
               else "`piprov up --rolling` re-issues it and rolls it out node by node")
        warnings.append(f"certificate {who} {state}: {fix}")
    return warnings
