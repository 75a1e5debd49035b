"""What piprov owns on a node: the record's round trip, the prune's order, its script on the floor.

The planner cases (role changed, component removed, a path moved, garbage
records) are data in tests/unit/data/plan/owned-*.yaml, run by test_plan.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from piprov.cli.views import node_json
from piprov.errors import FactsError
from piprov.facts import FileFacts
from piprov.graph import ComponentGraph, load_graph
from piprov.plan import RECORD, FileChange, OwnedChange, Removal
from piprov.plan.owned import owned_of, parse_record, plan_owned, record_file
from piprov.render import desired_state, facts_command_for, node_image_arch
from piprov.shell import script
from test_apply import me
from test_floor import FloorTransport, floor  # noqa: F401  (the fixture)
from test_plan import make_inventory, run_case

DATA = Path(__file__).parent / "data" / "plan"


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


def _facts(content: bytes, mode: int = 0o644, owner: str = "root") -> FileFacts:
    return FileFacts(RECORD, True, hashlib.sha256(content).hexdigest(), mode, owner, "root", len(content), content)


def test_the_record_reads_back_as_written_for_every_role(graph: ComponentGraph) -> None:
    inv = make_inventory()
    for node in inv.nodes:
        desired = desired_state(inv, graph, node, node_image_arch(node, "armv7l"))
        rec = record_file(desired)
        assert (rec.mode, rec.owner, rec.group, rec.secret) == (0o644, "root", "root", False)
        assert parse_record(node.name, _facts(rec.content)) == owned_of(desired)
        assert plan_owned(desired, _facts(rec.content)) is None  # converged: nothing to do


def test_the_facts_command_reads_the_record(graph: ComponentGraph) -> None:
    inv = make_inventory()
    assert RECORD in facts_command_for(inv, graph, "rpi-node-1")


def test_a_record_naming_a_unit_twice_removes_it_once(graph: ComponentGraph) -> None:
    inv = make_inventory()
    node = inv.node("rpi-node-1")
    desired = desired_state(inv, graph, node, node_image_arch(node, "armv7l"))
    extra = b"unit etcd k8s-etcd.service\nunit etcd-old k8s-etcd.service\n"
    change = plan_owned(desired, _facts(record_file(desired).content + extra))
    assert change is not None and change.units == ["k8s-etcd.service"]


@pytest.mark.parametrize("content", [b"unit etcd k8s-etcd.service\n", b"piprov-owned 2\n", b"\xff\xfe"])
def test_a_record_without_its_format_line_is_refused(graph: ComponentGraph, content: bytes) -> None:
    with pytest.raises(FactsError) as ei:
        parse_record("rpi-node-1", _facts(content))
    assert ei.value.host == "rpi-node-1" and ei.value.location is not None and ei.value.hint


def test_a_record_root_does_not_own_is_refused() -> None:
    with pytest.raises(FactsError, match="only root may write it"):
        parse_record("rpi-node-1", _facts(b"piprov-owned 1\n", owner="pirate"))


def test_the_prune_runs_first_in_the_prelude_and_the_record_is_written_after(graph: ComponentGraph) -> None:
    _, plan = run_case(DATA / "owned-role-changed-master-to-worker.yaml", graph)
    kinds = [type(a).__name__ for a in plan.prelude_actions]
    assert kinds == ["RemoveStaleTemps", "DisableUnits", "RemoveFile", "RemoveFile", "RemoveFile", "Systemctl",
                     "Systemctl", "WriteFile"]
    assert "/var/lib/piprov" in plan.prelude_actions[0].dirs  # type: ignore[union-attr]
    assert plan.prelude_actions[-1].path == RECORD  # type: ignore[union-attr]


def test_the_plan_json_names_the_removals_and_no_content(graph: ComponentGraph) -> None:
    _, plan = run_case(DATA / "owned-role-changed-master-to-worker.yaml", graph)
    js = node_json(plan)["owned"]
    assert [r["name"] for r in js["removed"]][:2] == ["/etc/kubernetes/manifests/kube-apiserver.json",
                                                     "/etc/systemd/system/k8s-master.service"]
    assert js["removed"][0]["reason"].startswith("role changed")
    assert "\"content\":" not in json.dumps(js)


def test_the_prune_script_on_the_floor(floor: tuple[list[str], dict[str, str], Path],  # noqa: F811
                                       tmp_path: Path) -> None:
    """Units stopped and disabled in one call, files removed, systemd reloaded, the record written last."""
    user, group = me()
    old = tmp_path / "etc" / "k8s-old.service"
    old.parent.mkdir()
    old.write_text("[Service]\n")
    record = tmp_path / "var" / "owned"
    new = b"piprov-owned 1\n"
    change = OwnedChange(
        removals=[Removal("unit", "old", "k8s-old.service", "component removed"),
                  Removal("file", "old", str(old), "component removed")],
        record=FileChange(str(record), new, 0o644, user, group, None, hashlib.sha256(new).hexdigest(), "", "new"))
    out = script.run_actions(FloorTransport(floor), change.actions)
    assert out.ok, out.detail
    assert not old.exists() and record.read_bytes() == new
    calls = floor[2].read_text().splitlines()
    assert calls == ["systemctl cat k8s-old.service", "systemctl stop k8s-old.service",
                     "systemctl disable --quiet k8s-old.service", "systemctl reset-failed k8s-old.service"]
