"""SSH transport: connections, host-key policy and running commands on nodes.

One :class:`SshTransport` per node, opened lazily over paramiko: one
connection per node, however many commands run on it. It knows nothing about
Kubernetes: it runs shell commands (optionally as root, :mod:`piprov.ssh.sudo`),
feeds them bytes on stdin, and counts round trips so tests and benchmarks can
hold piprov to "one facts command per node".

It logs in as OpenSSH would (:mod:`piprov.ssh`): the inventory's settings win,
~/.ssh/config fills in what the inventory leaves out, keys come from identity
files and ssh-agent, and a node may sit behind a jump host (``ssh.proxy_jump``
or ProxyJump) whose own host key is checked like any node's.

Host keys are strict by default: the node's key must already be in piprov's
own known_hosts file. Trust-on-first-use must be asked for; it pins a key seen
for the first time (written under a lock), and a *changed* key always stops.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paramiko

from piprov.errors import (
    AuthenticationError,
    ConnectTimeoutError,
    HostKeyError,
    PiprovError,
    SudoPasswordError,
    TransportError,
    UnreachableError,
)
from piprov.inventory.model import HostKeyPolicy, Node, refuse_documentation_address
from piprov.ssh import sudo as sudo_cmd
from piprov.ssh.auth import KeyChain, NodeTransport, authenticate, check_identity_files
from piprov.ssh.config import Resolved, resolve
from piprov.ssh.hostkeys import check_host_key, known_hosts_name, pin_host_key, prefer_pinned_type
from piprov.ssh.secrets import Secret, Session, current

__all__ = ["PASSWORD_ENV", "CommandResult", "SshTransport", "Transport", "known_hosts_name", "pin_host_key"]

PASSWORD_ENV = "PIPROV_SSH_PASSWORD"
# Commands at once on one node's connection. OpenSSH's sshd allows 10 sessions per
# connection (sshd_config(5) MaxSessions, default 10); a node's independent steps
# and their on-node health waits need a few, and the Pi's CPU is what they share.
MAX_SESSIONS = 4

# paramiko logs failed handshakes with tracebacks from its own thread; without
# a handler Python prints them on stderr. Every failure reaches the user as a
# TransportError naming the node instead.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(logging.NullHandler())
_paramiko_log.propagate = False


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 5) -> str:
        """The last lines of output, for error messages."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "\n".join(text[-lines:])


class Transport(Protocol):
    """What the orchestrator needs from a way of reaching a node."""

    host: str
    round_trips: int

    def run(
        self, command: str, *, sudo: bool = False, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult: ...

    def close(self) -> None: ...


class Tunnels(Protocol):
    """Where a transport gets the channel to its node through a jump host (:class:`piprov.jump.Jumps`)."""

    def channel(self, node: Node, r: Resolved) -> socket.socket | paramiko.Channel: ...


@dataclass
class SshTransport:
    """A lazily opened SSH connection to one node.

    ``host`` is the node's inventory name, used in every message. ``session``
    is what the run shares (ssh_config, passphrases, the sudo password);
    ``tunnels`` opens the way through a jump host (the fleet's, so a bastion
    carries every node behind it on one connection).
    """

    node: Node
    known_hosts: Path
    policy: HostKeyPolicy | None = None
    password: str | None = field(default=None, repr=False)
    session: Session | None = field(default=None, repr=False)
    keychain: KeyChain | None = field(default=None, repr=False)
    tunnels: Tunnels | None = field(default=None, repr=False)
    # False: log in with the password alone (`piprov keys` proving the password, not a key).
    use_keys: bool = True
    host: str = field(init=False)
    round_trips: int = field(default=0, init=False)
    connections: int = field(default=0, init=False)
    _t: paramiko.Transport | None = field(default=None, init=False, repr=False)
    _resolved: Resolved | None = field(default=None, init=False, repr=False)
    # Up to MAX_SESSIONS commands at once, each on its own channel of the one
    # connection: an on-node health wait (one long command) must not hold up the
    # node's other, independent steps. Opening has its own lock so a jump host
    # busy with commands still opens tunnels for the nodes behind it.
    _sessions: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_SESSIONS), init=False, repr=False)
    _open_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _in_flight: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.host = self.node.name
        if self.password is None:
            self.password = os.environ.get(PASSWORD_ENV) or None
        if self.session is None:
            self.session = current()
        if self.keychain is None:
            self.keychain = KeyChain(self.session)

    @property
    def effective_policy(self) -> HostKeyPolicy:
        return self.policy or self.node.ssh.host_key_policy

    def resolved(self) -> Resolved:
        """The node's SSH settings: inventory, then ssh_config, then piprov's defaults."""
        if self._resolved is None:
            assert self.session is not None
            self._resolved = resolve(self.node, self.session.config())
        return self._resolved

    def connection(self) -> paramiko.Transport:
        """The open, logged-in connection (opened now if need be)."""
        with self._open_lock:
            if self._t is not None and self._t.is_active() and self._t.is_authenticated():
                return self._t
            self._close_transport()
            refuse_documentation_address(self.node)
            r = self.resolved()
            if self.use_keys:
                check_identity_files(r, self.host)
            try:
                t = self._handshake(r)
            except PiprovError:
                raise
            except Exception:  # noqa: BLE001 - dropped mid-handshake (busy or just-booted sshd): once more
                time.sleep(0.5)
                t = self._handshake(r, last=True)
            self.connections += 1
            self._t = t
            return t

    def _handshake(self, r: Resolved, last: bool = False) -> paramiko.Transport:
        """Connect, check the host key, log in. Every failure but a dropped handshake is typed
        (that one too on the ``last`` try)."""
        via = r.proxy_jump
        sock = self._socket(r)
        t = NodeTransport(sock)
        t.node_name = self.host
        try:
            name = known_hosts_name(r.address, r.port)
            prefer_pinned_type(t, self.known_hosts, name)
            t.banner_timeout = r.connect_timeout
            t.auth_timeout = r.connect_timeout
            # Longer than the banner timeout, so a mute port reads as "no banner".
            t.start_client(timeout=2 * r.connect_timeout + 1)
            if not t.is_active():  # paramiko may return from a handshake its thread gave up on
                raise t.get_exception() or EOFError("the server closed the connection during the handshake")
            check_host_key(self.known_hosts, name, t.get_remote_server_key(), host=self.host,
                           tofu=self.effective_policy == "tofu")
            assert self.keychain is not None
            authenticate(t, r, self.keychain if self.use_keys else None, password=self.password, host=self.host)
            return t
        except PiprovError:
            t.close()
            raise
        except paramiko.AuthenticationException as e:
            t.close()
            if "saw EOF" in str(e) and not last:
                raise  # dropped: retried once by connection()
            raise AuthenticationError(f"SSH login as {r.user!r} on {r.address}:{r.port} failed ({e})",
                                      host=self.host) from None
        except (socket.timeout, TimeoutError) as e:
            t.close()
            raise ConnectTimeoutError(
                f"SSH to {r.address}:{r.port} timed out after {r.connect_timeout:g} s during the handshake"
                + (f" (through {via.host})" if via else ""), host=self.host,
                hint="the node answers TCP but not SSH: overloaded, or still booting?") from e
        except (OSError, paramiko.SSHException, EOFError) as e:
            t.close()
            # paramiko: "Error reading SSH protocol banner", raised while handling the
            # timeout (a mute port) or the EOF (a dropped connection: retried below).
            if "banner" in str(e) and isinstance(e.__context__, (socket.timeout, TimeoutError)):
                raise ConnectTimeoutError(
                    f"{r.address}:{r.port} accepted the connection but sent no SSH banner within "
                    f"{r.connect_timeout:g} s", host=self.host,
                    hint="something else listens there, or sshd is overloaded (MaxStartups) or still booting") from None
            if not last:
                raise
            raise TransportError(f"SSH to {r.address}:{r.port} failed during the handshake: "
                                 f"{e or type(e).__name__}", host=self.host,
                                 hint="sshd on the node dropped the connection; its journal may say why "
                                 "(journalctl -u ssh)") from None

    def _socket(self, r: Resolved) -> socket.socket | paramiko.Channel:
        if r.proxy_jump is None:
            return open_socket(r.address, r.port, r.connect_timeout, host=self.host)
        if self.tunnels is None:
            raise TransportError(f"{self.host} is reached through jump host {r.proxy_jump.host}, "
                                 "but this connection was opened without one",
                                 host=self.host, hint="a bug in piprov: please report it")
        return self.tunnels.channel(self.node, r)

    def run(
        self, command: str, *, sudo: bool = False, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run ``command`` with ``sh -c`` on the node and wait for it.

        A non-zero exit is returned, not raised: the caller knows what it means.
        Losing the connection raises TransportError naming the node. With
        ``sudo``, a node whose sudo wants a password gets the run's sudo
        password on stdin (never in argv, environment or messages).
        """
        with self._sessions:
            if not sudo:
                return self._exec(command, command, stdin, timeout)
            assert self.session is not None
            password = self.session.sudo.known
            if password is None:
                res = self._exec(command, sudo_cmd.sudo_command(command), stdin, timeout)
                if not sudo_cmd.needs_password(res.exit_code, res.stdout, res.stderr):
                    return res
                password = self.session.sudo.get()
                if password is None:
                    raise SudoPasswordError(
                        f"sudo on the node needs a password for {self.resolved().user!r}", host=self.host,
                        hint="run with --ask-sudo-password (asked once for every node), "
                        "or set $PIPROV_SUDO_PASSWORD in scripts")
            res = self._exec(command, sudo_cmd.sudo_password_command(command),
                             sudo_cmd.password_stdin(password, stdin), timeout)
            if sudo_cmd.password_refused(res.exit_code, res.stderr):
                raise SudoPasswordError(f"sudo refused the password for {self.resolved().user!r}",
                                        host=self.host, hint="check the sudo password and run again")
            return res

    def _exec(self, command: str, full: str, stdin: bytes | None, timeout: float | None) -> CommandResult:
        t = self.connection()
        start = time.monotonic()
        with self._count_lock:
            self.round_trips += 1
            self._in_flight += 1
        chan: paramiko.Channel | None = None
        try:
            chan = t.open_session(timeout=timeout)
            chan.settimeout(timeout)
            chan.exec_command(full)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            stdout, stderr = _drain(chan, timeout)
            code = chan.recv_exit_status()
            chan.close()
            if code == -1 and not t.is_active():
                # paramiko closes the channels of a dead connection with
                # "exit status" -1: that is a lost node, not a failed command.
                raise EOFError("the connection dropped before the command finished")
        except socket.timeout:
            self._drop_after_timeout(chan)
            raise TransportError(
                f"a command did not finish within {timeout:g} s: {_first_line(command)}",
                host=self.host,
                hint="the node may be overloaded or hung; its journal may say why",
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as e:
            self._drop()
            raise TransportError(
                f"connection lost while running a command: {e or type(e).__name__}",
                host=self.host,
                hint="the node may have rebooted or dropped off the network; run again once it is back",
            ) from None
        finally:
            with self._count_lock:
                self._in_flight -= 1
        return CommandResult(
            host=self.host,
            command=command,
            exit_code=code,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            seconds=time.monotonic() - start,
        )

    def _close_transport(self) -> None:
        if self._t is not None:
            try:
                self._t.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail any way
                pass
            self._t = None

    def _drop(self) -> None:
        with self._open_lock:
            self._close_transport()

    def _drop_after_timeout(self, chan: paramiko.Channel | None) -> None:
        """A command that timed out: close the connection, unless other commands still use it.

        Alone, the connection may be what hangs (a dead peer): the next command
        opens a new one. With others in flight only this channel goes; a dead
        connection then times them out too, and the last one closes it.
        """
        with self._count_lock:
            alone = self._in_flight <= 1
        if alone or chan is None:
            self._drop()
            return
        try:
            chan.close()
        except Exception:  # noqa: BLE001 - closing a channel of a sick connection may fail any way
            pass

    def close(self) -> None:
        self._drop()


def open_socket(address: str, port: int, timeout: float, *, host: str) -> socket.socket:
    """A TCP connection to ``address:port``; UnreachableError or ConnectTimeoutError naming why not."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except (socket.timeout, TimeoutError):
        raise ConnectTimeoutError(f"no answer from {address}:{port} within {timeout:g} s", host=host,
                                  hint="is the node powered and on the network?") from None
    except socket.gaierror as e:
        raise UnreachableError(f"cannot resolve {address}: {e.strerror or e}", host=host) from None
    except ConnectionRefusedError:
        raise UnreachableError(f"{address}:{port} refused the connection: no sshd listening there", host=host,
                               hint="is sshd running on the node, and is ssh.port right?") from None
    except OSError as e:
        raise UnreachableError(f"cannot reach {address}:{port}: {e.strerror or e}", host=host,
                               hint="is the node powered and on the network?") from None
    # paramiko leaves Nagle on: each small exec then waits for the delayed
    # ACK, ~40 ms per command on an idle LAN.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _detect_dead_peer(sock)
    return sock


# A node that drops off the network (cable, Wi-Fi, power) sends no RST: without
# these, a command in flight waits for its whole timeout (up to 10 min for an
# apply). Keepalives find an idle dead link in ~20 s, TCP_USER_TIMEOUT one with
# unacknowledged data in flight; a live but busy node answers both from its kernel.
KEEPALIVE_IDLE = 10
KEEPALIVE_INTERVAL = 3
KEEPALIVE_COUNT = 3
USER_TIMEOUT_MS = 20_000


def _detect_dead_peer(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                       ("TCP_KEEPCNT", KEEPALIVE_COUNT), ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS)):
        if hasattr(socket, opt):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


def _first_line(command: str) -> str:
    line = command.strip().splitlines()[0] if command.strip() else ""
    return line if len(line) <= 80 else line[:77] + "..."


def _drain(chan: paramiko.Channel, timeout: float | None) -> tuple[bytes, bytes]:
    """Read stdout and stderr to the end without either one filling up.

    The channel's fileno() becomes readable when either stream has data or the
    channel closes, so one select() covers both.
    """
    out: list[bytes] = []
    err: list[bytes] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        while chan.recv_ready():
            out.append(chan.recv(65536))
        while chan.recv_stderr_ready():
            err.append(chan.recv_stderr(65536))
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            # Output may still be in flight after the exit status; it ends with EOF.
            if chan.eof_received or chan.closed:
                break
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise socket.timeout(f"no end of output after {timeout:g} s")
        select.select([chan], [], [], 0.5 if remaining is None else min(0.5, remaining))
    return b"".join(out), b"".join(err)
