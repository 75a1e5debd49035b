"""Which pods a drain removes, skips or refuses to touch: pure functions of the pod objects.

The rules are kubectl drain's, read from its source (the release each rule is
from is named where it is encoded):

* kubernetes/kubectl tag kubernetes-1.18.19, pkg/drain/filters.go ``makeFilters``:
  daemonSetFilter, mirrorPodFilter, localStorageFilter, unreplicatedFilter, in
  that order; a finished pod (Succeeded/Failed) passes every one of them.
* kubectl 1.2 (kubernetes/kubernetes pkg/kubectl/cmd/drain.go of the 1.2 line,
  ``GetPodsForDeletionOnNodeDrain``): no ownerReferences yet; a pod's controller
  is the ``kubernetes.io/created-by`` annotation, a JSON ``SerializedReference``
  whose ``reference.kind`` says ReplicationController, DaemonSet, Job or
  ReplicaSet. The 1.1 controllers write it (kubernetes/kubernetes
  pkg/controller/controller_utils.go ``getReplicaAnnotationSet``:
  ``latest.Codec.Encode(&api.SerializedReference{Reference: *createdByRef})``).

Where piprov decides differently from one release, it says so: DaemonSet pods
are skipped and listed by default (kubectl wants ``--ignore-daemonsets`` for
that; ``ignore_daemonsets=False`` refuses as kubectl did without it); the
emptyDir refusal (kubectl 1.3's ``--delete-local-data``) holds on 1.1 too,
because deleting local data is as final there; finished pods are removable on
every version (kubectl 1.18's rule; kubectl 1.2 called an unmanaged finished
pod unreplicated).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

JSON = dict[str, Any]

# kubernetes pkg/kubelet/types (1.1) / k8s.io/api core/v1 MirrorPodAnnotationKey (1.18): the kubelet's static pods.
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# kubernetes pkg/controller/controller_utils.go CreatedByAnnotation (1.1 .. 1.8; dropped by kubernetes#54445).
CREATED_BY_ANNOTATION = "kubernetes.io/created-by"

# kubectl's own words (kubernetes-1.18.19 pkg/drain/filters.go), each followed by piprov's way out.
DAEMONSET_REFUSAL = "DaemonSet-managed pods (drop --no-ignore-daemonsets to skip them)"
LOCAL_DATA_REFUSAL = "pods with local storage (emptyDir: its data is deleted with the pod; use --delete-local-data)"
UNMANAGED_REFUSAL = ("pods not managed by ReplicationController, ReplicaSet, Job, DaemonSet or StatefulSet "
                     "(nothing would recreate them; use --force)")
UNREADABLE_REFUSAL = ("pods whose kubernetes.io/created-by annotation is not a SerializedReference "
                      "(their controller cannot be told; use --force)")
LOCAL_DATA_WARNING = "deleting pods with local storage"
UNMANAGED_WARNING = "deleting pods not managed by a controller (they will not come back)"


@dataclass(frozen=True)
class DrainOptions:
    """What the user allows a drain to do; the defaults are kubectl's except for DaemonSets (see above)."""

    force: bool = False  # remove pods no controller manages
    delete_local_data: bool = False  # remove pods with emptyDir volumes
    ignore_daemonsets: bool = True  # skip DaemonSet pods (False: refuse while there are any)
    grace_period: int = -1  # seconds; negative: each pod's own terminationGracePeriodSeconds (kubectl's -1)


@dataclass(frozen=True)
class ControllerRef:
    kind: str
    name: str
    source: str  # "ownerReferences" or the created-by annotation


def _meta(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = pod.get("metadata")
    return meta if isinstance(meta, dict) else {}


def pod_annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    a = _meta(pod).get("annotations")
    return a if isinstance(a, dict) else {}


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = _meta(pod)
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def pod_uid(pod: Mapping[str, Any]) -> str:
    return str(_meta(pod).get("uid") or "")


def is_mirror(pod: Mapping[str, Any]) -> bool:
    return MIRROR_ANNOTATION in pod_annotations(pod)


def is_finished(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status")
    return isinstance(status, dict) and status.get("phase") in ("Succeeded", "Failed")


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool(_meta(pod).get("deletionTimestamp"))


def has_local_storage(pod: Mapping[str, Any]) -> bool:
    """Any emptyDir volume (kubectl ``hasLocalStorage``: ``volume.EmptyDir != nil``)."""
    spec = pod.get("spec")
    vols = spec.get("volumes") if isinstance(spec, dict) else None
    return isinstance(vols, list) and any(isinstance(v, dict) and v.get("emptyDir") is not None for v in vols)


def created_by(pod: Mapping[str, Any]) -> tuple[ControllerRef | None, bool]:
    """The 1.1 controller reference: (reference or None, whether the annotation was readable)."""
    raw = pod_annotations(pod).get(CREATED_BY_ANNOTATION)
    if raw is None:
        return None, True
    try:
        doc = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        doc = None
    ref = doc.get("reference") if isinstance(doc, dict) else None
    kind = ref.get("kind") if isinstance(ref, dict) else None
    if not isinstance(ref, dict) or not isinstance(kind, str) or not kind:
        return None, False
    return ControllerRef(kind, str(ref.get("name") or ""), CREATED_BY_ANNOTATION), True


def controller_of(pod: Mapping[str, Any]) -> tuple[ControllerRef | None, bool]:
    """The pod's controller and whether it could be read.

    ownerReferences where the pod has that field (metav1.GetControllerOf: the
    entry with ``controller: true``); a 1.1 apiserver drops the field, so there
    the created-by annotation is the reference, as kubectl 1.2 read it.
    """
    owners = _meta(pod).get("ownerReferences")
    if isinstance(owners, list) and owners:
        for o in owners:
            if isinstance(o, dict) and o.get("controller") is True and isinstance(o.get("kind"), str):
                return ControllerRef(o["kind"], str(o.get("name") or ""), "ownerReferences"), True
        return None, True
    return created_by(pod)


@dataclass
class PodSort:
    """The pods of a node as a drain sees them; ``refused`` and ``warnings`` map kubectl's reason to pod keys."""

    remove: list[JSON] = field(default_factory=list)
    mirror: list[JSON] = field(default_factory=list)
    daemonset: list[JSON] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    def refusal_text(self) -> str:
        return "; ".join(f"{why}: {', '.join(keys)}" for why, keys in self.refused.items())


def _verdict(pod: JSON, opts: DrainOptions) -> tuple[str, str]:
    """(where the pod goes: remove, mirror, daemonset, refused, warn-remove; the reason)."""
    if is_mirror(pod):
        return "mirror", ""
    ref, readable = controller_of(pod)
    finished = is_finished(pod)
    if ref is not None and ref.kind == "DaemonSet" and not finished:
        return ("daemonset", "") if opts.ignore_daemonsets else ("refused", DAEMONSET_REFUSAL)
    if finished:
        return "remove", ""
    if has_local_storage(pod) and not opts.delete_local_data:
        return "refused", LOCAL_DATA_REFUSAL
    if ref is None:
        why = UNMANAGED_REFUSAL if readable else UNREADABLE_REFUSAL
        return ("warn-remove", UNMANAGED_WARNING) if opts.force else ("refused", why)
    if has_local_storage(pod):
        return "warn-remove", LOCAL_DATA_WARNING
    return "remove", ""


def sort_pods(pods: Iterable[JSON], opts: DrainOptions = DrainOptions()) -> PodSort:
    out = PodSort()
    for p in pods:
        if not isinstance(p, dict):
            continue
        where, why = _verdict(p, opts)
        if where == "mirror":
            out.mirror.append(p)
        elif where == "daemonset":
            out.daemonset.append(p)
        elif where == "refused":
            out.refused.setdefault(why, []).append(pod_key(p))
        else:
            out.remove.append(p)
            if where == "warn-remove":
                out.warnings.setdefault(why, []).append(pod_key(p))
    return out


# -- disruption budgets ---------------------------------------------------------------------------------

# kubernetes pkg/registry/core/pod/storage/eviction.go (release-1.18) checkAndDecrement: the 429 carries a
# StatusCause of type "DisruptionBudget" (JSON key "reason") saying "The disruption budget NAME needs ...".
_BUDGET = re.compile(r"disruption budget (\S+)")


def budgets_in_refusal(status: Mapping[str, Any]) -> list[str]:
    """The budget names a 429 Status names in its causes (empty when it names none)."""
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    names: list[str] = []
    for c in causes if isinstance(causes, list) else []:
        if isinstance(c, dict) and c.get("reason") == "DisruptionBudget":
            m = _BUDGET.search(str(c.get("message") or ""))
            if m and m.group(1) not in names:
                names.append(m.group(1))
    return names


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


def budgets_selecting(budget_list: Mapping[str, Any], pod: Mapping[str, Any]) -> list[str]:
    """Names of the PodDisruptionBudgets of a PodDisruptionBudgetList whose selector selects ``pod``."""
    labels = _meta(pod).get("labels")
    labels = labels if isinstance(labels, dict) else {}
    items = budget_list.get("items")
    out = []
    for b in items if isinstance(items, list) else []:
        if not isinstance(b, dict):
            continue
        spec = b.get("spec")
        if isinstance(spec, dict) and selector_matches(spec.get("selector"), labels):
            out.append(str(_meta(b).get("name")))
    return out
