"""`piprov discover` output and --add, with the browse replaced by recorded records."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from piprov.cli import app
from piprov.cli.app import run
from piprov.discover import DiscoveryResult, Host, Rejected
from piprov.inventory import load


def host(name: str, ip: str, mac: str | None, kind: str = "pi") -> Host:
    return Host(name, (ip,), mac, kind, "test", ("_ssh._tcp", "_workstation._tcp"), (name,), {})  # type: ignore[arg-type]


RESULT = DiscoveryResult(
    hosts=(
        host("black-pearl", "10.40.0.11", "b8:27:eb:00:00:01"),
        host("black-pearl-2", "10.40.0.12", "dc:a6:32:00:00:02"),
        host("black-pearl-3", "10.40.0.13", "e4:5f:01:00:00:03"),
        host("alices-laptop", "10.40.0.202", "3c:22:fb:00:00:09", "other"),
    ),
    rejected=(Rejected("x\\x1b[31m", "host name 'x;rm' is not a valid host name"),),
    duration=0.9,
    interfaces=("10.40.0.1",),
    settled=True,
)

# The package re-exports the click command under the module's name.
discover_cmd = importlib.import_module("piprov.cli.discover_cmd")

INV = "cluster: {name: lab}\n\nnodes:\n  - name: rpi-master\n    address: 10.40.0.11\n    role: master\n"


@pytest.fixture(autouse=True)
def fake_browse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discover_cmd, "discover", lambda *a, **k: RESULT)
    monkeypatch.setattr(app.err, "width", 1000)
    monkeypatch.setattr(app.out, "width", 1000)


def test_json_hides_other_devices_unless_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INV)
    assert run(["discover", "--json", "-i", str(inv)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [h["hostname"] for h in data["hosts"]] == ["black-pearl", "black-pearl-2", "black-pearl-3"]
    assert data["hosts"][0]["inventory_node"] == "rpi-master"
    assert data["hosts"][1]["inventory_node"] is None
    assert run(["discover", "--json", "--all", "-i", str(inv)]) == 0
    assert len(json.loads(capsys.readouterr().out)["hosts"]) == 4


def test_table_marks_inventory_and_lists_rejections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INV)
    assert run(["discover", "-i", str(inv)]) == 0
    cap = capsys.readouterr()
    assert "rpi-master" in cap.out and "alices-laptop" not in cap.out
    assert "ignored x\\x1b[31m" in cap.err and "\x1b" not in cap.err
    assert "3 Pis (1 other device hidden; --all shows them)" in cap.err


def test_add_appends_new_pis_and_keeps_the_file(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INV)
    assert run(["discover", "--add", "-i", str(inv)]) == 0
    text = inv.read_text()
    assert text.startswith(INV)
    nodes = load(inv).nodes
    assert [(n.name, n.address, n.mac) for n in nodes[1:]] == [
        ("rpi-node-1", "10.40.0.12", "dc:a6:32:00:00:02"),
        ("rpi-node-2", "10.40.0.13", "e4:5f:01:00:00:03"),
    ]
    assert run(["discover", "--add", "-i", str(inv)]) == 0
    assert inv.read_text() == text


def test_add_needs_an_inventory_and_a_pattern_with_n(tmp_path: Path) -> None:
    assert run(["discover", "--add", "-i", str(tmp_path / "none.yaml")]) == 1
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INV)
    assert run(["discover", "--add", "--name-pattern", "node", "-i", str(inv)]) == 1
    assert inv.read_text() == INV


def test_add_lists_what_it_did_not_add_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INV)
    assert run(["discover", "--add", "--json", "-i", str(inv)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [a["address"] for a in data["added"]] == ["10.40.0.12", "10.40.0.13"]
    why = {n["what"]: n["reason"] for n in data["not_added"]}
    assert why["black-pearl"] == "already in the inventory as rpi-master"
    assert "not a valid host name" in why["x\\x1b[31m"]
    assert run(["discover", "--add", "-i", str(inv)]) == 0
    err = capsys.readouterr().err
    assert "not added black-pearl: already in the inventory as rpi-master" in err
    assert "nothing added" in err and err.count("x\\x1b[31m") == 1
