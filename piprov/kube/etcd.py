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
from piprov.inventory.model import Inventory
from piprov.kube.client import JSON, client_tls, json_object


def etcd_url(inventory: Inventory) -> str:
    """etcd's client port on the master's LAN address: TLS, client certificates only."""
    return f"https://{inventory.master.address}:{inventory.network.etcd_port}"


def _etcd(inventory: Inventory, method: str, url: str, timeout: float = 10.0) -> tuple[int, JSON]:
    try:
        resp = http.request(method, url, timeout=timeout, tls=client_tls(inventory))
    except http.Unreachable as e:
        raise ClusterError(f"cannot reach etcd at {url}: {e.reason}",
                           hint="is the master's etcd up? `piprov status` shows it") from None
    return resp.status, json_object(resp.body)


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
