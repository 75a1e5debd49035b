"""Fixtures and figures for the fault suite (issue 9); the helpers are in faultkit.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from faultkit import FIGURES, FaultCluster, wait_for
from piprov_lab.lab import Lab


@pytest.fixture(scope="module")
def faults(lab_factory: Callable[..., Lab], tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    lab = lab_factory("faults", nodes=3)
    fc = FaultCluster(lab, tmp_path_factory.mktemp("faults"))
    p = fc.piprov("up")
    assert p.returncode == 0, p.stderr[-4000:]
    wait_for("every node Ready", fc.all_ready, 180, 2)
    yield fc
    lab.down()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/lab/faults/" not in report.nodeid.replace(os.sep, "/"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        FIGURES.scenarios[report.nodeid.rsplit("::", 1)[-1]] = report.outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES.scenarios:
        return
    data = FIGURES.as_json()
    terminalreporter.write_sep("-", "fault suite figures")
    for k in ("scenarios_run", "passed", "failed", "skipped", "partial_files", "lost_inventory_edits",
              "tracebacks", "piprov_runs"):
        terminalreporter.write_line(f"{k}: {data[k]}")
    for note in FIGURES.notes:
        terminalreporter.write_line(f"note: {note}")
    for name, h in FIGURES.heal.items():
        took = "NOT healed (piprov up needed)" if h["heal_s"] is None else f"healed in {h['heal_s']} s"
        terminalreporter.write_line(f"heal {name}: {took} {h['detail']}".rstrip())
    if FIGURES.heal:
        terminalreporter.write_line(f"heal scenarios that needed a piprov run: {data['heal_needed_piprov']} "
                                    f"of {len(FIGURES.heal)} (goal 0)")
    out = os.environ.get("PIPROV_FAULTS_REPORT")
    if out:
        Path(out).write_text(json.dumps(data, indent=2))
