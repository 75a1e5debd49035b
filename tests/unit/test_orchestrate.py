"""The DAG walker: parallel where independent, failures stop only dependents."""

from __future__ import annotations

import threading

from piprov.graph import critical_path
from piprov.orchestrate import Event, StepResult, run_dag

# a diamond plus an independent branch:  a -> b, a -> c, (b, c) -> d ;  x -> y
PREDS = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "x": [], "y": ["x"]}
ORDER = ["a", "x", "b", "c", "y", "d"]


def label(v: str) -> tuple[str, str]:
    return ("n1", v)


def test_runs_everything_in_dependency_order() -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def work(v: str) -> StepResult:
        with lock:
            for p in PREDS[v]:
                assert p in seen, f"{v} started before {p} finished"
            seen.append(v)
        return StepResult("n1", v, "changed")

    res = run_dag(ORDER, PREDS.__getitem__, work, label)
    assert res.ok and sorted(seen) == sorted(ORDER)


def test_independent_vertices_run_in_parallel() -> None:
    barrier = threading.Barrier(2, timeout=5)

    def work(v: str) -> StepResult:
        if v in ("b", "c"):
            barrier.wait()  # deadlocks (times out) unless b and c overlap
        return StepResult("n1", v, "unchanged")

    assert run_dag(ORDER, PREDS.__getitem__, work, label).ok


def test_failure_skips_dependents_but_not_independent_branches() -> None:
    def work(v: str) -> StepResult:
        if v == "b":
            return StepResult("n1", v, "failed", detail="probe failed")
        return StepResult("n1", v, "changed")

    res = run_dag(ORDER, PREDS.__getitem__, work, label)
    assert not res.ok
    assert res.steps["b"].status == "failed"
    assert res.steps["d"].status == "skipped" and "b on n1 failed" in res.steps["d"].detail
    assert res.steps["c"].status == "changed"
    assert res.steps["y"].status == "changed"


def test_exception_in_work_becomes_a_failed_step() -> None:
    def work(v: str) -> StepResult:
        if v == "x":
            raise RuntimeError("boom")
        return StepResult("n1", v, "unchanged")

    res = run_dag(ORDER, PREDS.__getitem__, work, label)
    assert res.steps["x"].status == "failed" and "boom" in res.steps["x"].detail
    assert res.steps["y"].status == "skipped"
    assert res.steps["d"].ok


def test_cancel_starts_nothing_new() -> None:
    cancel = threading.Event()

    def work(v: str) -> StepResult:
        cancel.set()
        return StepResult("n1", v, "changed")

    res = run_dag(ORDER, PREDS.__getitem__, work, label, max_workers=1, cancel=cancel)
    assert any(s.status == "skipped" and "interrupted" in s.detail for s in res.steps.values())


def test_events_bracket_each_step() -> None:
    events: list[Event] = []
    lock = threading.Lock()

    def on_event(e: Event) -> None:
        with lock:
            events.append(e)

    run_dag(ORDER, PREDS.__getitem__, lambda v: StepResult("n1", v, "unchanged"), label, on_event=on_event)
    starts = [e.component for e in events if e.kind == "start"]
    dones = [e.component for e in events if e.kind == "done"]
    assert sorted(starts) == sorted(ORDER) == sorted(dones)


def test_critical_path_is_the_longest_chain() -> None:
    cost = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0, "x": 3.0, "y": 3.0}
    total, chain = critical_path(ORDER, PREDS.__getitem__, cost)
    assert total == 7.0 and chain == ["a", "b", "d"]


def test_fleet_result_keeps_every_node_and_names_the_failed() -> None:
    from piprov.errors import PiprovError
    from piprov.fleet import parallel

    def fn(name: str) -> int:
        if name == "b":
            raise PiprovError("unreachable")
        return len(name)

    r = parallel(["a", "b", "ccc"], fn)
    assert list(r) == ["a", "b", "ccc"]
    assert r.succeeded == {"a": 1, "ccc": 3}
    assert list(r.failed) == ["b"] and str(r.failed["b"]) == "b: unreachable"
