"""Flannel's subnet leases in the master's etcd (v2 HTTP API): find and release a node's lease.

A removed node's lease would otherwise block its subnet until the lease's TTL
(24 h). The key prefix is the pod network's, read from the graph
(``ComponentGraph.pod_network_prefix``) by the caller.
"""

from __future__ import annotations

import json
import urllib.parse

from piprov import http
from piprov.errors import ClusterError
from piprov.facts.model import EtcdKeyFacts
from piprov.inventory.model import Inventory, refuse_documentation_address
from piprov.kube.client import JSON, client_tls, json_object


def etcd_url(inventory: Inventory) -> str:
    """etcd's client port on the master's LAN address: TLS, client certificates only. Every request
    to etcd is built on it, so it refuses a documentation address (as kube.client.api_for does)."""
    refuse_documentation_address(inventory.master)
    return f"https://{inventory.master.address}:{inventory.network.etcd_port}"


def _etcd(inventory: Inventory, method: str, url: str, timeout: float = 10.0) -> tuple[int, JSON]:
    try:
        resp = http.request(method, url, timeout=timeout, tls=client_tls(inventory))
    except http.Unreachable as e:
        raise ClusterError(f"cannot reach etcd at {url}: {e.reason}",
                           hint="is the master's etcd up? `piprov status` shows it") from None
    return resp.status, json_object(resp.body)


def key_facts(key: str, status: int, body: bytes) -> EtcdKeyFacts:
    """What etcd's v2 GET of ``key`` said (pure): its value, missing, or unavailable.

    etcd's v2 keys API (etcd-io/etcd Documentation/api.md of the 2.x line, "Get
    the value of a key"; the same under 3.x's v2 API): 200 with {"node": {"key",
    "value"}}; errorCode 100 "Key Not Found" (HTTP 404). A directory (no value), another error, or garbage is
    "unavailable": the plan then writes the key once etcd is healthy.
    """
    answer = json_object(body)
    if status == 404:
        return EtcdKeyFacts(key, "missing" if answer.get("errorCode") == 100 else "unavailable")
    node = answer.get("node") if status == 200 else None
    value = node.get("value") if isinstance(node, dict) and not node.get("dir") else None
    return EtcdKeyFacts(key, "ok", value) if isinstance(value, str) else EtcdKeyFacts(key, "unavailable")


def read_keys(inventory: Inventory, keys: list[str], timeout: float = 5.0) -> dict[str, EtcdKeyFacts]:
    """The current values of ``keys`` in the master's etcd, from the controller (TLS, admin certificate).

    The facts of etcd's keys: read over the v2 API the flannel leases use, not
    through `docker exec ... etcdctl` on the master, which cost the master's
    facts command ~150 ms on the lab (a container exec and etcdctl's start) and
    more on a Pi. Nothing answering is "unavailable" for every key.
    """
    out: dict[str, EtcdKeyFacts] = {}
    for key in keys:
        url = etcd_url(inventory) + "/v2/keys" + urllib.parse.quote(key)
        try:
            resp = http.request("GET", url, timeout=timeout, tls=client_tls(inventory))
        except http.Unreachable:
            return {k: out.get(k) or EtcdKeyFacts(k, "unavailable") for k in keys}
        out[key] = key_facts(key, resp.status, resp.body)
    return out


def find_leases(listing: JSON, address: str) -> list[str]:
    """Keys of the flannel subnet leases held by ``address`` in an etcd v2 listing (pure)."""
    out = []
    for n in ((listing.get("node") or {}).get("nodes") or []):
        try:
            value = json.loads(n.get("value") or "{}")
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("PublicIP") == address:
            out.append(str(n.get("key")))
    return out


def flannel_leases(inventory: Inventory, address: str, prefix: str) -> list[str]:
    status, body = _etcd(inventory, "GET", etcd_url(inventory) + f"/v2/keys{prefix}/subnets")
    if status == 404:
        return []
    if status != 200:
        raise ClusterError(f"etcd answered {status} listing flannel's subnet leases")
    return find_leases(body, address)


def release_flannel_lease(inventory: Inventory, address: str, prefix: str) -> list[str]:
    """Delete the subnet leases whose PublicIP is ``address``; returns the keys deleted."""
    gone = []
    for key in flannel_leases(inventory, address, prefix):
        status, _ = _etcd(inventory, "DELETE", etcd_url(inventory) + "/v2/keys" + urllib.parse.quote(key))
        if status not in (200, 404):
            raise ClusterError(f"etcd answered {status} deleting flannel lease {key}")
        gone.append(key)
    return gone
