"""SSH like OpenSSH (issue 15), without root: ssh_config resolution, why a login failed,
damaged known_hosts lines, the sudo password's path, and RSA against a pre-7.2 server.

In-process paramiko servers stand in for nodes and jump hosts; a fake ``sudo``
on PATH stands in for the node's sudo, so the shell that carries the password
runs for real under sh.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import paramiko
import pytest

from piprov.errors import (
    AuthenticationError,
    ConnectTimeoutError,
    HostKeyError,
    JumpHostError,
    KeyFileError,
    PassphraseError,
    ProblemList,
    UnreachableError,
)
from piprov.inventory import load_text
from piprov.inventory.model import Node, SshSettings
from piprov.jump import Jumps
from piprov.keys import forget_host_key, generate_keypair
from piprov.ssh import sudo
from piprov.ssh.auth import LegacyRSAKey
from piprov.ssh.config import Hop, load_config, parse_hop, resolve
from piprov.ssh.hostkeys import pinned_keys, read_known_hosts
from piprov.ssh.secrets import AskOnce, Secret, Session
from piprov.transport import SshTransport, known_hosts_name

# -- ssh_config resolution ---------------------------------------------------------------------------

INVENTORY = """\
cluster: {name: c}
ssh:
  known_hosts: kh
nodes:
  - {name: rpi-master, address: 10.1.0.11, role: master}
  - name: rpi-node-1
    address: 10.1.0.12
    role: worker
    ssh: {user: alice, port: 2200, identity_file: /keys/inv}
  - name: rpi-node-2
    address: 10.1.0.13
    role: worker
    ssh: {proxy_jump: null}
"""

SSH_CONFIG = """\
Host rpi-master rpi-node-*
  User bob
  Port 2222
  IdentityFile ~/.ssh/from_config_%h
  IdentitiesOnly yes
  ProxyJump admin@bastion:2022

Host 10.1.0.*
  User carol
"""


def _resolved(tmp_path: Path, name: str) -> Any:
    inv = load_text(INVENTORY, tmp_path / "inventory.yaml")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(SSH_CONFIG)
    return resolve(inv.node(name), load_config(cfg))


def test_ssh_config_fills_in_what_the_inventory_leaves_out(tmp_path: Path) -> None:
    r = _resolved(tmp_path, "rpi-master")
    assert (r.address, r.user, r.port) == ("10.1.0.11", "bob", 2222)
    assert r.identity_files == (os.path.expanduser("~/.ssh/from_config_rpi-master"),)
    assert r.identities_only and r.identities_explicit
    assert r.proxy_jump == Hop("bastion", "admin", 2022)


def test_the_inventory_wins(tmp_path: Path) -> None:
    r = _resolved(tmp_path, "rpi-node-1")
    assert (r.address, r.user, r.port, r.identity_files) == ("10.1.0.12", "alice", 2200, ("/keys/inv",))
    # proxy_jump: null on the node: no jump host, whatever ssh_config says.
    assert _resolved(tmp_path, "rpi-node-2").proxy_jump is None


def test_without_any_ssh_config_piprovs_defaults(tmp_path: Path) -> None:
    inv = load_text(INVENTORY, tmp_path / "inventory.yaml")
    r = resolve(inv.node("rpi-master"), load_config(None))
    assert (r.user, r.port, r.proxy_jump, r.identities_explicit) == ("pirate", 22, None, False)
    assert Session(ssh_config="none").ssh_config_path() is None


@pytest.mark.parametrize("text,ok", [("pirate@10.0.0.5", True), ("bastion", True), ("gw.example:2222", True),
                                     ("a,b", False), ("pirate@", False), ("host:99999", False)])
def test_proxy_jump_is_validated_with_file_and_line(tmp_path: Path, text: str, ok: bool) -> None:
    doc = INVENTORY.replace("ssh: {proxy_jump: null}", f"ssh: {{proxy_jump: '{text}'}}")
    if ok:
        load_text(doc, tmp_path / "inventory.yaml")
        parse_hop(text)
        return
    with pytest.raises(ProblemList) as ei:
        load_text(doc, tmp_path / "inventory.yaml")
    (problem,) = ei.value.problems
    assert problem.location is not None and problem.location.line == 13 and "proxy_jump" in str(problem)


# -- secrets asked once --------------------------------------------------------------------------------


def test_a_secret_is_asked_once_for_every_thread() -> None:
    asked: list[str] = []
    holder = AskOnce("sudo password", lambda q: asked.append(q) or "pw")
    results: list[Secret | None] = []
    threads = [threading.Thread(target=lambda: results.append(holder.get())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert asked == ["sudo password"] and all(r is not None and r.reveal() == "pw" for r in results)
    assert "pw" not in repr(results[0]) and "pw" not in str(results[0])


# -- in-process sshd -----------------------------------------------------------------------------------


class _Server(paramiko.ServerInterface):
    def __init__(self, keys: list[paramiko.PKey], forward: bool) -> None:
        self.keys, self.forward = keys, forward
        self.commands: list[bytes] = []
        self.tunnels: dict[int, tuple[str, int]] = {}
        self.gates: dict[bytes, threading.Event] = {}  # a command that answers once its event is set

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "pirate" and any(k.asbytes() == key.asbytes() for k in self.keys)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: Any, destination: Any) -> int:
        if not self.forward:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.tunnels[chanid] = destination
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.commands.append(command)

        def answer() -> None:
            while channel.recv(1024):  # as sshd: the command ends once its stdin has
                pass
            gate = self.gates.get(command)
            if gate is not None:
                gate.wait(10)
            channel.sendall(b"hi\n")
            channel.send_exit_status(0)
            channel.close()

        threading.Thread(target=answer, daemon=True).start()
        return True


class Sshd:
    """A paramiko sshd on 127.0.0.1 accepting ``keys`` for pirate; ``legacy``: like OpenSSH 6.7
    (no server-sig-algs, RSA signatures only as ssh-rsa)."""

    def __init__(self, tmp_path: Path, keys: list[paramiko.PKey], *, legacy: bool = False,
                 forward: bool = True) -> None:
        self.host_key = paramiko.Ed25519Key.from_private_key_file(str(_keyfile(tmp_path / f"host{id(self)}")))
        self.server = _Server(keys, forward)
        self.legacy = legacy
        self.sig_algs: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        # One thread per connection, as sshd forks one: a client that gave up mid-handshake
        # (an unpinned key) must not hold up the next one's banner.
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        t = paramiko.Transport(conn, server_sig_algs=not self.legacy)
        if self.legacy:
            seen = self.sig_algs

            class OldRSA(LegacyRSAKey):
                def verify_ssh_sig(self, data: bytes, msg: paramiko.Message) -> bool:
                    seen.append(msg.get_text())
                    msg.rewind()
                    return super().verify_ssh_sig(data, msg)

            t._preferred_pubkeys = ("ssh-ed25519", "ssh-rsa")  # type: ignore[attr-defined]
            t._key_info = {**t._key_info, "ssh-rsa": OldRSA}  # type: ignore[attr-defined]
        t.add_server_key(self.host_key)
        try:
            t.start_server(server=self.server)
        except (paramiko.SSHException, EOFError, OSError):  # the client hung up mid-handshake
            return
        self._forward(t)

    def _forward(self, t: paramiko.Transport) -> None:
        """Relay direct-tcpip channels (what sshd does for ssh -J)."""
        while t.is_active():
            ch = t.accept(timeout=0.2)
            if ch is None or ch.get_id() not in self.server.tunnels:
                continue
            out = socket.create_connection(self.server.tunnels[ch.get_id()])
            for src, dst in ((ch, out), (out, ch)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()

    def pin(self, known: Path, address: str = "127.0.0.1") -> None:
        with known.open("a") as f:
            f.write(f"{known_hosts_name(address, self.port)} {self.host_key.get_name()} {self.host_key.get_base64()}\n")

    def close(self) -> None:
        self.sock.close()


def _pump(src: Any, dst: Any) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        dst.close()


def _keyfile(path: Path) -> Path:
    generate_keypair(path)
    return path


def _node(port: int, identity: str | None, name: str = "rpi-node-1", **ssh: Any) -> Node:
    explicit = frozenset({"user", "port", *(["identity_file"] if identity else []), *ssh})
    # Generous: the in-process sshd servers share 2 cores with whatever else runs (a CI lab run);
    # the test that is about a timeout sets its own.
    ssh.setdefault("connect_timeout", 15)
    return Node(name, "127.0.0.1", "worker", SshSettings(port=port, identity_file=identity, explicit=explicit, **ssh))


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, paramiko.PKey]:
    path = _keyfile(tmp_path / "id_ed25519")
    return path, paramiko.Ed25519Key.from_private_key_file(str(path))


@pytest.fixture
def servers() -> Iterator[list[Sshd]]:
    made: list[Sshd] = []
    yield made
    for s in made:
        s.close()


def _transport(node: Node, known: Path, **kw: Any) -> SshTransport:
    return SshTransport(node, known, session=kw.pop("session", Session(ssh_config="none")), password="", **kw)


# -- why a login failed --------------------------------------------------------------------------------


def _pinned_server(tmp_path: Path, pkey: paramiko.PKey, servers: list[Sshd]) -> tuple[Sshd, Path]:
    """An sshd taking ``pkey``, its host key in a fresh known_hosts."""
    srv = Sshd(tmp_path, [pkey])
    servers.append(srv)
    known = tmp_path / "known_hosts"
    srv.pin(known)
    return srv, known


def test_a_key_login_works_and_counts_one_connection(tmp_path: Path, key: Any, servers: list[Sshd]) -> None:
    path, pkey = key
    srv, known = _pinned_server(tmp_path, pkey, servers)
    t = _transport(_node(srv.port, str(path)), known)
    assert t.run("echo hi").stdout == "hi\n" and t.run("echo hi").ok
    assert (t.connections, t.round_trips) == (1, 2)
    t.close()


def test_commands_share_the_connection_side_by_side(tmp_path: Path, key: Any, servers: list[Sshd]) -> None:
    # A long command (an on-node health wait) does not hold up the node's other steps.
    path, pkey = key
    srv, known = _pinned_server(tmp_path, pkey, servers)
    srv.server.gates[b"wait"] = gate = threading.Event()
    t = _transport(_node(srv.port, str(path)), known)
    slow: list[Any] = []
    waiter = threading.Thread(target=lambda: slow.append(t.run("wait", timeout=10)))
    waiter.start()
    while b"wait" not in srv.server.commands:
        time.sleep(0.01)
    assert t.run("echo hi", timeout=5).stdout == "hi\n" and not slow  # while "wait" still runs
    gate.set()
    waiter.join()
    assert slow[0].ok and (t.connections, t.round_trips) == (1, 2)
    t.close()


def test_each_failure_names_its_cause(tmp_path: Path, key: Any, servers: list[Sshd]) -> None:
    path, pkey = key
    srv, known = _pinned_server(tmp_path, pkey, servers)
    with pytest.raises(KeyFileError, match="identity file .*/missing does not exist"):
        _transport(_node(srv.port, str(tmp_path / "missing")), known).run("true")
    other = _keyfile(tmp_path / "other")
    with pytest.raises(AuthenticationError, match=r"refused by 127\.0\.0\.1:\d+ \(tried .*other\)"):
        _transport(_node(srv.port, str(other)), known).run("true")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(UnreachableError, match="refused the connection"):
        _transport(_node(port, str(path)), known).run("true")
    mute = socket.socket()  # accepts TCP, never says a word
    mute.bind(("127.0.0.1", 0))
    mute.listen(1)
    try:
        with pytest.raises(ConnectTimeoutError, match="sent no SSH banner within 1 s"):
            _transport(_node(mute.getsockname()[1], str(path), connect_timeout=1), known).run("true")
    finally:
        mute.close()


def test_a_passphrase_is_asked_once_and_never_shown(tmp_path: Path, servers: list[Sshd]) -> None:
    path = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase 1", "-f", str(path)], check=True)
    srv = Sshd(tmp_path, [paramiko.Ed25519Key.from_private_key_file(str(path), password="pass phrase 1")])
    servers.append(srv)
    known = tmp_path / "known_hosts"
    srv.pin(known)
    with pytest.raises(PassphraseError, match="protected by a passphrase") as ei:
        _transport(_node(srv.port, str(path)), known).run("true")
    assert "ssh-add" in (ei.value.hint or "")
    with pytest.raises(PassphraseError, match="wrong passphrase") as ei:
        _transport(_node(srv.port, str(path)), known, session=Session(ssh_config="none",
                                                                      passphrase_prompt=lambda q: "nope")).run("true")
    asked: list[str] = []
    session = Session(ssh_config="none", passphrase_prompt=lambda q: asked.append(q) or "pass phrase 1")
    for name in ("a", "b", "c"):
        assert _transport(_node(srv.port, str(path), name=name), known, session=session).run("true").ok
    assert asked == [f"passphrase for {path}"]


def test_rsa_against_a_server_older_than_openssh_7_2(tmp_path: Path, servers: list[Sshd],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "id_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(path)], check=True)
    pkey = paramiko.RSAKey.from_private_key_file(str(path))
    old, new = Sshd(tmp_path, [pkey], legacy=True), Sshd(tmp_path, [pkey])
    servers += [old, new]
    known = tmp_path / "known_hosts"
    old.pin(known)
    new.pin(known)
    caplog.set_level("DEBUG", logger="piprov.transport")
    assert _transport(_node(old.port, str(path)), known).run("true").ok
    assert old.sig_algs == ["ssh-rsa"]
    assert "no server-sig-algs" in caplog.text
    caplog.clear()
    assert _transport(_node(new.port, str(path)), known).run("true").ok
    assert "no server-sig-algs" not in caplog.text  # a server that knows rsa-sha2 gets rsa-sha2


def test_through_a_jump_host_whose_key_is_pinned(tmp_path: Path, key: Any, servers: list[Sshd]) -> None:
    path, pkey = key
    bastion, target = Sshd(tmp_path, [pkey]), Sshd(tmp_path, [pkey])
    servers += [bastion, target]
    known = tmp_path / "known_hosts"
    target.pin(known)
    hop = f"pirate@127.0.0.1:{bastion.port}"
    node = _node(target.port, str(path), proxy_jump=hop)
    session = Session(ssh_config="none")

    def via(n: Node) -> SshTransport:
        return _transport(n, known, session=session, tunnels=Jumps(known, session=session))

    with pytest.raises(JumpHostError, match="cannot reach jump host") as ei:
        via(node).run("true")  # the bastion's key is not pinned: strict, as for any node
    assert "--trust-new-hosts" in (ei.value.hint or "")
    bastion.pin(known)
    t = via(node)
    assert t.run("echo hi").stdout == "hi\n"
    assert bastion.server.commands == [] and target.server.commands == [b"echo hi"]
    refusing = Sshd(tmp_path, [pkey], forward=False)
    servers.append(refusing)
    refusing.pin(known)
    with pytest.raises(JumpHostError, match="refused to forward"):
        via(_node(target.port, str(path), proxy_jump=f"127.0.0.1:{refusing.port}")).run("true")


# -- known_hosts -----------------------------------------------------------------------------------------


def test_a_damaged_known_hosts_line_is_a_clean_error_and_forget_key_copes(tmp_path: Path) -> None:
    k = generate_keypair(tmp_path / "a")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"10.0.0.1 {k.kind} {k.blob}\n10.0.0.2 ssh-ed25519 AAAA!!notbase64\n10.0.0.3 {k.kind} {k.blob}\n")
    kh.chmod(0o600)
    with pytest.raises(HostKeyError) as ei:
        read_known_hosts(kh)
    e = ei.value
    assert e.location is not None and (e.location.file, e.location.line) == (str(kh), 2)
    assert "damaged line" in e.message and "sed -i '2d'" in (e.hint or "") and "forget-key" in (e.hint or "")
    node = Node("rpi-node-2", "10.0.0.2", "worker", SshSettings())
    assert forget_host_key(kh, node) == 1
    assert kh.read_text() == f"10.0.0.1 {k.kind} {k.blob}\n10.0.0.3 {k.kind} {k.blob}\n"
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600
    assert read_known_hosts(kh).lookup("10.0.0.3") is not None


def test_pinned_keys_parse_once_but_follow_every_edit_of_the_file(tmp_path: Path) -> None:
    # Parsed once per text of the file (every connection asks twice), yet as strict as
    # reading it anew: an in-place rewrite of the same size, within one clock tick, counts.
    a, b = generate_keypair(tmp_path / "a"), generate_keypair(tmp_path / "b")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"10.0.0.1 {a.kind} {a.blob}\n")
    first = pinned_keys(kh, "10.0.0.1")
    assert first is not None and first[a.kind].get_base64() == a.blob
    assert pinned_keys(kh, "10.0.0.1") is first and pinned_keys(kh, "10.0.0.9") is None
    with open(kh, "r+") as f:  # same inode, same size
        f.write(f"10.0.0.1 {b.kind} {b.blob}\n")
    again = pinned_keys(kh, "10.0.0.1")
    assert again is not None and again[b.kind].get_base64() == b.blob
    kh.unlink()
    assert pinned_keys(kh, "10.0.0.1") is None


# -- the sudo password's path ----------------------------------------------------------------------------

FAKE_SUDO = r"""#!/bin/sh
# sudo for a user whose rule wants a password ($FAKE_PW); logs argv and environment.
printf 'ARGV %s\n' "$*" >> "$FAKE_LOG"; env | grep -v '^FAKE_PW=' >> "$FAKE_LOG"
case "$1" in
  -n) echo "sudo: a password is required" >&2; exit 1 ;;
  -S) [ "$2 $3" = "-p " ] || exit 9; shift 3
      IFS= read -r pw || exit 1
      [ "$pw" = "$FAKE_PW" ] || { echo "Sorry, try again." >&2; exit 1; }
      [ "$1" = -v ] && exit 0; exit 9 ;;
  -k) shift; [ "$1 $2 $3" = "-S -p " ] || exit 9; shift 3
      IFS= read -r pw || exit 1
      [ "$pw" = "$FAKE_PW" ] || exit 1
      exec "$@" ;;
esac
exit 9
"""


def _fake_node_sh(tmp_path: Path, command: str, stdin: bytes, pw: str) -> tuple[subprocess.CompletedProcess[bytes], str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "sudo"
    fake.write_text(FAKE_SUDO)
    fake.chmod(0o755)
    log = tmp_path / "sudo.log"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "FAKE_LOG": str(log), "FAKE_PW": pw}
    p = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, env=env, timeout=30)
    return p, log.read_text()


@pytest.mark.parametrize("shell_input", [b"", b"line one\nline two\n"])
def test_the_sudo_password_goes_on_stdin_only(tmp_path: Path, shell_input: bytes) -> None:
    pw = "Pw with spaces & $dollars"
    cmd = sudo.sudo_password_command("cat; echo done")
    assert pw not in cmd and "sudo -k -S -p ''" in cmd
    p, log = _fake_node_sh(tmp_path, cmd, sudo.password_stdin(Secret(pw), shell_input), pw)
    assert p.returncode == 0, p.stderr
    assert p.stdout == shell_input + b"done\n"  # the command got its input and not the password line
    assert pw not in log and "ARGV -k -S -p  sh -c" in log  # never in sudo's argv or anyone's environment
    wrong, _ = _fake_node_sh(tmp_path, cmd, sudo.password_stdin(Secret("nope"), b"secret script\n"), pw)
    assert sudo.password_refused(wrong.returncode, wrong.stderr.decode())
    assert b"secret script" not in wrong.stdout + wrong.stderr


def test_sudo_wanting_a_password_is_told_from_a_failed_command() -> None:
    assert sudo.needs_password(1, "", "sudo: a password is required\n")
    assert not sudo.needs_password(1, "PIPROV-FACTS-BEGIN 1\n", "sudo: a password is required\n")
    assert not sudo.needs_password(1, "", "sh: 1: false\n")
    assert sudo.sudo_command("x") == "sudo -n sh -c x"
