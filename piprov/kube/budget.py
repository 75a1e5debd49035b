"""A disruption budget kept by piprov where the apiserver has none (1.1): pure decisions.

Kubernetes 1.1 has no PodDisruptionBudgets and no Eviction API (see
:mod:`.discovery`): kubectl 1.2's drain DELETEs every pod of the node at once,
and a replicated workload whose replicas all sit on the node stops serving
until the replacements are Ready. Where discovery lists no budgets, piprov's
drain keeps one itself, the one a PodDisruptionBudget with ``maxUnavailable: 1``
would keep on 1.18: of each ReplicationController, the node's pods go one at a
time, and the next only once the controller has its desired number of replicas
Ready again (the replacements land on other nodes: the node is cordoned).
Pods of different controllers go in parallel. A controller of one replica
cannot be kept serving: its pod goes at once, as kubectl deletes it without a
budget, and the drain says so.

What 1.1 offers to count with (kubernetes pkg/api/v1/types.go, read at v1.0.0
and at v1.2.0-alpha.1-867-g41a7f57, vendored as
Godeps/_workspace/src/k8s.io/kubernetes/pkg/api/v1/types.go in
CAP-ALL/kube2consul; 1.1 lies between the two and they agree):
``ReplicationControllerSpec`` has ``replicas`` (``*int``, defaulted to 1) and
``selector`` (``map[string]string``); ``ReplicationControllerStatus`` has only
``replicas`` and ``observedGeneration`` (no ``readyReplicas``: that came
later). So readiness is counted from the pods: a GET of the RC for the desired
count and selector, and a pod list with ``labelSelector`` (the v1 ListOptions
parameter) for the pods it selects; a pod serves when its ``Ready`` condition
(PodReady, "Ready", in both files) is True and it has no ``deletionTimestamp``.
The 1.1 replication manager counts its pods by that selector too (the stand-in's
controller_manager.py docstring cites pkg/controller/replication at 1.1).

Pods on the draining node that piprov has not deleted yet still serve and are
counted; a pod that is not Ready serves nothing and goes without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from piprov.errors import ClusterError
from piprov.kube.pods import controller_of, is_finished, is_terminating, pod_key, pod_uid

JSON = dict[str, Any]

# The controller kind whose desired count and selector piprov reads (core v1 on every release it supports).
BUDGETED_KIND = "ReplicationController"


class BudgetError(ClusterError):
    """A controller object piprov cannot read a budget from: it does not guess a replica count."""


@dataclass(frozen=True)
class Owner:
    namespace: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/replicationcontrollers/{self.name}"


@dataclass(frozen=True)
class RcSpec:
    replicas: int
    selector: dict[str, str]

    @property
    def query(self) -> str:
        """The selector as a labelSelector value (equality terms, comma-separated: 1.1's labels.Parse)."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))


@dataclass
class Admission:
    """What one round of a drain may delete of one controller's pods on the node, and why not more."""

    go: list[JSON] = field(default_factory=list)
    waiting: str = ""  # what the rest waits for ("" when nothing waits)
    single: bool = False  # one desired replica: it cannot be kept serving


def identity(pod: Mapping[str, Any]) -> str:
    """How a drain remembers a pod it acted on: its uid, or namespace/name where it has none."""
    return pod_uid(pod) or pod_key(pod)


def owner_of(pod: Mapping[str, Any]) -> Owner | None:
    """The pod's ReplicationController (from ownerReferences or 1.1's created-by), None for any other owner."""
    ref, _ = controller_of(pod)
    if ref is None or ref.kind != BUDGETED_KIND or not ref.name:
        return None
    meta = pod.get("metadata")
    ns = (meta.get("namespace") if isinstance(meta, dict) else None) or "default"
    return Owner(str(ns), ref.kind, ref.name)


def rc_spec(rc: Mapping[str, Any], owner: Owner) -> RcSpec:
    """The desired replicas and selector of a GET of the RC; raises BudgetError on anything else."""
    spec = rc.get("spec")
    if rc.get("kind", BUDGETED_KIND) != BUDGETED_KIND or not isinstance(spec, dict):
        raise BudgetError(f"GET {owner.path} is not a ReplicationController (kind {rc.get('kind')!r})")
    replicas = spec.get("replicas", 1)  # v1 defaults a missing count to 1
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise BudgetError(f"{owner}: spec.replicas is {replicas!r}, not a count: the drain does not guess one")
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not sel or not all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in sel.items()):
        raise BudgetError(f"{owner}: spec.selector is {sel!r}, not a label map: its pods cannot be counted")
    return RcSpec(replicas, dict(sel))


def pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status")
    conds = status.get("conditions") if isinstance(status, dict) else None
    return isinstance(conds, list) and any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
                                           for c in conds)


def node_of(pod: Mapping[str, Any]) -> str:
    spec = pod.get("spec")
    return str((spec.get("nodeName") if isinstance(spec, dict) else None) or "")


def _labels(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = pod.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return labels if isinstance(labels, dict) else {}


def serving(pod: Mapping[str, Any]) -> bool:
    """Ready, scheduled, not being deleted, not finished."""
    return pod_ready(pod) and bool(node_of(pod)) and not is_terminating(pod) and not is_finished(pod)


def admit(spec: RcSpec, owner: Owner, selected: Iterable[Any], node: str, candidates: list[JSON],
          acted: set[str]) -> Admission:
    """Which of ``candidates`` (the controller's pods on ``node`` not yet deleted) may go now.

    ``selected`` is the pod list of the RC's selector; ``acted`` what the
    drain already deleted. At most one serving pod goes per call, and only
    while the controller has its desired replicas serving (so that after it
    goes at most one is missing); pods that do not serve go at once.
    """
    mine = [p for p in selected if isinstance(p, dict)
            and all(_labels(p).get(k) == v for k, v in spec.selector.items())]
    elsewhere = sum(1 for p in mine if node_of(p) != node and serving(p))
    here = sum(1 for p in mine if node_of(p) == node and serving(p) and identity(p) not in acted)
    out = Admission(go=[p for p in candidates if not serving(p)])
    ready = [p for p in candidates if serving(p)]
    if not ready:
        return out
    if spec.replicas <= 1:
        out.go += ready
        out.single = True
        return out
    if elsewhere + here >= spec.replicas:
        out.go.append(ready.pop(0))
        here -= 1
    if ready:
        out.waiting = (f"{owner}: {elsewhere + here} of {spec.replicas} replicas ready ({elsewhere} on other nodes, "
                       f"{here} still on {node}); its next pod goes when {spec.replicas} are ready "
                       f"(Ready pods matching {spec.query} that are not being deleted)")
    return out
