"""A big fleet on screen: the grouping rules (pure), and each text view of 250 nodes staying short,
with the odd node out said first and on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from piprov.cli import fleetview, status_view, views
from piprov.cli.app import err, out
from piprov.cli.fleetview import GROUP_AT, grouped, name_ranges, names_text, rows_to_show
from piprov.graph import ComponentGraph, load_graph
from piprov.inventory import Inventory, load
from piprov.orchestrate import StepResult
from piprov.plan import ComponentPlan, NodePlan, Plan
from piprov.plan.model import FileChange

WORKERS = [f"rpi-node-{i}" for i in range(1, 250)]
NAMES = ["rpi-master", *WORKERS]


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out, "width", 1000)
    monkeypatch.setattr(err, "width", 1000)


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


@pytest.fixture
def fleet(tmp_path: Path) -> Inventory:
    """250 nodes: a master and 249 workers (documentation addresses, never reached)."""
    rows = [f"  - {{name: {n}, address: 10.9.{i // 250}.{i % 250 + 1}, role: {'master' if i == 0 else 'worker'}}}"
            for i, n in enumerate(NAMES)]
    p = tmp_path / "inventory.yaml"
    p.write_text("cluster: {name: big}\nnodes:\n" + "\n".join(rows) + "\n")
    return load(p)


# -- the rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("names, parts", [
    (["rpi-master", "rpi-node-1", "rpi-node-2", "rpi-node-3", "rpi-node-5"],
     ["rpi-master", "rpi-node-1..rpi-node-3", "rpi-node-5"]),
    (["n8", "n9", "n10", "n11"], ["n8..n11"]),
    (["pi-008", "pi-009", "pi-010"], ["pi-008..pi-010"]),
    (["n08", "n9", "n10"], ["n08", "n9", "n10"]),  # no range would say which spelling lies between
    (["a1", "b2", "b3"], ["a1", "b2", "b3"]),  # two in a row are clearer listed
    (["x", "y"], ["x", "y"]),
    ([], []),
])
def test_numbered_names_read_as_ranges(names: list[str], parts: list[str]) -> None:
    assert name_ranges(names) == parts


def test_a_few_names_are_listed_and_many_are_counted() -> None:
    assert names_text(["a", "b"]) == "a, b"
    assert names_text(WORKERS) == "rpi-node-1..rpi-node-249 (249 nodes)"
    odd = [f"n{i}" for i in range(1, 40, 2)]  # 20 names, no run
    assert names_text(odd, shown=3) == "n1, n3, n5 and 17 more (20 nodes)"


def test_groups_keep_first_seen_order() -> None:
    assert grouped([("a", 1), ("b", 2), ("c", 1)]) == [(1, ["a", "c"]), (2, ["b"])]


def test_a_small_grid_is_shown_as_it_is() -> None:
    rows = [(f"n{i}", ("done",)) for i in range(5)]
    assert rows_to_show(rows, rank=lambda r: 0, limit=10) == rows


def test_a_big_grid_says_failures_then_stragglers_first_and_counts_the_rest() -> None:
    rows = [(n, ("done",)) for n in NAMES]
    rows[100] = ("rpi-node-100", ("failed",))
    rows[7] = ("rpi-node-7", ("running",))
    shown = rows_to_show(rows, rank=lambda r: {"failed": 0, "running": 1}.get(r[0], 2), limit=24)
    assert shown[:2] == [("rpi-node-100", ("failed",)), ("rpi-node-7", ("running",))]
    assert len(shown) == 3
    label, row = shown[2]
    assert row == ("done",) and label.endswith("(248 nodes)") and label.startswith("rpi-master, rpi-node-1..")


def test_too_many_stragglers_are_grouped_too() -> None:
    rows = [(n, ("running",) if i < 200 else ("done",)) for i, n in enumerate(NAMES)]
    shown = rows_to_show(rows, rank=lambda r: 0 if r[0] == "running" else 1, limit=24)
    assert len(shown) == 24 // 2 + 2  # half the screen on their own, the rest in a row per state
    assert shown[-2] == ("rpi-node-12..rpi-node-199 (188 nodes)", ("running",))
    assert shown[-1][1] == ("done",)


def test_a_grid_where_every_node_is_at_the_same_step_is_one_row() -> None:
    assert len(rows_to_show([(n, ("running",)) for n in NAMES], rank=lambda r: 0)) == 1


# -- the views ------------------------------------------------------------------------------------


def _file(path: str, node: str) -> FileChange:
    return FileChange(path, b"x", 0o644, "root", "root", "0" * 64, "1" * 64,
                      f"--- a\n+++ b\n-old\n+{node}\n", "content differs")


def test_a_fleet_with_nothing_to_change_is_one_line() -> None:
    plan = Plan([NodePlan(n, "10.9.0.1", None, [ComponentPlan("docker")]) for n in NAMES])
    with out.capture() as got:
        views.print_plan(plan)
    assert got.get().splitlines() == ["rpi-master, rpi-node-1..rpi-node-249 (250 nodes): no change"]


def test_nodes_with_the_same_changes_are_said_once_and_the_odd_one_out_on_its_own() -> None:
    def node(n: str) -> NodePlan:
        path = "/etc/other.conf" if n == "rpi-node-42" else "/etc/systemd/system/k8s-flannel.service"
        return NodePlan(n, "10.9.0.1", None, [ComponentPlan("flannel", files=[_file(path, n)],
                                                            daemon_reload=True, restart=["k8s-flannel.service"])])

    plan = Plan([NodePlan("rpi-master", "10.9.0.1", None, []), *map(node, WORKERS)])
    with out.capture() as got:
        views.print_plan(plan)
    text = got.get()
    assert "rpi-master (10.9.0.1): no change" in text
    assert "rpi-node-1..rpi-node-41, rpi-node-43..rpi-node-249 (248 nodes): (the same changes; the diffs are " \
           "rpi-node-1's)" in text
    assert "rpi-node-42 (10.9.0.1):" in text and "/etc/other.conf" in text
    assert text.count("restart") == 2  # once for the group, once for the odd node
    assert "+rpi-node-1" in text and "+rpi-node-2\n" not in text


def test_a_few_nodes_with_the_same_changes_are_still_listed_one_by_one() -> None:
    plan = Plan([NodePlan(n, "10.9.0.1", None, []) for n in NAMES[:GROUP_AT - 1]])
    with out.capture() as got:
        views.print_plan(plan)
    assert len(got.get().splitlines()) == GROUP_AT - 1


def test_the_live_grid_of_250_nodes_fits_a_screen(fleet: Inventory, graph: ComponentGraph) -> None:
    progress = views.Progress(fleet, graph, live=False)
    for n in WORKERS:
        for c in graph.for_role("worker"):
            progress.state[(n, c.name)] = "changed"
    progress.state[("rpi-node-9", "flannel")] = "failed"
    with err.capture() as got:
        err.print(progress.table())
    lines = [line for line in got.get().splitlines() if line.strip()]
    assert len(lines) < 12
    body = "\n".join(lines)
    assert body.index("rpi-node-9 ") < body.index("(248 nodes)") and "rpi-master" in body


def test_the_report_of_a_big_run_is_one_row_per_component() -> None:
    changed = [StepResult(n, c, "changed", apply_seconds=1.0 + i / 100, wait_seconds=2.0, started=i)
               for i, n in enumerate(WORKERS) for c in ("docker", "kube-worker")]
    with err.capture() as got:
        err.print(views._changed_table(changed))
    text = got.get()
    assert "249" in text and "rpi-node-249 5.5 s" in text
    assert len([line for line in text.splitlines() if "rpi-node" in line]) == 2


def test_status_of_250_healthy_nodes_and_one_sick(graph: ComponentGraph) -> None:
    comps = [c.name for c in graph.components]

    def row(n: str, docker: str = "active") -> dict[str, object]:
        return {"node": n, "address": "10.9.0.7", "role": "worker", "components": {"docker": docker},
                "units": {}, "kubernetes": "Ready", "versions": {"docker": "1.10", "systemd": "215"}}

    rows = [row(n) for n in NAMES]
    rows[3] = row("rpi-node-3", "failed")
    with out.capture() as got:
        status_view.print_status(rows, comps, "")  # type: ignore[arg-type]
    lines = [line for line in got.get().splitlines() if "rpi-" in line]
    assert len(lines) == 2
    assert "rpi-node-3" in lines[0] and "10.9.0.7" in lines[0] and "failed" in lines[0]
    assert "(249 nodes)" in lines[1] and "10.9.0.7" not in lines[1]


def test_the_grouping_threshold_is_the_views_one() -> None:
    assert fleetview.BIG_GRID > GROUP_AT
