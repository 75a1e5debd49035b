"""The master moved in the inventory (plan.move): found from the nodes' records, or refused when doubtful.

Each case: the inventory's master, each node's record as the units it names by
component (None: the record could not be read), and what `up` must do.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from piprov.cli.views import plan_json, plan_summary
from piprov.errors import PlanError
from piprov.facts import FileFacts
from piprov.inventory.model import Inventory
from piprov.plan import RECORD, MasterMove, Plan
from piprov.plan.move import master_move, settle_move
from piprov.plan.owned import Owned
from test_plan import make_inventory

WORKER = [("docker", "docker.service"), ("kube-worker", "k8s-worker.service")]
MASTER = [("etcd", "k8s-etcd.service"), ("kube-master", "k8s-master.service")]


def rec(units: list[tuple[str, str]] | None) -> list[Owned] | None:
    return None if units is None else [Owned("unit", c, u) for c, u in units]


CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("etcd where the inventory wants it", {"b": MASTER, "a": WORKER}, None),
    ("a fresh cluster: no record anywhere", {"b": [], "a": []}, None),
    ("a fresh Pi as master, the old one gone: a new cluster or a restore", {"b": [], "a": WORKER}, None),
    ("the master moved to a former worker", {"b": WORKER, "a": MASTER, "c": WORKER}, MasterMove("a", "b", "etcd")),
    ("the new master's record unreadable: its own error says why", {"b": None, "a": MASTER}, None),
    ("two others hold etcd", {"b": WORKER, "a": MASTER, "c": MASTER}, "a and c all hold etcd"),
    ("a former worker promoted, no etcd anywhere", {"b": WORKER, "a": WORKER}, "no node of the inventory holds it"),
    ("a former worker promoted, a node unread", {"b": WORKER, "a": None}, "a could not be read and may hold it"),
]


@pytest.mark.parametrize("records, want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_master_move(records: dict[str, Any], want: Any) -> None:
    parsed = {n: rec(r) for n, r in records.items()}
    if isinstance(want, str):
        with pytest.raises(PlanError) as e:
            master_move("b", parsed, "etcd")
        assert want in e.value.message and e.value.host == "b"
        assert "empty cluster" in e.value.message or "not for piprov to guess" in e.value.message
    else:
        assert master_move("b", parsed, "etcd") == want


class _Facts:
    def __init__(self, text: bytes | None) -> None:
        self.text = text

    def file(self, path: str) -> FileFacts:
        assert path == RECORD
        if self.text is None:
            return FileFacts(RECORD, False, None, None, None, None, None, None)
        return FileFacts(RECORD, True, hashlib.sha256(self.text).hexdigest(), 0o644, "root", "root",
                         len(self.text), self.text)


def _record(units: list[tuple[str, str]]) -> bytes:
    return b"piprov-owned 1\n" + b"".join(f"unit {c} {u}\n".encode() for c, u in units)


def test_settle_move_reads_the_records_and_the_plan_shows_the_move() -> None:
    inv: Inventory = make_inventory()
    master, worker = inv.master.name, inv.workers[0].name
    plan = Plan([])
    facts: dict[str, Any] = {n.name: _Facts(_record(WORKER)) for n in inv.nodes}
    facts[worker] = _Facts(_record(MASTER))
    settle_move(plan, master, facts, "etcd")
    assert plan.move == MasterMove(worker, master, "etcd") and plan.changed
    doc = plan_json(plan)["master_move"]
    assert doc["old"] == worker and doc["new"] == master and len(doc["steps"]) == 3
    assert plan_summary(plan).startswith(f"the master moves from {worker} to {master}; ")


def test_a_doubtful_move_is_the_masters_error_and_it_gets_no_plan() -> None:
    inv: Inventory = make_inventory()
    master = inv.master.name
    plan = Plan([])
    facts: dict[str, Any] = {n.name: _Facts(_record(WORKER)) for n in inv.nodes}
    settle_move(plan, master, facts, "etcd")
    assert plan.move is None and isinstance(plan.errors[master], PlanError)
    assert "piprov restore" in (plan.errors[master].hint or "")


def test_no_record_on_the_master_is_a_fresh_master() -> None:
    inv: Inventory = make_inventory()
    plan = Plan([])
    facts: dict[str, Any] = {n.name: _Facts(None) for n in inv.nodes}
    settle_move(plan, inv.master.name, facts, "etcd")
    assert plan.move is None and not plan.errors


def test_apply_refuses_a_plan_with_a_move() -> None:
    from piprov.graph import load_graph
    from piprov.provision import apply_plan

    inv = make_inventory()
    with pytest.raises(PlanError, match="store must follow first"):
        apply_plan(inv, load_graph(), Plan([], move=MasterMove("a", "b", "etcd")), None)  # type: ignore[arg-type]


def test_as_before_swaps_the_two_roles_only() -> None:
    from piprov.restore.move import as_before

    inv = make_inventory()
    old = inv.workers[0].name
    before = as_before(inv, MasterMove(old, inv.master.name, "etcd"))
    assert before.master.name == old
    assert {n.name for n in before.workers} == {n.name for n in inv.nodes} - {old}
