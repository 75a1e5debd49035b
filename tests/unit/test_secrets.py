"""Passwords and private keys never reach messages, exceptions, logs or the command line.

An in-process SSH server (paramiko) that refuses every password stands in for
a node, so the whole error path of a password login is exercised: the
TransportError, its hint, its repr and args, and every log record paramiko
and piprov emit at DEBUG. (The lab suite repeats this end to end on real
sshd: tests/lab/faults/test_faults_lab.py::test_secrets_never_appear_in_output.)
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Iterator

import paramiko
import pytest
from click.testing import CliRunner

from piprov.cli import cli
from piprov.errors import AuthenticationError, PiprovError
from piprov.inventory.model import Node, SshSettings
from piprov.keys import generate_keypair, setup_node
from piprov.transport import SshTransport, known_hosts_name

PASSWORD = "Secret-0x5eed-不要"


class _RefuseAll(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_FAILED


@pytest.fixture
def sshd(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, Path]]:
    host_key = paramiko.Ed25519Key.from_private_key_file(str(_keyfile(tmp_path / "host")))
    known = tmp_path / "known_hosts"
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    known.write_text(f"{known_hosts_name('127.0.0.1', port)} {host_key.get_name()} {host_key.get_base64()}\n")
    stop = threading.Event()
    drop_first = getattr(request, "param", False)

    def serve() -> None:
        nonlocal drop_first
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if drop_first:  # a busy or just-booted sshd closing mid-handshake
                drop_first = False
                conn.close()
                continue
            t = paramiko.Transport(conn)
            t.add_server_key(host_key)
            try:
                t.start_server(server=_RefuseAll())
            except (paramiko.SSHException, EOFError):
                pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    yield port, known
    stop.set()
    srv.close()


def _keyfile(path: Path) -> Path:
    generate_keypair(path)
    return path


def _node(port: int, identity: str | None = None) -> Node:
    return Node("rpi-node-1", "127.0.0.1", "worker", SshSettings(port=port, identity_file=identity, connect_timeout=5))


def _all_text(e: BaseException) -> str:
    parts = [str(e), repr(e), repr(e.args)]
    if isinstance(e, PiprovError):
        parts += [e.message, e.hint or "", str(e.location)]
    cause = e.__cause__ or e.__context__
    if cause is not None:
        parts.append(_all_text(cause))
    return "\n".join(parts)


def test_failed_password_login_never_shows_the_password(sshd: tuple[int, Path], caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    port, known = sshd
    caplog.set_level(logging.DEBUG)
    t = SshTransport(_node(port), known, password=PASSWORD)
    with pytest.raises(PiprovError) as ei:
        t.run("true")
    assert "authentication" in ei.value.message and ei.value.host == "rpi-node-1"
    assert isinstance(ei.value, AuthenticationError)
    assert PASSWORD not in _all_text(ei.value)
    assert PASSWORD not in caplog.text
    assert caplog.records  # paramiko did log the exchange: it was checked, not silent


def test_keys_setup_failure_never_shows_password_or_private_key(sshd: tuple[int, Path], tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    port, known = sshd
    caplog.set_level(logging.DEBUG)
    ident = _keyfile(tmp_path / "id")
    key = generate_keypair(tmp_path / "other")
    res = setup_node(_node(port, str(ident)), key, known, password=PASSWORD, disable_password=True)
    assert res.error is not None and not res.password_disabled
    private = [ln for ln in ident.read_text().splitlines() if not ln.startswith("-----")]
    text = _all_text(res.error) + caplog.text + repr(res)
    assert PASSWORD not in text
    assert not any(line in text for line in private)


def test_password_is_never_a_command_line_option() -> None:
    for argv in (["keys", "--help"], ["up", "--help"], ["plan", "--help"], ["status", "--help"]):
        out = CliRunner().invoke(cli, argv).output
        assert "--password " not in out and "--password=" not in out and "-p, " not in out
    r = CliRunner().invoke(cli, ["keys", "--password", PASSWORD])
    assert r.exit_code != 0 and PASSWORD not in r.output


def test_unknown_host_never_gets_the_password(tmp_path: Path, sshd: tuple[int, Path]) -> None:
    """Strict host keys: the password is not even offered to a host that is not pinned."""
    port, _ = sshd
    empty = tmp_path / "empty_known_hosts"
    t = SshTransport(_node(port), empty, password=PASSWORD)
    with pytest.raises(PiprovError) as ei:
        t.run("true")
    assert "not in" in ei.value.message and "--trust-new-hosts" in (ei.value.hint or "")
    assert not empty.exists()


@pytest.mark.parametrize("sshd", [True], indirect=True)
def test_a_handshake_dropped_once_is_retried(sshd: tuple[int, Path]) -> None:
    port, known = sshd
    t = SshTransport(_node(port), known, password=PASSWORD)
    with pytest.raises(PiprovError) as ei:
        t.run("true")
    # It got past the dropped connection to the real answer: credentials refused.
    assert "authentication" in ei.value.message, ei.value.message
