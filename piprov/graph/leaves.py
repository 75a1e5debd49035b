"""What a component leaves on a node at run time (the playbook's ``leaves``): what `piprov reset` removes.

Its units and files are in the record piprov keeps (plan.owned); these are the
things the running stack makes that piprov never wrote: containers on a docker
daemon, data and runtime directories (with the mounts under them), network
interfaces, iptables chains and the rules that jump to them or match the pod
network. Strings are one-line jinja over ``network`` and ``vars``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from piprov import yamlsrc
from piprov.errors import GraphError

_PATH_RE = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9._-]{1,15}$")
_CHAIN_RE = re.compile(r"^[A-Z][A-Z0-9_-]{0,27}$")
_KEYS = ("containers", "paths", "data", "interfaces", "iptables_chains", "iptables_match", "forward_policy",
         "routes_in")


@dataclass(frozen=True)
class Containers:
    """The daemon a component runs, whose containers go (before the daemon stops), and its data root."""

    host: str  # jinja: the daemon's socket
    root: str  # its --graph/--data-root: containers/ under it is what the audit looks at


@dataclass(frozen=True)
class Leaves:
    containers: Containers | None = None
    paths: tuple[str, ...] = ()  # removed with what is mounted under them
    data: tuple[str, ...] = ()  # removed only with --wipe-data (etcd's store)
    interfaces: tuple[str, ...] = ()
    iptables_chains: tuple[str, ...] = ()  # chain names, or prefixes ending in '*'
    iptables_match: tuple[str, ...] = ()  # jinja: a rule holding one of these words goes (the pod network)
    routes_in: tuple[str, ...] = ()  # jinja CIDRs: a route to a destination inside one goes (host-gw's)
    # The filter table's FORWARD policy goes back to this (dockerd sets DROP when it turns ip_forward on).
    forward_policy: str | None = None

    @property
    def empty(self) -> bool:
        return self == Leaves()


def parse_leaves(r: yamlsrc.Reader[GraphError], component: str) -> Leaves:
    if "leaves" not in r.data:
        return Leaves()
    lr = r.sub("leaves", r.data["leaves"], f"component {component}: leaves")
    lr.check_keys(_KEYS)
    containers = None
    if "containers" in lr.data:
        cr = lr.sub("containers", lr.data["containers"], f"component {component}: leaves.containers")
        cr.check_keys(["host", "root"])
        containers = Containers(cr.text("host"), cr.text("root", pattern=_PATH_RE))
    chains = lr.str_list("iptables_chains", pattern=re.compile(_CHAIN_RE.pattern.rstrip("$") + r"\*?$"))
    return Leaves(
        containers=containers,
        paths=lr.str_list("paths", pattern=_PATH_RE),
        data=lr.str_list("data", pattern=_PATH_RE),
        interfaces=lr.str_list("interfaces", pattern=_IFACE_RE),
        iptables_chains=chains,
        iptables_match=lr.str_list("iptables_match"),
        routes_in=lr.str_list("routes_in"),
        forward_policy=lr.text("forward_policy", pattern=re.compile(r"^(ACCEPT|DROP)$")) if "forward_policy" in lr.data
        else None,
    )
