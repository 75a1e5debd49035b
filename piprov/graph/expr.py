"""Small jinja expressions of the playbooks: probe targets, etcdctl prefixes.

One strict environment (an undefined name is an error, never an empty
string) and the context such an expression sees.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Mapping

import jinja2

from piprov.errors import RenderError
from piprov.graph.model import HealthCheck
from piprov.inventory.model import Inventory, Node

EXPR_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


def first_address(cidr: str) -> str:
    """The first host address of a range: what the apiserver gives the ``kubernetes`` service.

    kubernetes/kubernetes pkg/master/master.go (the 1.1 line, ``New``: "Select the
    first valid IP from serviceClusterIPRange to use as the master service IP",
    ``ipallocator.GetIndexedIP(c.ServiceClusterIPRange, 1)``; later lines keep the
    rule in setDefaults).
    """
    return str(ipaddress.ip_network(str(cidr), strict=False).network_address + 1)


EXPR_ENV.filters["first_address"] = first_address


def probe_context(inventory: Inventory, node: Node) -> dict[str, object]:
    """What probe targets and other one-line expressions may refer to."""
    return {
        "node": node,
        "master": inventory.master,
        "network": inventory.network,
        "cluster_name": inventory.cluster_name,
        "inventory": inventory,
    }


@functools.lru_cache(maxsize=512)
def _compiled(text: str) -> jinja2.Template:
    """``text`` compiled once per process: jinja's from_string compiles anew on every call (~0.5 ms),
    and the same few dozen expressions (certificate subjects, probe targets) render for every node of
    every run. A Template renders safely from several threads (the nodes are planned in parallel)."""
    return EXPR_ENV.from_string(text)


def render_expression(text: str, context: Mapping[str, object]) -> str:
    try:
        return _compiled(text).render(context)
    except jinja2.TemplateError as e:
        raise RenderError(f"cannot render {text!r}: {e}") from None


def render_check(check: HealthCheck, context: Mapping[str, object]) -> HealthCheck:
    """``check`` with its target rendered for one node."""
    return HealthCheck(check.probe, render_expression(check.target, context), check.timeout)


def syntax_problem(text: str) -> str | None:
    """Why ``text`` is not a valid expression, or None."""
    try:
        EXPR_ENV.parse(text)
    except jinja2.TemplateSyntaxError as e:
        return e.message or str(e)
    return None
