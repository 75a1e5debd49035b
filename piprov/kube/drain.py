"""Pods, disruption budgets, cordon and drain: moving a node's pods away safely.

Safety rules, each learnt from someone else's outage:

* We cordon a node only if it is Ready and schedulable, and mark it with the
  annotation ``piprov.io/cordoned-by``; we uncordon only nodes carrying that
  mark, so a node an admin had cordoned stays cordoned. The mark lives on the
  Node, so it survives a crash of piprov and a lost state file.
* Pods leave through the eviction API, so PodDisruptionBudgets hold; a 429 is
  reported with the budget's name and retried until the timeout, never a
  silent hang.

Nothing prints: progress goes to a ``say(text)`` callback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from piprov.errors import ClusterError, PiprovError
from piprov.kube.client import JSON, KubeApi, is_ready, is_unschedulable, quote

CORDON_ANNOTATION = "piprov.io/cordoned-by"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CREATED_BY_ANNOTATION = "kubernetes.io/created-by"  # the 1.1-era controller reference

Say = Callable[[str], None]


def quiet(_: str) -> None:
    pass


class DrainError(ClusterError):
    """A drain did not finish: pods remain on the node."""


# -- pods and budgets (pure) ----------------------------------------------------------------------------


def is_mirror(pod: JSON) -> bool:
    return MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def has_controller(pod: JSON) -> bool:
    meta = pod.get("metadata") or {}
    if any(r.get("controller") for r in meta.get("ownerReferences") or []):
        return True
    return CREATED_BY_ANNOTATION in (meta.get("annotations") or {})


def is_finished(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_terminating(pod: JSON) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_key(pod: JSON) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


@dataclass(frozen=True)
class PodSort:
    """The pods of a node as a drain sees them."""

    evict: list[JSON]
    mirror: list[JSON]
    unmanaged: list[JSON]  # no controller: nothing would recreate them


def sort_pods(pods: Iterable[JSON], *, force: bool) -> PodSort:
    evict: list[JSON] = []
    mirror: list[JSON] = []
    unmanaged: list[JSON] = []
    for p in pods:
        if is_mirror(p):
            mirror.append(p)
        elif has_controller(p) or is_finished(p) or force:
            evict.append(p)
        else:
            unmanaged.append(p)
    return PodSort(evict, mirror, unmanaged)


def _expression_holds(e: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = str(e.get("key")), e.get("operator"), e.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return not (key in labels and labels[key] in values)
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels; empty selects nothing."""
    if not selector:
        return False
    labels = labels or {}
    ml = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not ml and not exprs:
        return False
    if any(labels.get(k) != v for k, v in ml.items()):
        return False
    return all(_expression_holds(e, labels) for e in exprs)


def pdbs_for(api: KubeApi, pod: JSON) -> list[str]:
    """Names of the PodDisruptionBudgets selecting ``pod`` (to name them in a refusal)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    try:
        items = api.get(f"/apis/policy/v1beta1/namespaces/{quote(ns)}/poddisruptionbudgets")
    except ClusterError:
        return []
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return [str((b.get("metadata") or {}).get("name")) for b in items.get("items") or []
            if selector_matches((b.get("spec") or {}).get("selector"), labels)]


def pods_per_node(api: KubeApi) -> dict[str, list[str]]:
    """Non-mirror, active pods by node name (for the summary of what moved where)."""
    out: dict[str, list[str]] = {}
    for p in api.pods():
        if is_mirror(p) or is_finished(p) or is_terminating(p):
            continue
        node = (p.get("spec") or {}).get("nodeName") or "(pending)"
        out.setdefault(node, []).append(pod_key(p))
    return out


# -- cordon / uncordon ----------------------------------------------------------------------------------


def cordoned_by_us(node: JSON) -> bool:
    return CORDON_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {})


def get_node(api: KubeApi, name: str) -> JSON:
    obj = api.node(name)
    if obj is None:
        raise ClusterError(f"Kubernetes has no Node {name!r}", host=name,
                           hint="`kubectl get nodes` lists the registered nodes (named by address)")
    return obj


def cordon(api: KubeApi, name: str, why: str = "drain") -> bool:
    """Mark ``name`` unschedulable if it is Ready and schedulable; True if it is ours to uncordon."""
    obj = get_node(api, name)
    if is_unschedulable(obj):
        return cordoned_by_us(obj)
    if not is_ready(obj):
        return False
    api.patch_node(name, {"metadata": {"annotations": {CORDON_ANNOTATION: f"piprov {why}"}},
                          "spec": {"unschedulable": True}})
    return True


def uncordon(api: KubeApi, name: str, *, only_ours: bool = False) -> bool:
    """Make ``name`` schedulable again; with ``only_ours``, only if piprov cordoned it. True if changed."""
    obj = api.node(name)
    if obj is None:
        return False
    if only_ours and not cordoned_by_us(obj):
        return False
    if not is_unschedulable(obj) and not cordoned_by_us(obj):
        return False
    api.patch_node(name, {"metadata": {"annotations": {CORDON_ANNOTATION: None}}, "spec": {"unschedulable": False}})
    return True


# -- drain ----------------------------------------------------------------------------------------------


@dataclass
class DrainResult:
    node: str
    ok: bool
    we_cordoned: bool
    evicted: list[str] = field(default_factory=list)
    mirror_skipped: list[str] = field(default_factory=list)
    refusals: dict[str, str] = field(default_factory=dict)  # pod -> PDB name(s)
    seconds: float = 0.0
    message: str = ""


def drain(
    api: KubeApi,
    name: str,
    *,
    timeout: float = 300.0,
    force: bool = False,
    keep_cordoned: bool = False,
    unreachable: bool = False,
    say: Say = quiet,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DrainResult:
    """Cordon ``name``, evict its pods, wait until none is left; raises DrainError on failure.

    On failure the node is uncordoned again if we cordoned it (unless
    ``keep_cordoned``). Mirror pods (static pods of the kubelet) stay. With
    ``unreachable`` (the node is dead), a pod being deleted counts as gone: no
    kubelet will ever confirm its end.
    """
    start = clock()
    sorted_ = sort_pods(api.pods_on(name), force=force)
    if sorted_.unmanaged:
        names = ", ".join(pod_key(p) for p in sorted_.unmanaged)
        raise DrainError(
            f"cannot drain: pods not managed by a controller would be lost: {names}",
            host=name, hint="delete them yourself, or pass --force to evict them anyway (they will not come back)",
        )
    we = _cordon_saying(api, name, say)
    result = DrainResult(name, False, we, mirror_skipped=[pod_key(p) for p in sorted_.mirror])
    try:
        _evict_until_empty(api, result, timeout=timeout, unreachable=unreachable, deadline=start + timeout,
                           say=say, poll=poll, clock=clock, sleep=sleep)
    except BaseException as e:
        _undo_cordon(api, result, keep_cordoned, say)
        if isinstance(e, DrainError):
            e.message += "; the node was " + ("left cordoned" if keep_cordoned or not we else "uncordoned again")
        raise
    result.ok = True
    result.seconds = clock() - start
    result.message = f"{len(result.evicted)} pods evicted in {result.seconds:.1f} s"
    return result


def _cordon_saying(api: KubeApi, name: str, say: Say) -> bool:
    obj = get_node(api, name)
    we = cordon(api, name)
    if we:
        say(f"{name}: cordoned")
    elif is_unschedulable(obj):
        say(f"{name}: already cordoned by someone else: it stays cordoned whatever happens")
    else:
        say(f"{name}: not Ready: not cordoned")
    return we


def _undo_cordon(api: KubeApi, result: DrainResult, keep_cordoned: bool, say: Say) -> None:
    if result.we_cordoned and not keep_cordoned:
        try:
            uncordon(api, result.node, only_ours=True)
            say(f"{result.node}: uncordoned again (the drain did not finish)")
        except PiprovError:
            pass


def _evict_until_empty(
    api: KubeApi, result: DrainResult, *, timeout: float, unreachable: bool, deadline: float, say: Say,
    poll: float, clock: Callable[[], float], sleep: Callable[[float], None],
) -> None:
    name = result.node
    reported: dict[str, str] = {}
    while True:
        left = sort_pods(api.pods_on(name), force=True).evict
        if unreachable:
            left = [p for p in left if not is_terminating(p)]
        if not left:
            return
        for p in left:
            if not is_terminating(p):
                _evict_one(api, result, p, reported, say)
        if clock() >= deadline:
            raise _timeout_error(result, [pod_key(p) for p in left], timeout)
        sleep(poll)


def _evict_one(api: KubeApi, result: DrainResult, pod: JSON, reported: dict[str, str], say: Say) -> None:
    meta = pod.get("metadata") or {}
    key = pod_key(pod)
    resp = api.evict(meta.get("namespace") or "default", str(meta.get("name")))
    if resp.status == 429:
        budgets = ", ".join(pdbs_for(api, pod)) or "unknown (the API did not say)"
        result.refusals[key] = budgets
        if reported.get(key) != budgets:
            reported[key] = budgets
            say(f"{result.node}: eviction of {key} refused by PodDisruptionBudget {budgets}; retrying")
    elif resp.status in (200, 201):
        if key not in result.evicted:
            result.evicted.append(key)
            say(f"{result.node}: evicted {key}")
        result.refusals.pop(key, None)


def _timeout_error(result: DrainResult, pending: list[str], timeout: float) -> DrainError:
    why = "; ".join(f"{k}: refused by PodDisruptionBudget {b}" for k, b in result.refusals.items() if k in pending)
    return DrainError(
        f"drain timed out after {timeout:g} s with {len(pending)} pods left ({', '.join(pending)})"
        + (f"; {why}" if why else ""),
        host=result.node,
        hint="a disruption budget allows no more evictions until its pods are ready elsewhere: "
        "check `kubectl get pdb` and free capacity, or raise --timeout",
    )
