"""`piprov node ...` and `up --rolling` options through the CLI entry (no root, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from piprov.cli import rolling_cmd
from piprov.kube import rollout
from piprov.cli.app import EXIT_ERROR, EXIT_USAGE, run


pytestmark = pytest.mark.usefixtures("wide_console")


def test_node_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["node", "--help"]) == 0
    text = capsys.readouterr().out
    for cmd in ("add", "drain", "uncordon", "remove", "forget-key"):
        assert f"  {cmd}" in text


@pytest.mark.parametrize("cmd", ["drain", "remove"])
def test_drain_flags_are_kubectls(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["node", cmd, "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--force", "--delete-local-data", "--ignore-daemonsets / --no-ignore-daemonsets", "--grace-period"):
        assert flag in text


def test_drain_grace_period_below_minus_one_is_a_usage_error(inv: Path) -> None:
    assert run(["node", "drain", "rpi-node-1", "--grace-period", "-2", "-i", str(inv)]) == EXIT_USAGE


@pytest.mark.parametrize("args", [["--batch", "1"], ["--max-unavailable", "25"],
                                  ["--rolling", "--batch", "1", "--max-unavailable", "25"],
                                  ["--rolling", "--batch", "0"]])
def test_up_rolling_option_mistakes_are_usage_errors(inv: Path, args: list[str]) -> None:
    assert run(["up", "-i", str(inv), *args]) == EXIT_USAGE


def test_removing_the_master_is_refused_with_a_reason(inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = inv.read_text()
    assert run(["node", "remove", "rpi-master", "-i", str(inv)]) == EXIT_ERROR
    err = " ".join(capsys.readouterr().err.split())
    assert "is the master" in err and "etcd and the apiserver" in err
    assert inv.read_text() == before


def test_node_add_of_an_unknown_name_wants_an_address(inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = inv.read_text()
    assert run(["node", "add", "rpi-node-9", "-i", str(inv)]) == EXIT_ERROR
    assert "give its address" in capsys.readouterr().err
    assert inv.read_text() == before


def test_node_add_of_a_known_node_with_another_address_is_refused(inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["node", "add", "rpi-node-1", "--address", "10.9.9.9", "-i", str(inv)]) == EXIT_ERROR
    assert "already in" in capsys.readouterr().err


def test_batch_view_renders_every_batch() -> None:
    batches = [rollout.Batch(0, ("rpi-master",), True), rollout.Batch(1, ("rpi-node-1", "rpi-node-2"), True)]
    results = [rollout.BatchResult(b) for b in batches]
    view = rolling_cmd.BatchView(results, live=False)
    results[0].status, results[0].seconds = "done", 3.0
    table = view.table()
    assert table.row_count == 2


def test_node_add_of_a_node_that_cannot_be_planned_says_why_and_the_way_out(
    inv: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from piprov.errors import FactsError
    from piprov.kube import procedures
    from piprov.plan import Plan

    def no_plan(inventory: object, graph: object, fleet: object) -> tuple[dict[str, object], Plan]:
        why = FactsError("the facts command failed (exit 1): sudo: a password is required", host="rpi-node-1",
                         hint="piprov needs passwordless sudo for the SSH user on every node")
        return {}, Plan([], {"rpi-node-1": why})

    monkeypatch.setattr(procedures, "facts_and_plan", no_plan)
    before = inv.read_text()
    assert run(["node", "add", "rpi-node-1", "-i", str(inv)]) == EXIT_ERROR
    err = " ".join(capsys.readouterr().err.split())
    assert "rpi-node-1: it cannot be planned, so it cannot join" in err
    assert "because: rpi-node-1: the facts command failed (exit 1): sudo: a password is required" in err
    assert "(hint: piprov needs passwordless sudo" in err and "run `piprov node add` again" in err
    assert inv.read_text() == before
