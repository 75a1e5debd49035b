"""Change a running cluster without taking it down: node add, drain, remove, rolling up.

Everything here talks to Kubernetes through :mod:`piprov.kubeapi` and to nodes
only through :mod:`piprov.provision` (facts, plan, ``apply_plan(only_nodes=)``,
``stop_units``): no SSH of its own. Nothing prints: progress goes to a
``say(text)`` callback and results come back as data; the CLI renders them.

Safety rules, each learnt from someone else's outage:

* We cordon a node only if it is Ready and schedulable, and mark it with the
  annotation ``piprov.io/cordoned-by``; we uncordon only nodes carrying that
  mark, so a node an admin had cordoned stays cordoned. The mark lives on the
  Node, so it survives a crash of piprov and a lost state file.
* Pods leave through the eviction API, so PodDisruptionBudgets hold; a 429 is
  reported with the budget's name and retried until the timeout, never a
  silent hang.
* `remove` never deletes a node whose drain failed (kubespray #7137).
* A rolling `up` stops at the first failed batch; the nodes after it are left
  untouched, and a re-run resumes (the plan knows what still differs).
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from piprov.errors import ClusterError, PiprovError
from piprov.graph import ComponentGraph
from piprov.inventory.model import Inventory, Node, refuse_documentation_address
from piprov.kubeapi import JSON, ApiStatusError, KubeApi, is_ready, is_unschedulable
from piprov.plan import NodePlan, Plan

CORDON_ANNOTATION = "piprov.io/cordoned-by"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CREATED_BY_ANNOTATION = "kubernetes.io/created-by"  # the 1.1-era controller reference
FLANNEL_PREFIX = "/coreos.com/network"

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class DrainError(ClusterError):
    """A drain did not finish: pods remain on the node."""


def api_for(inventory: Inventory, timeout: float = 10.0) -> KubeApi:
    refuse_documentation_address(inventory.master)
    return KubeApi(f"http://{inventory.master.address}:{inventory.network.apiserver_port}", timeout=timeout)


def k8s_name(node: Node) -> str:
    """The Node object's name: kubelets register under the address (--hostname-override)."""
    return node.address


# ------------------------------------------------------------------------------------------------
# pods and budgets (pure)


def is_mirror(pod: JSON) -> bool:
    return MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def has_controller(pod: JSON) -> bool:
    meta = pod.get("metadata") or {}
    if any(r.get("controller") for r in meta.get("ownerReferences") or []):
        return True
    return CREATED_BY_ANNOTATION in (meta.get("annotations") or {})


def is_finished(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_key(pod: JSON) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def pod_ready(pod: JSON) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


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
    for e in exprs:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def pdbs_for(api: KubeApi, pod: JSON) -> list[str]:
    """Names of the PodDisruptionBudgets selecting ``pod`` (to name them in a refusal)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    try:
        items = api.get(f"/apis/policy/v1beta1/namespaces/{urllib.parse.quote(ns, safe='')}/poddisruptionbudgets")
    except ClusterError:
        return []
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return [str((b.get("metadata") or {}).get("name")) for b in items.get("items") or []
            if selector_matches((b.get("spec") or {}).get("selector"), labels)]


# ------------------------------------------------------------------------------------------------
# cordon / uncordon


def cordoned_by_us(node: JSON) -> bool:
    return CORDON_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {})


def _get_node(api: KubeApi, name: str) -> JSON:
    obj = api.node(name)
    if obj is None:
        raise ClusterError(f"Kubernetes has no Node {name!r}", host=name,
                           hint="`kubectl get nodes` lists the registered nodes (named by address)")
    return obj


def cordon(api: KubeApi, name: str, why: str = "drain") -> bool:
    """Mark ``name`` unschedulable if it is Ready and schedulable; True if it is ours to uncordon."""
    obj = _get_node(api, name)
    if is_unschedulable(obj):
        return cordoned_by_us(obj)
    if not is_ready(obj):
        return False
    api.request("PATCH", f"/api/v1/nodes/{urllib.parse.quote(name, safe='')}",
                {"metadata": {"annotations": {CORDON_ANNOTATION: f"piprov {why}"}}, "spec": {"unschedulable": True}},
                content_type="application/merge-patch+json")
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
    api.request("PATCH", f"/api/v1/nodes/{urllib.parse.quote(name, safe='')}",
                {"metadata": {"annotations": {CORDON_ANNOTATION: None}}, "spec": {"unschedulable": False}},
                content_type="application/merge-patch+json")
    return True


# ------------------------------------------------------------------------------------------------
# drain


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
    say: Say = _quiet,
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
    pods = api.pods_on(name)
    sorted_ = sort_pods(pods, force=force)
    if sorted_.unmanaged:
        names = ", ".join(pod_key(p) for p in sorted_.unmanaged)
        raise DrainError(
            f"cannot drain: pods not managed by a controller would be lost: {names}",
            host=name, hint="delete them yourself, or pass --force to evict them anyway (they will not come back)",
        )
    obj = _get_node(api, name)
    we = cordon(api, name)
    if we:
        say(f"{name}: cordoned")
    elif is_unschedulable(obj):
        say(f"{name}: already cordoned by someone else: it stays cordoned whatever happens")
    else:
        say(f"{name}: not Ready: not cordoned")
    result = DrainResult(name, False, we, mirror_skipped=[pod_key(p) for p in sorted_.mirror])
    deadline = start + timeout
    reported: dict[str, str] = {}
    try:
        while True:
            left = sort_pods(api.pods_on(name), force=True).evict
            if unreachable:
                left = [p for p in left if not (p.get("metadata") or {}).get("deletionTimestamp")]
            if not left:
                break
            for p in left:
                meta = p.get("metadata") or {}
                if meta.get("deletionTimestamp"):
                    continue
                key = pod_key(p)
                resp = api.evict(meta.get("namespace") or "default", str(meta.get("name")))
                if resp.status == 429:
                    budgets = ", ".join(pdbs_for(api, p)) or "unknown (the API did not say)"
                    result.refusals[key] = budgets
                    if reported.get(key) != budgets:
                        reported[key] = budgets
                        say(f"{name}: eviction of {key} refused by PodDisruptionBudget {budgets}; retrying")
                elif resp.status in (200, 201):
                    if key not in result.evicted:
                        result.evicted.append(key)
                        say(f"{name}: evicted {key}")
                    result.refusals.pop(key, None)
            if clock() >= deadline:
                pending = [pod_key(p) for p in left]
                why = "; ".join(f"{k}: refused by PodDisruptionBudget {b}" for k, b in result.refusals.items()
                                if k in pending)
                raise DrainError(
                    f"drain timed out after {timeout:g} s with {len(pending)} pods left ({', '.join(pending)})"
                    + (f"; {why}" if why else ""),
                    host=name,
                    hint="a disruption budget allows no more evictions until its pods are ready elsewhere: "
                    "check `kubectl get pdb` and free capacity, or raise --timeout",
                )
            sleep(poll)
    except BaseException as e:
        if we and not keep_cordoned:
            try:
                uncordon(api, name, only_ours=True)
                say(f"{name}: uncordoned again (the drain did not finish)")
            except PiprovError:
                pass
        if isinstance(e, DrainError):
            e.message += "; the node was " + ("left cordoned" if keep_cordoned or not we else "uncordoned again")
        raise
    result.ok = True
    result.seconds = clock() - start
    result.message = f"{len(result.evicted)} pods evicted in {result.seconds:.1f} s"
    return result


def heartbeat(node: JSON | None) -> str | None:
    """The Ready condition's lastHeartbeatTime: changes each time the kubelet reports."""
    for c in ((node or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            hb = c.get("lastHeartbeatTime")
            return str(hb) if hb else None
    return None


def wait_ready(api: KubeApi, name: str, timeout: float, *, cancel: threading.Event | None = None,
               poll: float = 1.0, newer_than: str | None = None) -> bool:
    """Until the Node is Ready; with ``newer_than``, Ready in a report the kubelet made after that
    heartbeat (a restarted kubelet's Node keeps the old Ready for a grace period)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            obj = api.node(name)
            if obj is not None and is_ready(obj) and (newer_than is None or heartbeat(obj) != newer_than):
                return True
        except ClusterError:
            pass  # the apiserver restarts during the master's batch
        if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
            return False
        time.sleep(poll)


def pods_per_node(api: KubeApi) -> dict[str, list[str]]:
    """Non-mirror, active pods by node name (for the summary of what moved where)."""
    out: dict[str, list[str]] = {}
    for p in api.pods():
        if is_mirror(p) or is_finished(p) or (p.get("metadata") or {}).get("deletionTimestamp"):
            continue
        node = (p.get("spec") or {}).get("nodeName") or "(pending)"
        out.setdefault(node, []).append(pod_key(p))
    return out


# ------------------------------------------------------------------------------------------------
# flannel lease (etcd v2 HTTP API of the master)


def etcd_url(inventory: Inventory) -> str:
    return f"http://{inventory.master.address}:{inventory.network.etcd_port}"


def _etcd(method: str, url: str, timeout: float = 10.0) -> tuple[int, JSON]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the cluster's own etcd
            status, raw = int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        status, raw = int(e.code), e.read()
    except (urllib.error.URLError, OSError) as e:
        raise ClusterError(f"cannot reach etcd at {url}: {getattr(e, 'reason', e)}",
                           hint="is the master's etcd up? `piprov status` shows it") from None
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    return status, body if isinstance(body, dict) else {}


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


def flannel_leases(inventory: Inventory, address: str) -> list[str]:
    status, body = _etcd("GET", etcd_url(inventory) + f"/v2/keys{FLANNEL_PREFIX}/subnets")
    if status == 404:
        return []
    if status != 200:
        raise ClusterError(f"etcd answered {status} listing flannel's subnet leases")
    return find_leases(body, address)


def release_flannel_lease(inventory: Inventory, address: str) -> list[str]:
    """Delete the subnet leases whose PublicIP is ``address``; returns the keys deleted."""
    gone = []
    for key in flannel_leases(inventory, address):
        status, _ = _etcd("DELETE", etcd_url(inventory) + "/v2/keys" + urllib.parse.quote(key))
        if status not in (200, 404):
            raise ClusterError(f"etcd answered {status} deleting flannel lease {key}")
        gone.append(key)
    return gone


# ------------------------------------------------------------------------------------------------
# rolling batches (pure)

# Units whose restart takes the node's pods or its kubelet away.
DISRUPTIVE_PREFIXES = ("docker", "k8s-")


def disruptive(np: NodePlan) -> list[str]:
    """The kube/docker units ``np`` restarts (empty: the change is safe in place)."""
    units = [u for c in np.components for u in c.restart if u.startswith(DISRUPTIVE_PREFIXES)]
    return sorted(set(units))


@dataclass(frozen=True)
class Batch:
    index: int
    nodes: tuple[str, ...]
    drain: bool  # False: changes that restart nothing kube/docker, applied in place

    def label(self) -> str:
        return ", ".join(self.nodes)


def batch_size(workers: int, batch: int | None, max_unavailable_pct: float | None) -> int:
    if batch is not None:
        return max(1, batch)
    if max_unavailable_pct is not None:
        return max(1, math.floor(workers * max_unavailable_pct / 100.0))
    return 1


def rolling_batches(inventory: Inventory, plan: Plan, *, batch: int | None = None,
                    max_unavailable_pct: float | None = None) -> list[Batch]:
    """In-place changes first (one batch, no drain), then the master alone, then workers in batches."""
    changed = {np.node: np for np in plan.nodes if np.changed}
    calm = [n.name for n in inventory.nodes if n.name in changed and not disruptive(changed[n.name])]
    master = inventory.master.name
    rough_workers = [n.name for n in inventory.workers if n.name in changed and disruptive(changed[n.name])]
    out: list[Batch] = []
    if calm:
        out.append(Batch(len(out), tuple(calm), False))
    if master in changed and disruptive(changed[master]):
        out.append(Batch(len(out), (master,), True))
    size = batch_size(len(inventory.workers), batch, max_unavailable_pct)
    for i in range(0, len(rough_workers), size):
        out.append(Batch(len(out), tuple(rough_workers[i:i + size]), True))
    return out


# ------------------------------------------------------------------------------------------------
# the state file


def state_path(inventory: Inventory) -> Path:
    p = inventory.path.resolve()
    return p.with_name(p.name + ".rolling.json")


@dataclass
class RollingState:
    """Progress of a rolling `up`, kept next to the inventory; a hint, never the truth.

    The truth is the plan (what still differs) and the Nodes' cordon marks; a
    missing or garbled file only loses the history shown to the user.
    """

    started: str = ""
    batches: list[list[str]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    phase: str = ""
    failed: dict[str, str] = field(default_factory=dict)
    finished: bool = False

    @classmethod
    def load(cls, path: Path) -> tuple[RollingState | None, str]:
        """The saved state, or None and why it could not be used."""
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None, ""
        except (OSError, ValueError) as e:
            return None, f"state file {path} unreadable ({e}); rebuilt from the nodes' facts"
        if not isinstance(raw, dict):
            return None, f"state file {path} is not a JSON object; rebuilt from the nodes' facts"
        try:
            st = cls(
                started=str(raw.get("started", "")),
                batches=[[str(n) for n in b] for b in raw.get("batches", [])],
                done=[str(n) for n in raw.get("done", [])],
                current=[str(n) for n in raw.get("current", [])],
                phase=str(raw.get("phase", "")),
                failed={str(k): str(v) for k, v in dict(raw.get("failed", {})).items()},
                finished=bool(raw.get("finished", False)),
            )
        except (TypeError, ValueError, AttributeError) as e:
            return None, f"state file {path} has an unexpected shape ({e}); rebuilt from the nodes' facts"
        return st, ""

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------
# the rollout


@dataclass
class BatchResult:
    batch: Batch
    status: str = "pending"  # pending, draining, applying, waiting, uncordoning, done, failed, skipped
    seconds: float = 0.0
    detail: str = ""
    drains: list[DrainResult] = field(default_factory=list)


@dataclass
class RolloutReport:
    batches: list[BatchResult]
    pods_before: dict[str, list[str]]
    pods_after: dict[str, list[str]]
    seconds: float
    uncordoned_leftovers: list[str] = field(default_factory=list)
    plan_errors: dict[str, str] = field(default_factory=dict)
    state_note: str = ""

    @property
    def ok(self) -> bool:
        return all(b.status == "done" for b in self.batches) and not self.plan_errors

    @property
    def failed(self) -> BatchResult | None:
        return next((b for b in self.batches if b.status == "failed"), None)


ApplyFn = Callable[[Sequence[str]], list[str]]  # apply the plan to these nodes; returns failure texts
BatchEvent = Callable[[BatchResult], None]


def run_rollout(
    inventory: Inventory,
    plan: Plan,
    batches: list[Batch],
    api: KubeApi,
    apply: ApplyFn,
    *,
    drain_timeout: float = 300.0,
    ready_timeout: float = 300.0,
    force: bool = False,
    on_batch: BatchEvent | None = None,
    say: Say = _quiet,
    cancel: threading.Event | None = None,
) -> RolloutReport:
    """drain -> apply -> wait Ready -> uncordon, batch by batch; stop at the first failure."""
    t0 = time.monotonic()
    path = state_path(inventory)
    old, note = RollingState.load(path)
    if old is not None and not old.finished and (old.done or old.failed):
        note = (f"resuming a rollout started {old.started}: {len(old.done)} nodes were done"
                + (f", it stopped at {', '.join(old.failed)}" if old.failed else ""))
    state = RollingState(started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         batches=[list(b.nodes) for b in batches])
    if old is not None and not old.finished:
        state.started = old.started or state.started
        state.done = [n for n in old.done if n not in {x for b in batches for x in b.nodes}]
    by_name = {n.name: n for n in inventory.nodes}
    results = [BatchResult(b) for b in batches]
    try:
        before = pods_per_node(api)
    except ClusterError:
        before = {}

    def emit(r: BatchResult, status: str, detail: str = "") -> None:
        r.status, r.detail = status, detail or r.detail
        state.phase = status
        state.save(path)
        if on_batch is not None:
            on_batch(r)

    # Nodes an interrupted rollout left cordoned and that have nothing left to change.
    leftovers: list[str] = []
    in_batches = {n for b in batches for n in b.nodes}
    for node in inventory.nodes:
        if node.name in in_batches:
            continue
        try:
            obj = api.node(k8s_name(node))
        except ClusterError:
            obj = None
        if obj is not None and cordoned_by_us(obj) and is_ready(obj) and uncordon(api, k8s_name(node), only_ours=True):
            leftovers.append(node.name)
            say(f"{node.name}: uncordoned (an earlier rollout had cordoned it)")

    for r in results:
        if cancel is not None and cancel.is_set():
            break
        b = r.batch
        start = time.monotonic()
        state.current = list(b.nodes)
        names = [k8s_name(by_name[n]) for n in b.nodes]
        try:
            if b.drain:
                emit(r, "draining")
                for n, kn in zip(b.nodes, names):
                    try:
                        registered = api.node(kn) is not None
                    except ClusterError as e:
                        e.hint = "`piprov up --rolling` changes a running cluster; build it with `piprov up` first"
                        raise
                    if not registered:
                        say(f"{n}: no Node object yet: nothing to drain")
                        continue
                    r.drains.append(drain(api, kn, timeout=drain_timeout, force=force, keep_cordoned=False, say=say))
            emit(r, "applying")
            failures = apply(b.nodes)
            if failures:
                raise ClusterError("; ".join(failures))
            emit(r, "waiting")
            seen: dict[str, str | None] = {kn: None for kn in names}
            for kn in names if b.drain else ():
                try:
                    seen[kn] = heartbeat(api.node(kn))
                except ClusterError:
                    pass
            for n, kn in zip(b.nodes, names):
                if not wait_ready(api, kn, ready_timeout, cancel=cancel, newer_than=seen[kn]):
                    raise ClusterError(f"{n} ({kn}) is not Ready {ready_timeout:g} s after its update", host=n)
            emit(r, "uncordoning")
            for kn in names:
                # Ours from this run's drain, or left by an earlier run that stopped at this node.
                uncordon(api, kn, only_ours=True)
        except PiprovError as e:
            r.seconds = time.monotonic() - start
            if r.status == "draining":
                # Nothing was applied: the batch's nodes are as healthy as before, let pods back.
                for d in r.drains:
                    if d.we_cordoned:
                        try:
                            uncordon(api, d.node, only_ours=True)
                        except PiprovError:
                            pass
            why = str(e) + (f" ({e.hint})" if e.hint else "")
            state.failed = {n: why for n in b.nodes}
            emit(r, "failed", why)
            break
        r.seconds = time.monotonic() - start
        state.done += list(b.nodes)
        state.current = []
        emit(r, "done", f"{r.seconds:.1f} s")
    for r in results:
        if r.status == "pending":
            r.status = "skipped"
    state.current = [] if state.failed == {} else state.current
    state.finished = all(r.status == "done" for r in results) and not plan.errors
    state.save(path)
    try:
        after = pods_per_node(api)
    except ClusterError:
        after = {}
    return RolloutReport(results, before, after, time.monotonic() - t0, leftovers, dict(plan.errors), note)


# ------------------------------------------------------------------------------------------------
# node add / remove helpers (pure parts)


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def next_worker_name(inventory: Inventory) -> str:
    taken = {n.name for n in inventory.nodes}
    i = 1
    while f"rpi-node-{i}" in taken:
        i += 1
    return f"rpi-node-{i}"


def units_to_stop(graph: ComponentGraph, role: str) -> list[str]:
    """Every unit piprov manages on a node of ``role``, dependents first."""
    comps = list(graph.for_role(role))
    units: list[str] = []
    for c in reversed(comps):
        for u in c.units:
            if u not in units:
                units.append(u)
    return units


def other_changes(plan: Plan, node: str) -> dict[str, list[str]]:
    """Changes the plan has on nodes other than ``node`` (node add applies none of them)."""
    return {np.node: np.reasons for np in plan.nodes if np.node != node and np.changed}


def api_error_text(e: ApiStatusError) -> str:
    return str(e.response.body.get("message") or e)


def apply_nodes(
    inventory: Inventory,
    graph: ComponentGraph,
    plan: Plan,
    fleet: Any,
    *,
    health_timeout: float | None = None,
    on_event: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> ApplyFn:
    """An ApplyFn that applies ``plan`` to some nodes through provision.apply_plan."""
    from piprov.provision import apply_plan

    def apply(nodes: Sequence[str]) -> list[str]:
        report = apply_plan(inventory, graph, plan, fleet, only_nodes=nodes, health_timeout=health_timeout,
                            on_event=on_event, cancel=cancel)
        out = [f"{s.node} / {s.component}: {s.detail}" for s in report.run.failed]
        skipped = [f"{s.node} / {s.component}" for s in report.run.skipped if s.node in nodes]
        if skipped:
            out.append("not started: " + ", ".join(skipped))
        return out

    return apply
