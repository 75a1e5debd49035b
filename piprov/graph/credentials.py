"""The playbooks' certificates: a component's ``credentials`` and the top-level ``pki``
(and ``daemon_config``, the other per-component section that is not the graph).

Which component owns which certificate file on a node (so that a changed
certificate restarts the right units) is stack knowledge: it is read here
from ``playbooks/*.yaml``, every problem a GraphError naming file:line.
The certificates themselves are made by :mod:`piprov.pki`.
"""

from __future__ import annotations

import re
from typing import Iterable, cast

from piprov import yamlsrc
from piprov.errors import GraphError
from piprov.graph.expr import syntax_problem
from piprov.graph.model import (CREDENTIAL_KINDS, Component, Credential, CredentialKind, DaemonConfig, EtcdBackup,
                                 PkiSettings)
from piprov.inventory.model import SWITCHES, Role

Reader = yamlsrc.Reader[GraphError]

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9@_.:-]+\.(service|socket|path|timer|target|mount)$")
_DIR_RE = re.compile(r"^/[A-Za-z0-9._/@+-]+$")


def _expression(r: Reader, key: str, text: str) -> str:
    problem = syntax_problem(text)
    if problem is not None:
        raise r.err(key, f"{key!r} is not a valid jinja expression: {problem}")
    return text


def _credential(r: Reader, component: str, roles: tuple[Role, ...], units: tuple[str, ...]) -> Credential:
    r.check_keys(["name", "kind", "cn", "o", "sans", "roles", "restarts"])
    name = r.text("name", pattern=_NAME_RE)
    kind = r.text("kind")
    if kind not in CREDENTIAL_KINDS:
        raise r.err("kind", f"unknown kind {kind!r} (kinds are: {', '.join(CREDENTIAL_KINDS)})")
    if kind == "ca":
        if name != "ca":
            raise r.err("name", "the CA's certificate is named 'ca' (ca.crt)")
        for key in ("cn", "o", "sans"):
            if key in r.data:
                raise r.err(key, f"'{key}' does not apply to the CA's certificate: the PKI makes it")
    elif name == "ca":
        raise r.err("name", "'ca' is the CA's certificate: give it kind ca")
    cn = _expression(r, "cn", r.text("cn")) if kind != "ca" else ""
    o = _expression(r, "o", r.text("o")) if "o" in r.data else ""
    sans = tuple(_expression(r, "sans", s) for s in r.str_list("sans"))
    if sans and kind != "server":
        raise r.err("sans", "only a server certificate has names (SANs)")
    own = r.str_list("roles") or roles
    for role in own:
        if role not in roles:
            raise r.err("roles", f"role {role!r} is not one of {component}'s roles ({', '.join(roles)})")
    restarts = r.str_list("restarts", pattern=_UNIT_RE)
    for u in restarts:
        if u not in units:
            raise r.err("restarts", f"restarts {u!r}, which is not one of {component}'s units")
    return Credential(name, cast(CredentialKind, kind), cn, o, sans, cast(tuple[Role, ...], own), restarts)


def parse_credentials(r: Reader, component: str, roles: tuple[Role, ...],
                      units: tuple[str, ...]) -> tuple[Credential, ...]:
    out: list[Credential] = []
    items = r.items("credentials")
    for i in range(len(items)):
        cr = r.item(items, i, f"component {component}: credential")
        cred = _credential(cr, component, roles, units)
        if any(c.name == cred.name for c in out):
            raise cr.err("name", f"credential {cred.name!r} listed twice")
        out.append(cred)
    return tuple(out)


def parse_daemon_config(r: Reader, component: str) -> DaemonConfig | None:
    """A component's ``daemon_config: {path, keys: {flag: key}}``."""
    if "daemon_config" not in r.data:
        return None
    dr = r.sub("daemon_config", r.data.get("daemon_config"), f"component {component}: daemon_config")
    dr.check_keys(["path", "keys"])
    kr = dr.sub("keys", dr.data.get("keys") or {}, f"component {component}: daemon_config keys")
    keys = {str(flag): kr.text(str(flag), pattern=_NAME_RE) for flag in kr.data}
    return DaemonConfig(dr.text("path", pattern=_DIR_RE), keys)


def parse_pki(r: Reader) -> PkiSettings:
    """The top-level ``pki``: ``dir`` on the nodes, ``admin: {cn, o}`` for the controller's certificate."""
    r.check_keys(["dir", "admin"])
    ar = r.sub("admin", r.data.get("admin"), "pki.admin")
    ar.check_keys(["cn", "o"])
    return PkiSettings(r.text("dir", pattern=_DIR_RE).rstrip("/"), ar.text("cn"), ar.text("o", default="") if "o" in ar.data else "")


def check_credentials(components: Iterable[Component], pki: PkiSettings | None) -> None:
    """A credential needs the playbooks' ``pki``; no two components give a node the same file."""
    comps = list(components)
    if pki is None:
        for c in comps:
            if c.credentials:
                raise GraphError(f"component {c.name} has credentials, but no playbook has a top-level 'pki'",
                                 location=c.location)
        return
    for i, a in enumerate(comps):
        for b in comps[i + 1:]:
            for ca in a.credentials:
                for cb in b.credentials:
                    shared = set(ca.roles) & set(cb.roles)
                    if ca.name == cb.name and shared:
                        raise GraphError(
                            f"credential {ca.name} is given to role {sorted(shared)[0]} by both {a.name} and "
                            f"{b.name}", location=b.location,
                            hint="a node gets each file from one component: narrow one of them with 'roles'")


def parse_when(r: Reader) -> str | None:
    """A component's ``when:``: the inventory switch it needs (inventory.model.SWITCHES), or None."""
    if "when" not in r.data:
        return None
    switch = r.text("when")
    if switch not in SWITCHES:
        raise r.err("when", f"when: {switch!r} is not an inventory switch ({', '.join(SWITCHES)})")
    return switch


def parse_etcd_backup(r: Reader, component: str) -> EtcdBackup | None:
    """A component's ``backup``: how `piprov backup` reaches the etcd data it holds."""
    if "backup" not in r.data:
        return None
    br = r.sub("backup", r.data["backup"], f"component {component}: backup")
    br.check_keys(["exec", "version", "data_dir", "host_data_dir", "v3_client"])
    exprs = {k: br.text(k) for k in ("exec", "version", "v3_client")}
    for k, v in exprs.items():
        problem = syntax_problem(v)
        if problem is not None:
            raise br.err(k, f"{k!r} is not a valid jinja expression: {problem}")
    dirs = {k: br.text(k, pattern=re.compile(r"^(/[A-Za-z0-9._-]+)+$")) for k in ("data_dir", "host_data_dir")}
    return EtcdBackup(exprs["exec"], exprs["version"], dirs["data_dir"], dirs["host_data_dir"], exprs["v3_client"])
