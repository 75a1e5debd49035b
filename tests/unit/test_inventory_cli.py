"""`piprov inventory ...` end to end through the CLI entry (no root, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


from piprov.cli.app import run


pytestmark = pytest.mark.usefixtures("wide_console")
DATA = Path(__file__).parent / "data" / "inventory"


def test_list_json(inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["inventory", "list", "--json", "-i", str(inv)]) == 0
    nodes = json.loads(capsys.readouterr().out)
    assert [n["name"] for n in nodes] == ["rpi-master", "rpi-node-1", "rpi-node-2"]
    assert nodes[2]["ssh"]["port"] == 2222


def test_show_by_address(inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["inventory", "show", "192.0.2.101", "--json", "-i", str(inv)]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == {"shelf": "top"}


def test_edit_commands(inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    i = ["-i", str(inv)]
    assert run(["inventory", "add", "rpi-node-3", "--address", "192.168.1.103", "--label", "shelf=low", *i]) == 0
    assert run(["inventory", "set", "images.pause.tag", "3.0", *i]) == 0
    assert run(["inventory", "set", "network.mtu", "1400", *i]) == 0
    assert run(["inventory", "rename", "rpi-node-3", "rpi-node-9", *i]) == 0
    assert run(["inventory", "remove", "rpi-node-1", *i]) == 0
    assert run(["inventory", "validate", *i]) == 0
    text = inv.read_text()
    assert 'pause:     {repository: pause,     tag: "3.0"}' in text
    assert "  mtu: 1400\n" in text and "  # mtu: 1472" in text
    assert "- name: rpi-node-9\n" in text and "rpi-node-1" not in text


def test_errors_exit_1_and_name_the_line(inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = inv.read_text()
    assert run(["inventory", "set", "nodes.rpi-node-1.address", "192.0.2.100", "-i", str(inv)]) == 1
    e = " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert "not changed" in e and "inventory.yaml:58:14" in e
    assert inv.read_text() == before
    assert run(["inventory", "validate", "-i", str(DATA / "bad-many.yaml")]) == 1
    assert "14 problems" in " ".join(capsys.readouterr().err.split())
    assert run(["inventory", "set", "ssh.port", "abc", "-i", str(inv)]) == 1
    assert run(["inventory", "add", "x", "-i", str(inv)]) == 64  # --address missing


def test_export_to_file(inv: Path, tmp_path: Path) -> None:
    out = tmp_path / "hosts.yaml"
    assert run(["inventory", "export", "--format", "ansible", "-o", str(out), "-i", str(inv)]) == 0
    assert "ansible_host: 192.0.2.100" in out.read_text()
    assert run(["inventory", "export", "--format", "ansible", "-o", str(inv), "-i", str(inv)]) == 1


@pytest.mark.parametrize("argv", [["plan"], ["up"], ["status"], ["node", "drain", "rpi-node-1"]])
def test_the_example_reaches_nobody(inv: Path, argv: list[str], capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # inventory.example.yaml uses documentation addresses: every command that
    # would connect stops before the first packet, naming the node and the line.
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"piprov tried to connect: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert run([*argv, "-i", str(inv)]) == 1
    said = capsys.readouterr()
    text = said.out + said.err
    assert "documentation address (RFC 5737)" in text and "inventory.yaml:" in text and "rpi-" in text
