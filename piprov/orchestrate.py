"""Walk a dependency graph in parallel: each vertex starts the moment every
vertex it depends on has finished well, and a failure stops only what depends
on it.

This module knows graphs and threads, not SSH or Kubernetes: the caller hands
it a ``work`` function per vertex (apply + health gate, in ``provision``).
Failures come back as data (a :class:`StepResult` per vertex), never as the
first exception, so independent branches of the fleet finish their work.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Callable, Generic, Hashable, Iterable, Literal, Sequence, TypeVar

from piprov.errors import PiprovError

V = TypeVar("V", bound=Hashable)

Status = Literal["unchanged", "changed", "failed", "skipped"]


@dataclass(frozen=True)
class StepResult:
    """What happened at one vertex (node x component)."""

    node: str
    component: str
    status: Status
    apply_seconds: float = 0.0
    wait_seconds: float = 0.0
    detail: str = ""  # why it failed / what it changed / which probe passed
    started: float = 0.0  # monotonic clock, for the timeline
    finished: float = 0.0
    # The PiprovError that failed the step (its node could not be planned, a probe or
    # round trip failed): the CLI shows it with its hint.
    error: PiprovError | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("unchanged", "changed")

    @property
    def seconds(self) -> float:
        return self.apply_seconds + self.wait_seconds


@dataclass(frozen=True)
class Event:
    """Progress, for a live view: kind is 'start', 'waiting' or 'done'."""

    kind: Literal["start", "waiting", "done"]
    node: str
    component: str
    result: StepResult | None = None
    note: str = ""


@dataclass
class RunResult(Generic[V]):
    steps: dict[V, StepResult] = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps.values())

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps.values() if s.status == "failed"]

    @property
    def skipped(self) -> list[StepResult]:
        return [s for s in self.steps.values() if s.status == "skipped"]

    @property
    def changed(self) -> list[StepResult]:
        return [s for s in self.steps.values() if s.status == "changed"]


def _guarded(work: Callable[[V], StepResult], label: Callable[[V], tuple[str, str]],
             emit: Callable[[Event], None], v: V) -> StepResult:
    """``work(v)`` with its events; an exception becomes the vertex's failure, not the run's."""
    node, comp = label(v)
    t0 = time.monotonic()
    emit(Event("start", node, comp))
    try:
        r = work(v)
    except PiprovError as e:
        r = StepResult(node, comp, "failed", detail=e.message, error=e, started=t0, finished=time.monotonic())
    except Exception as e:  # noqa: BLE001 - one vertex's bug must not hide the fleet's results
        r = StepResult(
            node, comp, "failed", detail=f"internal error: {type(e).__name__}: {e}",
            started=t0, finished=time.monotonic(),
        )
    if not r.started:
        r = replace(r, started=t0, finished=time.monotonic())
    emit(Event("done", node, comp, r))
    return r


def _not_started(v: V, preds: list[V], result: RunResult[V], label: Callable[[V], tuple[str, str]],
                 cancel: threading.Event | None) -> StepResult | None:
    """Why a vertex whose dependencies have all finished must not start, or None when it may."""
    node, comp = label(v)
    bad = [p for p in preds if not result.steps[p].ok]
    if bad:
        b = result.steps[bad[0]]
        why = f"not started: {b.component} on {b.node} {'failed' if b.status == 'failed' else 'was skipped'}"
        return StepResult(node, comp, "skipped", detail=why)
    if cancel is not None and cancel.is_set():
        return StepResult(node, comp, "skipped", detail="not started: run interrupted")
    return None


def run_dag(
    vertices: Sequence[V],
    predecessors: Callable[[V], Iterable[V]],
    work: Callable[[V], StepResult],
    label: Callable[[V], tuple[str, str]],
    *,
    max_workers: int = 16,
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
) -> RunResult[V]:
    """Run ``work`` on every vertex, as parallel as the dependencies allow.

    ``label(v)`` gives (node, component) for results and events. A vertex whose
    dependency failed or was skipped is skipped with the reason; ``cancel``
    (e.g. Ctrl-C) lets running steps finish and starts nothing new.
    """
    emit = on_event or (lambda e: None)
    result: RunResult[V] = RunResult()
    start = time.monotonic()
    preds = {v: list(predecessors(v)) for v in vertices}
    unknown = {p for ps in preds.values() for p in ps} - set(preds)
    if unknown:
        raise PiprovError(f"dependency graph refers to steps that are not in it: {sorted(map(str, unknown))}")
    pending = list(vertices)
    running: dict[Future[StepResult], V] = {}

    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="piprov-step") as pool:
        while pending or running:
            progressed = True
            while progressed:
                progressed = False
                for v in list(pending):
                    if any(p not in result.steps for p in preds[v]):
                        continue
                    pending.remove(v)
                    progressed = True
                    skipped = _not_started(v, preds[v], result, label, cancel)
                    if skipped is not None:
                        result.steps[v] = skipped
                        emit(Event("done", skipped.node, skipped.component, skipped))
                    else:
                        running[pool.submit(_guarded, work, label, emit, v)] = v
            if not running:
                if pending:  # only possible with a cycle; graph validation prevents it
                    raise PiprovError(f"dependency cycle among {sorted(map(str, pending))}")
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                v = running.pop(fut)
                result.steps[v] = fut.result()
    result.wall_seconds = time.monotonic() - start
    return result
