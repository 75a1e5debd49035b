"""Cordon and drain: moving a node's pods away safely, as the apiserver's release allows.

Safety rules, each learnt from someone else's outage:

* We cordon a node only if it is Ready and schedulable, and mark it with the
  annotation ``piprov.io/cordoned-by``; we uncordon only nodes carrying that
  mark, so a node an admin had cordoned stays cordoned. The mark lives on the
  Node, so it survives a crash of piprov and a lost state file.
* Which pods go is decided before anything changes (:mod:`.pods`): mirror and
  DaemonSet pods stay and are listed; unmanaged pods and pods with emptyDir data
  stop the drain, naming each, unless the user allows them.
* How they go follows the server's discovery (:mod:`.discovery`), as kubectl
  drain does: through the Eviction API where there is one, so
  PodDisruptionBudgets hold (a 429 is reported with the budget's name and
  retried until the timeout); without it (1.1), a DELETE with the grace period,
  as kubectl 1.2 drain did. Either way we wait until the pods are gone (kubectl
  1.2 did not wait; 1.18 does). A 404 counts as gone only when a GET of the pod
  says 404 too (or shows a new pod of that name): never silently.
* Where discovery lists no disruption budgets (1.1), piprov keeps one itself
  (:mod:`.budget`): of each ReplicationController, the node's serving pods go
  one at a time, each once the controller has its desired replicas Ready
  again; a drain that cannot keep it within --timeout fails naming the
  controller and what it waited for, as a 429 from a budget does on 1.18.

Nothing prints: progress goes to a ``say(text)`` callback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from piprov.errors import ClusterError, PiprovError
from piprov.kube.budget import Owner, admit, identity, owner_of, rc_spec
from piprov.kube.client import JSON, ApiResponse, KubeApi, is_ready, is_unschedulable, quote
from piprov.kube.discovery import Capabilities, capabilities
from piprov.kube.pods import DrainOptions, PodSort, budgets_in_refusal, budgets_selecting, is_finished, is_mirror, \
    is_terminating, pod_key, pod_uid, sort_pods

CORDON_ANNOTATION = "piprov.io/cordoned-by"

Say = Callable[[str], None]


def quiet(_: str) -> None:
    pass


class DrainError(ClusterError):
    """A drain did not finish: pods remain on the node."""


def pdbs_for(api: KubeApi, caps: Capabilities, pod: JSON) -> list[str]:
    """Names of the PodDisruptionBudgets selecting ``pod`` (to name them in a refusal); none without the API."""
    if caps.budgets is None:
        return []
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    try:
        items = api.get(f"/apis/{caps.budgets}/namespaces/{quote(ns)}/poddisruptionbudgets")
    except ClusterError:
        return []
    return budgets_selecting(items, pod)


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
    how: str = "evicted"  # "evicted" (Eviction API) or "deleted" (DELETE with grace: no Eviction API)
    server: str = "unknown"  # the apiserver's gitVersion
    evicted: list[str] = field(default_factory=list)  # every pod removed, however
    mirror_skipped: list[str] = field(default_factory=list)
    daemonset_skipped: list[str] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)  # what --force / --delete-local-data allowed
    refusals: dict[str, str] = field(default_factory=dict)  # pod -> PDB name(s)
    waiting: dict[str, str] = field(default_factory=dict)  # controller -> what piprov's own budget waits for
    seconds: float = 0.0
    message: str = ""


@dataclass
class _Run:
    """One drain in progress: what it acts with and what it has done so far."""

    api: KubeApi
    caps: Capabilities
    opts: DrainOptions
    result: DrainResult
    say: Say
    acted: set[str] = field(default_factory=set)  # pods whose DELETE or Eviction was accepted (by uid or key)
    gone: set[str] = field(default_factory=set)  # pods a GET showed gone after a 404
    reported: dict[str, str] = field(default_factory=dict)  # pod -> budgets last said (controller -> wait)
    client_budget: bool = False  # the server has no disruption budgets: piprov keeps one (see .budget)
    said: set[str] = field(default_factory=set)  # controllers whose budget-less removal was said once


def refuse_message(sorted_: PodSort) -> str:
    return f"cannot drain: {sorted_.refusal_text()}"


def drain(
    api: KubeApi,
    name: str,
    *,
    timeout: float = 300.0,
    options: DrainOptions = DrainOptions(),
    keep_cordoned: bool = False,
    unreachable: bool = False,
    say: Say = quiet,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DrainResult:
    """Cordon ``name``, evict or delete its pods, wait until they are gone; raises DrainError on failure.

    Refusals (unmanaged or emptyDir pods without the user's leave) are raised
    before the node is touched. On failure the node is uncordoned again if we
    cordoned it (unless ``keep_cordoned``). With ``unreachable`` (the node is
    dead), a pod being deleted counts as gone: no kubelet will confirm its end.
    """
    start = clock()
    caps = capabilities(api)
    sorted_ = sort_pods(api.pods_on(name), options)
    if sorted_.refused:
        raise DrainError(refuse_message(sorted_), host=name,
                         hint="delete them yourself, or pass the flag named after each reason (the pods will not come back)")
    result = DrainResult(name, False, False, how="evicted" if caps.eviction else "deleted", server=caps.git_version,
                         mirror_skipped=[pod_key(p) for p in sorted_.mirror],
                         daemonset_skipped=[pod_key(p) for p in sorted_.daemonset], warnings=sorted_.warnings)
    client_budget = caps.budgets is None and not unreachable  # a dead node's pods serve nothing to keep
    _say_plan(result, caps, say, client_budget)
    result.we_cordoned = _cordon_saying(api, name, say)
    run = _Run(api, caps, options, result, say, client_budget=client_budget)
    try:
        _remove_until_gone(run, timeout=timeout, unreachable=unreachable, deadline=start + timeout, poll=poll,
                           clock=clock, sleep=sleep)
    except BaseException as e:
        _undo_cordon(api, result, keep_cordoned, say)
        if isinstance(e, DrainError):
            e.message += "; the node was " + ("left cordoned" if keep_cordoned or not result.we_cordoned
                                               else "uncordoned again")
        raise
    result.ok = True
    result.seconds = clock() - start
    result.message = f"{len(result.evicted)} pods {result.how} in {result.seconds:.1f} s" + (
        "" if caps.eviction else f" ({caps.git_version} has no Eviction API: deleted with their grace period)")
    return result


def _say_plan(result: DrainResult, caps: Capabilities, say: Say, client_budget: bool) -> None:
    n = result.node
    say(f"{n}: {caps.describe()}")
    if client_budget:
        say(f"{n}: no PodDisruptionBudgets on this server: piprov keeps each ReplicationController at most one "
            "replica short (its pods here go one at a time, each once the replacement is Ready elsewhere)")
    if result.mirror_skipped:
        say(f"{n}: static (mirror) pods stay: {', '.join(result.mirror_skipped)}")
    if result.daemonset_skipped:
        say(f"{n}: DaemonSet pods stay (their controller would recreate them): {', '.join(result.daemonset_skipped)}")
    for why, keys in result.warnings.items():
        say(f"{n}: {why}: {', '.join(keys)}")


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


def _remove_until_gone(
    run: _Run, *, timeout: float, unreachable: bool, deadline: float, poll: float,
    clock: Callable[[], float], sleep: Callable[[float], None],
) -> None:
    name = run.result.node
    while True:
        # Each round sorts again with the user's options: a pod that arrived since is handled alike,
        # one that would need a flag (it was not there at the check) is left alone.
        left = sort_pods(run.api.pods_on(name), run.opts).remove
        if unreachable:
            left = [p for p in left if not is_terminating(p)]
        fresh = [p for p in left if not is_terminating(p) and identity(p) not in run.acted]
        for p in _admitted(run, fresh) if run.client_budget else fresh:
            _remove_one(run, p)
        left = [p for p in left if identity(p) not in run.gone]
        if not left:
            return
        if clock() >= deadline:
            raise _timeout_error(run.result, [pod_key(p) for p in left], timeout)
        sleep(poll)



# -- piprov's own budget (servers without PodDisruptionBudgets) -------------------------------------------


def _admitted(run: _Run, fresh: list[JSON]) -> list[JSON]:
    """The pods of ``fresh`` that may go this round (in their order): all but what a controller's budget holds."""
    groups: dict[Owner, list[JSON]] = {}
    for p in fresh:
        owner = owner_of(p)
        if owner is not None:
            groups.setdefault(owner, []).append(p)
    held = {identity(p) for pods_ in groups.values() for p in pods_}
    for owner, candidates in groups.items():
        held -= {identity(p) for p in _admit_owner(run, owner, candidates)}
    for idle in set(run.result.waiting) - {str(o) for o in groups}:
        run.result.waiting.pop(idle)  # no pod of it left to hold
    return [p for p in fresh if identity(p) not in held]


def _say_once(run: _Run, key: str, text: str) -> None:
    if key not in run.said:
        run.said.add(key)
        run.say(f"{run.result.node}: {text}")


def _admit_owner(run: _Run, owner: Owner, candidates: list[JSON]) -> list[JSON]:
    resp = run.api.request("GET", owner.path, ok=(200, 404))
    if resp.status == 404:
        _say_once(run, str(owner), f"{owner} not found: its pods here go without a budget (nothing recreates them)")
        return candidates
    spec = rc_spec(resp.body, owner)
    verdict = admit(spec, owner, run.api.pods(owner.namespace, label_selector=spec.query), run.result.node,
                    candidates, run.acted)
    if verdict.single:
        _say_once(run, str(owner), f"{owner} has {spec.replicas} desired replica: it cannot be kept serving, "
                                   "its pod is deleted now (as kubectl deletes it without a budget)")
    key = str(owner)
    if verdict.waiting:
        run.result.waiting[key] = verdict.waiting
        if run.reported.get(key) != verdict.waiting:
            run.reported[key] = verdict.waiting
            run.say(f"{run.result.node}: budget: {verdict.waiting}")
    else:
        run.result.waiting.pop(key, None)
    return verdict.go


def _remove_one(run: _Run, pod: JSON) -> None:
    meta = pod.get("metadata") or {}
    ns, pname = str(meta.get("namespace") or "default"), str(meta.get("name"))
    key = pod_key(pod)
    if run.caps.eviction:
        resp = run.api.evict(ns, pname, group_version=run.caps.eviction, grace_period=run.opts.grace_period)
    else:
        resp = run.api.delete_pod(ns, pname, grace_period=run.opts.grace_period)
    if resp.status == 429:
        _refused(run, pod, resp)
        return
    if resp.status == 404:
        if not _gone(run.api, pod):
            what = "eviction" if run.caps.eviction else "DELETE"
            raise DrainError(
                f"the {what} of {key} answered 404 but the pod is still there "
                f"(apiserver {run.caps.git_version}): a 404 is not taken for done",
                host=run.result.node, hint=f"look at the pod with `kubectl get pod -n {ns} {pname}`; "
                "delete it yourself if it must go, then run the drain again")
        run.gone.add(identity(pod))
    run.acted.add(identity(pod))
    run.result.refusals.pop(key, None)
    if key not in run.result.evicted:
        run.result.evicted.append(key)
        run.say(f"{run.result.node}: {run.result.how} {key}" + (" (it was already gone)" if resp.status == 404 else ""))


def _gone(api: KubeApi, pod: JSON) -> bool:
    """Is ``pod`` really gone? A GET says 404, or shows a new pod under its name (kubectl waitForDelete's UID test)."""
    meta = pod.get("metadata") or {}
    now = api.pod(str(meta.get("namespace") or "default"), str(meta.get("name")))
    return now is None or (bool(pod_uid(pod)) and pod_uid(now) != pod_uid(pod))


def _refused(run: _Run, pod: JSON, resp: ApiResponse) -> None:
    key = pod_key(pod)
    names = budgets_in_refusal(resp.body) or pdbs_for(run.api, run.caps, pod)
    budgets = ", ".join(names) or "unknown (the API did not say)"
    run.result.refusals[key] = budgets
    if run.reported.get(key) != budgets:
        run.reported[key] = budgets
        run.say(f"{run.result.node}: eviction of {key} refused by PodDisruptionBudget {budgets}; retrying")


def _timeout_error(result: DrainResult, pending: list[str], timeout: float) -> DrainError:
    why = "; ".join(f"{k}: refused by PodDisruptionBudget {b}" for k, b in result.refusals.items() if k in pending)
    if result.waiting:
        why = "; ".join([*([why] if why else []), *(f"piprov's budget waited for {w}" for w in result.waiting.values())])
        hint = ("the server has no disruption budgets, so piprov keeps each ReplicationController at most one "
                "replica short: its replacements did not get Ready on the other nodes in time; check they can "
                "run them (`kubectl get pods -o wide`), or raise --timeout")
    elif why:
        hint = ("a disruption budget allows no more evictions until its pods are ready elsewhere: "
                "check `kubectl get pdb` and free capacity, or raise --timeout")
    else:
        hint = "the pods are still terminating: is the node's kubelet running? (--timeout waits longer)"
    return DrainError(
        f"drain timed out after {timeout:g} s with {len(pending)} pods left ({', '.join(pending)})"
        + (f"; {why}" if why else ""),
        host=result.node, hint=hint,
    )
