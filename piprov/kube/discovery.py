"""What the apiserver can do, decided from its discovery documents as kubectl decides it.

Never from the version string: ``/version`` is read for messages only.

* Eviction: kubernetes/kubectl tag kubernetes-1.18.19, pkg/drain/drain.go
  ``CheckEvictionSupport``: GET /apis (``ServerGroups``) must list a ``policy``
  group, and GET /api/v1 (``ServerResourcesForGroupVersion("v1")``) a resource
  named ``pods/eviction`` of kind ``Eviction``; the Eviction is then sent with
  the policy group's preferred version. Without a policy group kubectl reads no
  /api/v1 and DELETEs (``deletePods``). 1.1 has neither (its /apis lists
  extensions/v1beta1 only), 1.18 both (policy/v1beta1).
* PodDisruptionBudgets are listed from policy/v1beta1 only where /apis lists
  that version (1.1 lacks the group; 1.25 removed the version).
* Node leases: with coordination.k8s.io in /apis the 1.18 kubelet renews
  kube-node-lease/NODE every 10 s (kubernetes v1.18 pkg/kubelet/nodelease/
  controller.go: ``CoordinationV1().Leases(corev1.NamespaceNodeLease)``, renew
  interval 0.25 x 40 s) and re-posts an unchanged Node status only every 5 min
  (pkg/kubelet/apis/config/v1beta1/defaults.go: NodeStatusReportFrequency 5m),
  so freshness is the lease's ``spec.renewTime`` changing, not the Ready
  condition's ``lastHeartbeatTime``. Two reads are compared with each other,
  never with our clock (a Pi without an RTC may be minutes off).

The capabilities are read once per run and apiserver (two or three GETs) and
cached; :func:`forget` drops them after the apiserver itself was replaced.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from piprov.errors import ClusterError
from piprov.kube.client import JSON, KubeApi, NodeRead, heartbeat, quote, ready_state

# GET path -> (status, body as a JSON object); status 404: the document does not exist on that server.
Fetch = Callable[[str], "tuple[int, JSON]"]

LEASE_NAMESPACE = "kube-node-lease"


class DiscoveryError(ClusterError):
    """A discovery document piprov cannot read: it does not guess what the server can do."""


@dataclass(frozen=True)
class Capabilities:
    git_version: str  # /version's gitVersion ("v1.1.2"), "unknown" if it did not say
    eviction: str | None  # the Eviction's apiVersion ("policy/v1beta1"); None: no Eviction API, pods are DELETEd
    budgets: str | None  # "policy/v1beta1" when discovery lists it: where PodDisruptionBudgets are read
    leases: str | None  # "coordination.k8s.io/v1": node leases say whether a kubelet is reporting

    def describe(self) -> str:
        how = f"evicts through {self.eviction}" if self.eviction else "has no Eviction API (pods are deleted)"
        beat = "node leases" if self.leases else "Node heartbeats"
        return f"apiserver {self.git_version}: {how}; freshness from {beat}"


# -- the documents (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    versions: tuple[str, ...]  # groupVersions, "policy/v1beta1"
    preferred: str


def group_list(doc: Mapping[str, Any] | None, where: str = "/apis") -> dict[str, Group]:
    """An APIGroupList by group name; None (a 404: a server without groups) is an empty list."""
    if doc is None:
        return {}
    groups = doc.get("groups")
    if doc.get("kind", "APIGroupList") != "APIGroupList" or not isinstance(groups, list):
        raise DiscoveryError(f"{where} is not an APIGroupList (kind {doc.get('kind')!r})",
                             hint="is the address in the inventory the cluster's apiserver?")
    out: dict[str, Group] = {}
    for g in groups:
        if not isinstance(g, dict) or not isinstance(g.get("name"), str):
            raise DiscoveryError(f"{where} lists a group without a name: {str(g)[:80]}")
        versions = tuple(str(v.get("groupVersion")) for v in g.get("versions") or [] if isinstance(v, dict))
        pref = g.get("preferredVersion")
        preferred = str(pref.get("groupVersion")) if isinstance(pref, dict) and pref.get("groupVersion") else (
            versions[0] if versions else "")
        out[g["name"]] = Group(versions, preferred)
    return out


def resource_kinds(doc: Mapping[str, Any], where: str = "/api/v1") -> dict[str, str]:
    """An APIResourceList as resource name -> kind ("" where the server says none: 1.1 had no kind field)."""
    resources = doc.get("resources")
    if doc.get("kind", "APIResourceList") != "APIResourceList" or not isinstance(resources, list):
        raise DiscoveryError(f"{where} is not an APIResourceList (kind {doc.get('kind')!r})")
    return {str(r.get("name")): str(r.get("kind") or "") for r in resources if isinstance(r, dict)}


def git_version(doc: Mapping[str, Any] | None) -> str:
    v = (doc or {}).get("gitVersion")
    return v if isinstance(v, str) and v else "unknown"


def needs_core_list(groups: Mapping[str, Group]) -> bool:
    """kubectl reads /api/v1 only when there is a policy group to evict with."""
    return "policy" in groups


def capabilities_from(groups: Mapping[str, Group], core: Mapping[str, str] | None, version: str) -> Capabilities:
    """The decision, from the parsed documents (``core`` None: /api/v1 was not needed)."""
    eviction = None
    policy = groups.get("policy")
    if policy is not None and core is not None and core.get("pods/eviction") == "Eviction":
        eviction = policy.preferred or None
    budgets = "policy/v1beta1" if policy is not None and "policy/v1beta1" in policy.versions else None
    coord = groups.get("coordination.k8s.io")
    leases = coord.preferred or None if coord is not None else None
    return Capabilities(version, eviction, budgets, leases)


# -- reading them (cached per run and apiserver) ----------------------------------------------------------

_cache: dict[str, Capabilities] = {}
_lock = threading.Lock()


def _document(fetch: Fetch, path: str) -> JSON | None:
    status, body = fetch(path)
    if status == 404:
        return None
    if status != 200:
        raise DiscoveryError(f"GET {path} answered {status}: {body.get('message') or body.get('reason') or ''}".strip())
    return body


def read_capabilities(fetch: Fetch) -> Capabilities:
    """GET /apis, /api/v1 (only with a policy group, as kubectl) and /version; raises DiscoveryError."""
    groups = group_list(_document(fetch, "/apis"))
    core = None
    if needs_core_list(groups):
        doc = _document(fetch, "/api/v1")
        if doc is None:
            raise DiscoveryError("GET /api/v1 answered 404: the server lists API groups but no core API")
        core = resource_kinds(doc)
    try:
        version = git_version(_document(fetch, "/version"))
    except DiscoveryError:
        version = "unknown"
    return capabilities_from(groups, core, version)


def capabilities_at(base: str, fetch: Fetch) -> Capabilities:
    """The capabilities of the apiserver at ``base``, read on first use; a failed read is not cached."""
    with _lock:
        if base in _cache:
            return _cache[base]
    caps = read_capabilities(fetch)
    with _lock:
        _cache[base] = caps
    return caps


def api_fetch(api: KubeApi) -> Fetch:
    def fetch(path: str) -> tuple[int, JSON]:
        resp = api.request("GET", path, ok=(200, 404))
        return resp.status, resp.body

    return fetch


def capabilities(api: KubeApi) -> Capabilities:
    return capabilities_at(api.base, api_fetch(api))


def forget(base: str) -> None:
    """Read the capabilities of ``base`` again next time (its apiserver was replaced)."""
    with _lock:
        _cache.pop(base, None)


# -- freshness: is the kubelet reporting? -----------------------------------------------------------------


def lease_path(caps: Capabilities, node: str) -> str | None:
    if caps.leases is None:
        return None
    return f"/apis/{caps.leases}/namespaces/{LEASE_NAMESPACE}/leases/{quote(node)}"


def renew_time(lease: Mapping[str, Any] | None) -> str | None:
    spec = (lease or {}).get("spec")
    t = spec.get("renewTime") if isinstance(spec, dict) else None
    return t if isinstance(t, str) and t else None


def freshness(node: JSON, lease: Mapping[str, Any] | None) -> tuple[bool, str | None, str]:
    """(Ready?, freshness token, what we saw): the lease's renewTime where there is a lease, else the heartbeat.

    The token changes each time the kubelet reports; a kubelet that has not
    created its lease yet (or one from before leases) reports by heartbeat.
    """
    ready, _, detail = ready_state(node)
    if not ready:
        return False, None, detail
    renewed = renew_time(lease)
    if renewed is not None:
        return True, f"lease {renewed}", detail
    beat = heartbeat(node)
    return True, (f"heartbeat {beat}" if beat else None), detail


def ready_reader(api: KubeApi, name: str) -> NodeRead:
    """A NodeRead of Node ``name`` whose freshness follows the server's capabilities (lease or heartbeat)."""

    def read() -> tuple[bool, str | None, str]:
        try:
            obj = api.node(name)
            if obj is None:
                return False, None, "no Node object yet"
            path = lease_path(capabilities(api), name) if ready_state(obj)[0] else None
            resp = api.request("GET", path, ok=(200, 404)) if path else None
        except ClusterError as e:
            return False, None, e.message  # the apiserver restarts during the master's batch
        return freshness(obj, resp.body if resp is not None and resp.status == 200 else None)

    return read


def current_token(api: KubeApi, name: str) -> str | None:
    """The freshness token of ``name`` now (None if not Ready or unreadable): a baseline for a later wait."""
    return ready_reader(api, name)()[1]
