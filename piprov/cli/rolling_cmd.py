"""`piprov up --rolling`: the batch table, the pods-moved summary and the rollout's JSON.

The rollout itself is :mod:`piprov.kube.rollout`; this module reads no
option of its own (cluster.up_cmd passes them), prints and picks exit codes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from rich.live import Live
from rich.markup import escape
from rich.table import Table

from piprov.cli.app import EXIT_ERROR, ExitWith, LiveView, err, error_line, out
from piprov.cli.views import checked_plan, plan_summary, step_detail
from piprov.graph import ComponentGraph, load_graph
from piprov.inventory import Inventory, check_images, load
from piprov.inventory.model import HostKeyPolicy, refuse_documentation_address
from piprov.kube.client import api_for
from piprov.kube.pods import DrainOptions
from piprov.kube.procedures import apply_nodes
from piprov.kube.rollout import BatchResult, RolloutReport, StepsFailed, rolling_batches, run_rollout
from piprov.plan import Plan
from piprov.fleet import Fleet
from piprov.provision import facts_and_plan, run_lock

SYMBOL = {"pending": "[dim]·[/]", "draining": "[cyan]drain…[/]", "applying": "[cyan]apply…[/]",
          "waiting": "[cyan]ready?…[/]", "uncordoning": "[cyan]uncordon…[/]", "done": "[bold green]✓[/]",
          "failed": "[bold red]✗[/]", "skipped": "[yellow]–[/]"}


# Runs before the facts; what it returns joins the --json document (certs rotate: what it re-issued).
Before = Callable[[Inventory, ComponentGraph], Mapping[str, Any] | None]


def say(text: str) -> None:
    err.print(f"  [dim]{escape(text)}[/]")


def facts_plan(inventory: Inventory, graph: ComponentGraph, fleet: Fleet) -> Plan:
    with err.status("reading facts from every node (one SSH command each)…"):
        return facts_and_plan(inventory, graph, fleet)[1]


class BatchView(LiveView):
    def __init__(self, results: list[BatchResult], live: bool) -> None:
        self.results = {r.batch.index: r for r in results}
        self.batches = [r.batch for r in results]
        self.started: dict[int, float] = {}
        # get_renderable: the table is rebuilt on every refresh, so the seconds tick.
        self.live = Live(console=err, refresh_per_second=4, get_renderable=self.table) if live else None

    def table(self) -> Table:
        t = Table(title="piprov up --rolling", title_justify="left", show_edge=False)
        for col in ("batch", "nodes", "drain", "status", "s", "detail"):
            t.add_column(col)
        for b in self.batches:
            r = self.results.get(b.index)
            status = r.status if r else "pending"
            secs = r.seconds if r and r.seconds else (time.monotonic() - self.started[b.index]
                                                     if b.index in self.started else 0.0)
            t.add_row(str(b.index + 1), escape(b.label()), "yes" if b.drain else "no",
                      SYMBOL.get(status, status), f"{secs:.0f}" if secs else "",
                      escape((batch_detail(r) if r else "")[:70]))
        return t

    def __call__(self, r: BatchResult) -> None:
        self.results[r.batch.index] = r
        self.started.setdefault(r.batch.index, time.monotonic())
        if self.live is not None:
            self.live.refresh()
        else:
            err.print(f"batch {r.batch.index + 1}/{len(self.batches)} ({escape(r.batch.label())}): "
                      f"{SYMBOL.get(r.status, r.status)} {r.status}"
                      + (f" [dim]{escape(batch_detail(r)[:200])}[/]" if r.status in ("done", "failed") else ""))


def batch_detail(r: BatchResult) -> str:
    """What a batch did, or why it failed: its error with its hint, or each failed step with its own."""
    e = r.error
    if isinstance(e, StepsFailed):
        failed = [f"{s.node} / {s.component}: {step_detail(s)}" for s in e.steps if s.status == "failed"]
        skipped = [f"{s.node} / {s.component}" for s in e.steps if s.status == "skipped"]
        return "; ".join(failed + (["not started: " + ", ".join(skipped)] if skipped else []))
    return error_line(e) if e is not None else r.detail


def rolling_up(inventory_path: Path, *, policy: HostKeyPolicy | None, as_json: bool, batch: int | None,
               max_unavailable: float | None, health_timeout: float | None, drain_timeout: float = 300.0,
               drain_options: DrainOptions = DrainOptions(), before: Before | None = None,
               skip_checks: bool = False) -> None:
    """`piprov up --rolling`: the body behind the option (called by cluster.up_cmd).

    ``before`` runs under the run lock once every node is connected, before
    the facts are read and the API client is made (`certs rotate` re-issues
    the certificates there, so the plan rolls the new ones out); what it
    returns is added to the ``--json`` document.
    """
    inventory, graph = load(inventory_path), load_graph()
    check_images(inventory, graph.image_names())
    refuse_documentation_address(inventory.master)
    with run_lock(inventory), Fleet.connect(inventory, policy=policy) as fleet:
        extra = (before(inventory, graph) if before is not None else None) or {}
        api = api_for(inventory)
        plan = checked_plan(inventory, graph, facts_plan(inventory, graph, fleet), fleet, skip=skip_checks)[0]
        batches = rolling_batches(inventory, plan, graph.disruptive_units(), batch=batch,
                                  max_unavailable_pct=max_unavailable)
        err.print(plan_summary(plan))
        if not batches:
            err.print("[green]nothing to roll[/]: no node has changes" + (
                " that could be planned" if plan.errors else ""))
        for b in batches:
            err.print(f"  batch {b.index + 1}: {escape(b.label())} "
                      + ("(drain, apply, wait Ready, uncordon)" if b.drain else "(in place: restarts no kube/docker unit)"))
        cancel = threading.Event()
        apply = apply_nodes(inventory, graph, plan, fleet, health_timeout=health_timeout, cancel=cancel)
        view = BatchView([BatchResult(b) for b in batches], live=err.is_terminal and not as_json)
        try:
            with view:
                report = run_rollout(inventory, plan, batches, api, apply, drain_timeout=drain_timeout,
                                     ready_timeout=health_timeout or 300.0, drain_options=drain_options,
                                     on_batch=view, say=say, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
    _print_outcome(report, inventory_path, as_json=as_json, batch=batch, max_unavailable=max_unavailable,
                   extra=extra)


def _print_outcome(report: RolloutReport, inventory_path: Path, *, as_json: bool, batch: int | None,
                   max_unavailable: float | None, extra: Mapping[str, Any]) -> None:
    if report.state_note:
        err.print(f"[dim]{escape(report.state_note)}[/]")
    _print_moves(report)
    if as_json:
        out.print_doc({**extra, **rollout_json(report)})
    failed = report.failed
    if failed is not None:
        left = [n for r in report.batches if r.status == "skipped" for n in r.batch.nodes]
        err.print(f"[bold red]✗ rollout stopped at batch {failed.batch.index + 1} ({escape(failed.batch.label())})[/]: "
                  f"{escape(batch_detail(failed))}")
        err.print(f"  untouched: {escape(', '.join(left)) or 'none'}. Fix the node, then resume with: "
                  f"piprov up --rolling -i {inventory_path}"
                  + (f" --batch {batch}" if batch else f" --max-unavailable {max_unavailable:g}" if max_unavailable else ""))
    for n, why in report.plan_errors.items():
        err.print(f"[bold red]✗[/] {escape(error_line(why))} (not rolled)")
    if not report.ok:
        raise ExitWith(EXIT_ERROR)
    err.print(f"[bold green]✓[/] rollout done: {len(report.batches)} batches in {report.seconds:.1f} s")


def _print_moves(report: RolloutReport) -> None:
    nodes = sorted(set(report.pods_before) | set(report.pods_after))
    if not nodes:
        return
    t = Table(title="pods per node (what moved where)", title_justify="left", show_edge=False)
    for col in ("node", "before", "after", "arrived", "left"):
        t.add_column(col)
    for n in nodes:
        b, a = set(report.pods_before.get(n, [])), set(report.pods_after.get(n, []))
        t.add_row(escape(n), str(len(b)), str(len(a)), str(len(a - b)), str(len(b - a)))
    err.print(t)


def rollout_json(report: RolloutReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "seconds": round(report.seconds, 3),
        "batches": [{"nodes": list(r.batch.nodes), "drain": r.batch.drain, "status": r.status,
                     "seconds": round(r.seconds, 3), "detail": batch_detail(r),
                     "evicted": [p for d in r.drains for p in d.evicted],
                     "daemonset_skipped": [p for d in r.drains for p in d.daemonset_skipped]}
                    for r in report.batches],
        "pods_before": report.pods_before,
        "pods_after": report.pods_after,
        "uncordoned_leftovers": report.uncordoned_leftovers,
        "plan_errors": {n: error_line(e) for n, e in report.plan_errors.items()},
    }
