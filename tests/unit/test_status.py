"""`piprov status`: node x component health, and each component's restarts over time.

The row and table helpers are fed faked facts; the facts themselves (what the
restart count and failure time mean) are tested from their record fixtures.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from piprov.cli import status_view as cluster
from piprov.cli.app import out
from piprov.facts import NodeFacts, UnitFacts
from piprov.graph import ComponentGraph, load_graph
from piprov.inventory.model import Node, SshSettings


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


def _worker() -> Node:
    return Node("rpi-node-1", "192.168.1.102", "worker", SshSettings())


def _facts(graph: ComponentGraph, history: dict[str, tuple[int | None, float | None]] | None = None) -> NodeFacts:
    """Every worker unit active and enabled; ``history``: unit -> (restarts, failed_ago), else (0, None)."""
    units = {}
    for u in dict.fromkeys(graph.managed_units("worker")):
        restarts, ago = (history or {}).get(u, (0, None))
        units[u] = UnitFacts(u, "active", "enabled", restarts, ago)
    return NodeFacts("192.168.1.102", "armv7l", "rpi-node-1", "raspbian", "8", units=units, uptime=5000.0)


@pytest.fixture(autouse=True)
def wide_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """One line per row: rich would fold the cells of a narrow terminal."""
    monkeypatch.setattr(out, "width", 1000)


def _table(rows: list[dict[str, Any]], graph: ComponentGraph) -> str:
    with out.capture() as got:
        cluster.print_status(rows, [c.name for c in graph.components], "",
                              {c.name: list(c.units) for c in graph.components})
    return got.get()


def test_a_never_restarted_node_looks_as_before(graph: ComponentGraph) -> None:
    row, healthy = cluster.status_row(_worker(), _facts(graph), graph, None, "")
    assert not healthy  # "not registered" in Kubernetes, the units alone are fine
    assert set(row["components"].values()) == {"active"}
    assert all(u["restarts"] == 0 and u["last_failure_seconds_ago"] is None for u in row["units"].values())
    text = _table([row], graph)
    assert "restart" not in text and "failure" not in text
    assert text.count("✓") == len(row["components"]) + 1  # and the caption's


def test_a_flapping_component_is_active_and_shows_its_restarts(graph: ComponentGraph) -> None:
    facts = _facts(graph, {"docker.service": (3, 125.0), "docker.socket": (None, None),
                           "k8s-flannel.service": (1, 30.5)})
    kn = {"metadata": {"name": "rpi-node-1"},
          "status": {"conditions": [{"type": "Ready", "status": "True"}]}, "spec": {}}
    row, healthy = cluster.status_row(_worker(), facts, graph, kn, "")
    assert healthy  # restarts are history: the units are active, the node Ready
    assert row["components"]["docker"] == "active"
    assert row["units"]["docker.service"] == {"active": "active", "restarts": 3, "last_failure_seconds_ago": 125.0}
    assert row["units"]["k8s-flannel.service"]["restarts"] == 1
    json.dumps(row)
    text = _table([row], graph)
    assert "3 restarts, last failure 2 min ago" in text
    assert "1 restart, last failure 30 s ago" in text


def test_a_failed_unit_says_when_it_failed(graph: ComponentGraph) -> None:
    facts = _facts(graph)
    flannel = facts.units["k8s-flannel.service"]
    units = {**facts.units, "k8s-flannel.service": UnitFacts(flannel.name, "failed", "enabled", 5, 7200.0)}
    row, healthy = cluster.status_row(_worker(), replace(facts, units=units), graph, None, "")
    assert not healthy
    assert row["components"]["flannel"] == "k8s-flannel.service=failed"
    assert "5 restarts, last failure 2 h ago" in _table([row], graph)


def test_old_systemd_without_a_count_shows_only_the_state(graph: ComponentGraph) -> None:
    facts = _facts(graph, {u: (None, None) for u in graph.managed_units("worker")})
    row, _ = cluster.status_row(_worker(), facts, graph, None, "")
    assert all(u["restarts"] is None for u in row["units"].values())
    assert "restart" not in _table([row], graph)


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s ago"), (59.9, "59 s ago"), (60, "1 min ago"),
                                           (3599, "59 min ago"), (3600, "1 h ago"), (86400 * 3 + 5, "3 d ago")])
def test_ago(seconds: float, text: str) -> None:
    assert cluster.ago(seconds) == text


def test_orphans_are_node_objects_of_no_inventory_node() -> None:
    """A Node no inventory node registers as (by address, or by name) is an orphan, with the command
    that removes it; piprov never removes it unasked (issue 17)."""
    from test_plan import make_inventory

    from piprov.kube.client import orphan_fix, orphans

    inv = make_inventory()
    ours = [n.address for n in inv.nodes]
    assert orphans(inv, [*ours, inv.nodes[0].name]) == []
    assert orphans(inv, [*ours, "10.9.9.9", "old-pi"]) == ["10.9.9.9", "old-pi"]
    assert orphan_fix("10.9.9.9").startswith("kubectl delete node 10.9.9.9")
