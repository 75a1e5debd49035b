"""A rolling `up`: batches of nodes, each drained, applied, waited for and uncordoned in turn.

In-place changes (they restart no disruptive unit) go first as one batch
without a drain, then the master alone, then the workers in batches. A batch
is a list of named phases (the k0sctl model): ``draining`` (disruptive batches
only), ``applying``, ``waiting`` (Ready again), ``uncordoning``. The rollout
stops at the first failed batch; the nodes after it are left untouched, and a
re-run resumes (the plan knows what still differs). Nodes reach the network
only through the ``apply`` callback; Kubernetes through :class:`KubeApi`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Collection, Sequence

from piprov.errors import ClusterError, PiprovError
from piprov.inventory.model import Inventory
from piprov.kube.client import KubeApi, is_ready, k8s_name, wait_ready
from piprov.kube.discovery import current_token, forget, ready_reader
from piprov.kube.drain import DrainResult, Say, cordoned_by_us, drain, pods_per_node, quiet, uncordon
from piprov.kube.pods import DrainOptions
from piprov.localfs import atomic_write
from piprov.orchestrate import StepResult
from piprov.plan import NodePlan, Plan

# -- batches (pure) -------------------------------------------------------------------------------------


def disruptive(np: NodePlan, disruptive_units: Collection[str]) -> list[str]:
    """The units ``np`` restarts whose restart takes pods or the kubelet away (empty: safe in place)."""
    return sorted({u for c in np.components for u in c.restart if u in disruptive_units})


@dataclass(frozen=True)
class Batch:
    index: int
    nodes: tuple[str, ...]
    drain: bool  # False: changes that restart nothing disruptive, applied in place

    def label(self) -> str:
        return ", ".join(self.nodes)


def batch_size(workers: int, batch: int | None, max_unavailable_pct: float | None) -> int:
    if batch is not None:
        return max(1, batch)
    if max_unavailable_pct is not None:
        return max(1, math.floor(workers * max_unavailable_pct / 100.0))
    return 1


def rolling_batches(inventory: Inventory, plan: Plan, disruptive_units: Collection[str], *,
                    batch: int | None = None, max_unavailable_pct: float | None = None) -> list[Batch]:
    """In-place changes first (one batch, no drain), then the master alone, then workers in batches."""
    changed = {np.node: np for np in plan.nodes if np.changed}

    def rough(name: str) -> bool:
        return bool(disruptive(changed[name], disruptive_units))

    calm = [n.name for n in inventory.nodes if n.name in changed and not rough(n.name)]
    master = inventory.master.name
    rough_workers = [n.name for n in inventory.workers if n.name in changed and rough(n.name)]
    out: list[Batch] = []
    if calm:
        out.append(Batch(len(out), tuple(calm), False))
    if master in changed and rough(master):
        out.append(Batch(len(out), (master,), True))
    size = batch_size(len(inventory.workers), batch, max_unavailable_pct)
    for i in range(0, len(rough_workers), size):
        out.append(Batch(len(out), tuple(rough_workers[i:i + size]), True))
    return out


# -- the state file -------------------------------------------------------------------------------------


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
        atomic_write(path, (json.dumps(asdict(self), indent=2) + "\n").encode())


def resumed_state(path: Path, batches: Sequence[Batch]) -> tuple[RollingState, str]:
    """A fresh state for ``batches``, carrying on an unfinished earlier one; and a note on it."""
    old, note = RollingState.load(path)
    if old is not None and not old.finished and (old.done or old.failed):
        note = (f"resuming a rollout started {old.started}: {len(old.done)} nodes were done"
                + (f", it stopped at {', '.join(old.failed)}" if old.failed else ""))
    state = RollingState(started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         batches=[list(b.nodes) for b in batches])
    if old is not None and not old.finished:
        state.started = old.started or state.started
        state.done = [n for n in old.done if n not in {x for b in batches for x in b.nodes}]
    return state, note


# -- the rollout ----------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    batch: Batch
    status: str = "pending"  # pending, draining, applying, waiting, uncordoning, done, failed, skipped
    seconds: float = 0.0
    detail: str = ""
    drains: list[DrainResult] = field(default_factory=list)
    # Why the batch failed, typed: the CLI shows it with its hint (and each failed step's).
    error: PiprovError | None = None


@dataclass
class RolloutReport:
    batches: list[BatchResult]
    pods_before: dict[str, list[str]]
    pods_after: dict[str, list[str]]
    seconds: float
    uncordoned_leftovers: list[str] = field(default_factory=list)
    plan_errors: dict[str, PiprovError] = field(default_factory=dict)
    state_note: str = ""

    @property
    def ok(self) -> bool:
        return all(b.status == "done" for b in self.batches) and not self.plan_errors

    @property
    def failed(self) -> BatchResult | None:
        return next((b for b in self.batches if b.status == "failed"), None)


# Apply the plan to these nodes; returns their steps that failed or never started (none: all went well).
ApplyFn = Callable[[Sequence[str]], list[StepResult]]


class StepsFailed(ClusterError):
    """Applying a batch left steps failed or not started; ``steps`` keeps each with its own error."""

    def __init__(self, steps: Sequence[StepResult]) -> None:
        failed = [f"{s.node} / {s.component}: {s.detail}" for s in steps if s.status == "failed"]
        skipped = [f"{s.node} / {s.component}" for s in steps if s.status == "skipped"]
        super().__init__("; ".join(failed + (["not started: " + ", ".join(skipped)] if skipped else [])))
        self.steps = list(steps)
BatchEvent = Callable[[BatchResult], None]


@dataclass
class _Rollout:
    """What every phase of every batch works with."""

    inventory: Inventory
    api: KubeApi
    apply: ApplyFn
    state: RollingState
    path: Path
    drain_timeout: float
    ready_timeout: float
    drain_options: DrainOptions
    on_batch: BatchEvent | None
    say: Say
    cancel: threading.Event | None

    def emit(self, r: BatchResult, status: str, detail: str = "") -> None:
        r.status, r.detail = status, detail or r.detail
        self.state.phase = status
        self.state.save(self.path)
        if self.on_batch is not None:
            self.on_batch(r)

    def k8s_names(self, b: Batch) -> list[str]:
        by_name = {n.name: n for n in self.inventory.nodes}
        return [k8s_name(by_name[n]) for n in b.nodes]


def _drain_phase(ro: _Rollout, r: BatchResult) -> None:
    for n, kn in zip(r.batch.nodes, ro.k8s_names(r.batch)):
        try:
            registered = ro.api.node(kn) is not None
        except ClusterError as e:
            raise ClusterError(f"cannot read node {kn} from the apiserver", host=n,
                               hint="`piprov up --rolling` changes a running cluster; build it with `piprov up` first"
                               ) from e
        if not registered:
            ro.say(f"{n}: no Node object yet: nothing to drain")
            continue
        r.drains.append(drain(ro.api, kn, timeout=ro.drain_timeout, options=ro.drain_options, keep_cordoned=False,
                              say=ro.say))


def _apply_phase(ro: _Rollout, r: BatchResult) -> None:
    failures = ro.apply(r.batch.nodes)
    if failures:
        raise StepsFailed(failures)


def _wait_phase(ro: _Rollout, r: BatchResult) -> None:
    names = ro.k8s_names(r.batch)
    if ro.inventory.master.name in r.batch.nodes:
        forget(ro.api.base)  # the master's batch may have replaced the apiserver: read its discovery again
    # The baseline: the Node's heartbeat, or its lease's renewTime where the server has node leases
    # (1.17+ re-posts an unchanged Node status only every 5 min); see piprov.kube.discovery.
    seen: dict[str, str | None] = {kn: current_token(ro.api, kn) if r.batch.drain else None for kn in names}
    for n, kn in zip(r.batch.nodes, names):
        if not wait_ready(ready_reader(ro.api, kn), ro.ready_timeout, cancel=ro.cancel, newer_than=seen[kn])[0]:
            raise ClusterError(f"{n} ({kn}) is not Ready {ro.ready_timeout:g} s after its update", host=n)


def _uncordon_phase(ro: _Rollout, r: BatchResult) -> None:
    for kn in ro.k8s_names(r.batch):
        # Ours from this run's drain, or left by an earlier run that stopped at this node.
        uncordon(ro.api, kn, only_ours=True)


Phase = tuple[str, Callable[[_Rollout, BatchResult], None]]


def batch_phases(b: Batch) -> list[Phase]:
    """The named phases of one batch, in order; each phase's name is the batch's status while it runs."""
    phases: list[Phase] = [("draining", _drain_phase)] if b.drain else []
    return phases + [("applying", _apply_phase), ("waiting", _wait_phase), ("uncordoning", _uncordon_phase)]


def _run_batch(ro: _Rollout, r: BatchResult) -> bool:
    """Run ``r``'s phases; False (and the batch marked failed) at the first failure."""
    start = time.monotonic()
    ro.state.current = list(r.batch.nodes)
    try:
        for name, run in batch_phases(r.batch):
            ro.emit(r, name)
            run(ro, r)
    except PiprovError as e:
        r.seconds = time.monotonic() - start
        if r.status == "draining":
            # Nothing was applied: the batch's nodes are as healthy as before, let pods back.
            for d in r.drains:
                if d.we_cordoned:
                    try:
                        uncordon(ro.api, d.node, only_ours=True)
                    except PiprovError:
                        pass
        r.error = e
        ro.state.failed = {n: str(e) for n in r.batch.nodes}
        ro.emit(r, "failed", str(e))
        return False
    r.seconds = time.monotonic() - start
    ro.state.done += list(r.batch.nodes)
    ro.state.current = []
    ro.emit(r, "done", f"{r.seconds:.1f} s")
    return True


def uncordon_leftovers(inventory: Inventory, batches: Sequence[Batch], api: KubeApi, say: Say) -> list[str]:
    """Uncordon the nodes an interrupted rollout left cordoned and that have nothing left to change."""
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
    return leftovers


def _pods_or_nothing(api: KubeApi) -> dict[str, list[str]]:
    try:
        return pods_per_node(api)
    except ClusterError:
        return {}


def run_rollout(
    inventory: Inventory,
    plan: Plan,
    batches: list[Batch],
    api: KubeApi,
    apply: ApplyFn,
    *,
    drain_timeout: float = 300.0,
    ready_timeout: float = 300.0,
    drain_options: DrainOptions = DrainOptions(),
    on_batch: BatchEvent | None = None,
    say: Say = quiet,
    cancel: threading.Event | None = None,
) -> RolloutReport:
    """drain -> apply -> wait Ready -> uncordon, batch by batch; stop at the first failure."""
    t0 = time.monotonic()
    path = state_path(inventory)
    state, note = resumed_state(path, batches)
    ro = _Rollout(inventory, api, apply, state, path, drain_timeout, ready_timeout, drain_options, on_batch, say,
                  cancel)
    results = [BatchResult(b) for b in batches]
    before = _pods_or_nothing(api)
    leftovers = uncordon_leftovers(inventory, batches, api, say)
    for r in results:
        if (cancel is not None and cancel.is_set()) or not _run_batch(ro, r):
            break
    for r in results:
        if r.status == "pending":
            r.status = "skipped"
    state.current = [] if state.failed == {} else state.current
    state.finished = all(r.status == "done" for r in results) and not plan.errors
    state.save(path)
    return RolloutReport(results, before, _pods_or_nothing(api), time.monotonic() - t0, leftovers,
                         dict(plan.errors), note)
