"""`piprov up` runs the cheap checks itself (issue #14) and refuses a node that would certainly fail.

The nodes answer over a fake SSH transport: the check script with the data
files of tests/unit/data/check/ (rpi-node-1's clock is in 1970: a `fail`),
every other command (the stand-in facts command, the apply scripts) with
success. The plan is made by hand; the DAG walk, the apply scripts and the
refusal are the product's. Health gates pass at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from piprov import provision
from piprov.check import run as check_run
from piprov.check.command import BEGIN
from piprov.cli import cluster
from piprov.cli.app import EXIT_ERROR, EXIT_OK, out, run
from piprov.errors import CheckRefused, UnreachableError
from piprov.graph import load_graph
from piprov.plan import ComponentPlan, NodePlan, Plan
from piprov.transport import CommandResult, SshTransport

DATA = Path(__file__).parent / "data" / "check"
FACTS = "piprov-test-facts"


class Nodes:
    """What each node answers to the check (a data file's name, or "unreachable"), and every command sent."""

    def __init__(self) -> None:
        self.check = {"rpi-master": "hypriot-2016", "rpi-node-1": "clock-1970", "rpi-node-2": "hypriot-2016"}
        self.sent: list[tuple[str, str]] = []  # (node, "facts" | "check" | "apply")
        self.throttled_once: set[str] = set()  # nodes whose vcgencmd says: throttled since boot (a warning)

    def kinds(self, node: str) -> list[str]:
        return [k for n, k in self.sent if n == node]

    def answer(self, node: str, command: str, stdin: bytes | None) -> str:
        if BEGIN in command:
            self.sent.append((node, "check"))
            assert "conv=fsync" not in command and "mktemp" not in command  # the card measure left out
            if self.check[node] == "unreachable":
                raise UnreachableError("nothing answered (connection refused)", host=node)
            text = (DATA / f"{self.check[node]}.txt").read_text()
            return text.replace("throttled 0x0\n", "throttled 0x50000\n") if node in self.throttled_once else text
        self.sent.append((node, "facts" if command == FACTS else "apply"))
        return ""


def _plan(changed: bool) -> Plan:
    """Every node with every component of its role to (re)start, or none."""
    graph = load_graph()
    nodes = []
    for name, role in (("rpi-master", "master"), ("rpi-node-1", "worker"), ("rpi-node-2", "worker")):
        comps = [ComponentPlan(c.name, restart=list(c.units)[:1] if changed else [], reasons=["edited"])
                 for c in graph.for_role(role)]
        nodes.append(NodePlan(name, "192.0.2.1", None, comps))
    return Plan(nodes)


@pytest.fixture
def nodes(monkeypatch: pytest.MonkeyPatch) -> Nodes:
    got = Nodes()

    def fake_run(self: SshTransport, command: str, *, sudo: bool = False, stdin: bytes | None = None,
                 timeout: float | None = None) -> CommandResult:
        self.round_trips += 1
        return CommandResult(self.host, command, 0, got.answer(self.node.name, command, stdin), "", 0.01)

    monkeypatch.setattr(SshTransport, "run", fake_run)
    monkeypatch.setattr(check_run, "now", lambda: 1480000122.0)
    monkeypatch.setattr(provision._Steps, "_gate", lambda self, v, transport: "")
    monkeypatch.setattr(cluster, "label_plan_ahead", lambda inventory: lambda: {})
    monkeypatch.setattr(cluster, "apply_labels", lambda inventory: True)
    monkeypatch.setattr(out, "width", 1000)
    return got


def _facts_and_plan(changed: bool) -> Callable[..., Any]:
    def fake(inventory: Any, graph: Any, fleet: Any, **_: Any) -> tuple[dict[str, Any], Plan]:
        for name, t in fleet.transports.items():
            t.run(FACTS, sudo=True)  # the one facts command of each node
        return {}, _plan(changed)

    return fake


def test_a_node_with_a_failing_finding_is_refused_and_the_others_are_applied(
        inv: Path, nodes: Nodes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cluster, "facts_and_plan", _facts_and_plan(True))
    assert run(["up", "-i", str(inv), "--json"]) == EXIT_ERROR
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    # Refused: checked, then nothing applied there; the master and the other worker are.
    assert nodes.kinds("rpi-node-1") == ["facts", "check"]
    for other in ("rpi-master", "rpi-node-2"):
        assert nodes.kinds(other)[:2] == ["facts", "check"] and "apply" in nodes.kinds(other)
    steps = {(s["node"], s["component"]): s for s in doc["steps"]}
    assert all(s["status"] == "changed" for (n, _), s in steps.items() if n != "rpi-node-1")
    mine = [s for (n, _), s in steps.items() if n == "rpi-node-1"]
    assert {s["status"] for s in mine} == {"failed", "skipped"}
    failed = next(s for s in mine if s["status"] == "failed")
    assert failed["detail"] == "rpi-node-1: refused by the preflight check: clock (clock)"
    # --json: the refusal per node, code, severity, what breaks and the fix.
    refused = doc["checks"]["rpi-node-1"]
    assert refused["refused"] is True and refused["error"] is None
    clock = next(f for f in refused["findings"] if f["code"] == "clock")
    assert clock["severity"] == "fail" and "certificate" in clock["breaks"] and "timedatectl" in clock["fix"]
    assert doc["checks"]["rpi-master"]["refused"] is False
    err = " ".join(captured.err.split())
    assert "✗ rpi-node-1: refused by the preflight check, nothing was applied there: ✗ clock (clock): the node's " \
        "clock is before 2016" in err
    assert "fix: let it set its clock" in err and "--skip-checks" in err
    assert "rpi-node-1: refused by the preflight check: clock (clock): the node's clock" in doc["plan_errors"]["rpi-node-1"]


def test_the_refusal_is_a_typed_error_of_the_node(inv: Path, nodes: Nodes) -> None:
    from piprov.fleet import Fleet
    from piprov.inventory import load

    inventory, graph = load(inv), load_graph()
    with Fleet.connect(inventory) as fleet:
        plan, checks = provision.preflight(inventory, graph, _plan(True), fleet)
    why = plan.errors["rpi-node-1"]
    assert isinstance(why, CheckRefused) and why.host == "rpi-node-1"
    assert [f["code"] for f in why.findings] == ["clock"] and why.findings[0]["fix"]
    assert [n.node for n in plan.nodes] == ["rpi-master", "rpi-node-2"]
    assert [c.node for c in checks] == ["rpi-master", "rpi-node-1", "rpi-node-2"]


def test_warnings_do_not_refuse_and_are_one_line_per_node(inv: Path, nodes: Nodes, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cluster, "facts_and_plan", _facts_and_plan(True))
    nodes.check["rpi-node-1"] = "hypriot-2016"
    nodes.throttled_once.add("rpi-node-1")  # a warning, no failure
    assert run(["up", "-i", str(inv)]) == EXIT_OK
    assert "apply" in nodes.kinds("rpi-node-1")
    warned = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("! rpi-node-1")]
    assert warned == ["! rpi-node-1: power and throttling (power) (warnings; `piprov check rpi-node-1` says what "
                      "they break)"]


def test_a_node_the_check_cannot_reach_is_that_nodes_error(inv: Path, nodes: Nodes, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cluster, "facts_and_plan", _facts_and_plan(True))
    nodes.check.update({"rpi-node-1": "hypriot-2016", "rpi-node-2": "unreachable"})
    assert run(["up", "-i", str(inv)]) == EXIT_ERROR
    assert "apply" not in nodes.kinds("rpi-node-2") and "apply" in nodes.kinds("rpi-node-1")
    assert "rpi-node-2: nothing answered (connection refused)" in capsys.readouterr().err


def test_skip_checks_applies_without_checking(inv: Path, nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "facts_and_plan", _facts_and_plan(True))
    assert run(["up", "-i", str(inv), "--skip-checks"]) == EXIT_OK
    assert "check" not in {k for _, k in nodes.sent}
    assert all("apply" in nodes.kinds(n) for n in ("rpi-master", "rpi-node-1", "rpi-node-2"))


def test_a_no_op_run_checks_nothing_one_round_trip_per_node(inv: Path, nodes: Nodes, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cluster, "facts_and_plan", _facts_and_plan(False))
    assert run(["up", "-i", str(inv), "--json"]) == EXIT_OK
    assert sorted(nodes.sent) == [(n, "facts") for n in ("rpi-master", "rpi-node-1", "rpi-node-2")]
    assert json.loads(capsys.readouterr().out)["round_trips"] == {"rpi-master": 1, "rpi-node-1": 1, "rpi-node-2": 1}


def test_only_the_nodes_with_changes_are_checked(inv: Path, nodes: Nodes) -> None:
    from piprov.fleet import Fleet
    from piprov.inventory import load

    inventory, graph = load(inv), load_graph()
    plan = _plan(True)
    plan.nodes[1] = _plan(False).nodes[1]  # rpi-node-1 (the 1970 clock) has nothing to change
    with Fleet.connect(inventory) as fleet:
        checked, checks = provision.preflight(inventory, graph, plan, fleet)
    assert [c.node for c in checks] == ["rpi-master", "rpi-node-2"] and not checked.errors
    assert "check" not in nodes.kinds("rpi-node-1")


def test_up_help_says_what_skip_checks_skips(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["up", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--skip-checks" in text and "without the SD card measure" in text and "refused" in text


def test_node_add_refuses_a_joining_node_that_fails_the_checks(inv: Path, nodes: Nodes, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from piprov.kube import procedures

    monkeypatch.setattr(procedures, "facts_and_plan", _facts_and_plan(True))
    assert run(["node", "add", "rpi-node-1", "-i", str(inv)]) == EXIT_ERROR
    err = " ".join(capsys.readouterr().err.split())
    assert "rpi-node-1: the preflight check refuses it, so it cannot join" in err
    assert "because: rpi-node-1: refused by the preflight check: clock (clock): the node's clock is before 2016" in err
    assert nodes.kinds("rpi-node-1") == ["facts", "check"]  # checked, nothing applied
    assert "check" not in nodes.kinds("rpi-master") + nodes.kinds("rpi-node-2")  # only the joining node is


def test_the_plan_shown_names_a_refused_node_and_its_findings(inv: Path, nodes: Nodes, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cluster, "facts_and_plan", _facts_and_plan(True))
    assert run(["up", "-i", str(inv)]) == EXIT_ERROR
    got = capsys.readouterr()
    assert "refused rpi-node-1: by the preflight check: clock (clock)" in got.out
    assert "rpi-node-1 / firewall: rpi-node-1: refused by the preflight check: clock (clock)" in got.err
    assert got.err.count("fix: let it set its clock") == 1  # what it breaks and the fix: once, at the end
