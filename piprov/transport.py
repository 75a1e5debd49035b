"""SSH transport: connections, host-key policy and running commands on nodes.

One :class:`SshTransport` per node, opened lazily over fabric/paramiko. It
knows nothing about Kubernetes: it runs shell commands (optionally as root via
``sudo -n``), feeds them bytes on stdin, and counts round trips so tests and
benchmarks can hold piprov to "one facts command per node".

Host keys are strict by default: the node's key must already be in piprov's
own known_hosts file. Trust-on-first-use must be asked for; it pins a key seen
for the first time (written under a lock), and a *changed* key always stops.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paramiko
from fabric import Config, Connection

from piprov.errors import AuthenticationError, HostKeyError, TransportError
from piprov.inventory.model import HostKeyPolicy, Node, refuse_documentation_address

PASSWORD_ENV = "PIPROV_SSH_PASSWORD"

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


def _fingerprint(key: paramiko.PKey) -> str:
    import base64

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    """The name a host is filed under in known_hosts (OpenSSH's convention)."""
    return address if port == 22 else f"[{address}]:{port}"


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, node_name: str, known_hosts: Path) -> None:
        self.node_name = node_name
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(
            f"host key of {hostname} is not in {self.known_hosts} ({key.get_name()} {_fingerprint(key)})",
            host=self.node_name,
            hint="check the fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), "
            "then run again with --trust-new-hosts to pin it, or set host_key_policy: tofu",
        )


class _TrustOnFirstUsePolicy(paramiko.MissingHostKeyPolicy):
    """Pin a key seen for the first time. Only ever called for *unknown* hosts:

    paramiko raises BadHostKeyException by itself when a known host presents a
    different key, and that is never overridden here.
    """

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        pin_host_key(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def pin_host_key(known_hosts: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname key`` to known_hosts under an exclusive lock.

    Several nodes are connected in parallel (threads) and several piprov runs
    may share the file (processes): flock serializes both, and the file is
    re-read under the lock so a key pinned meanwhile is not written twice.
    """
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    with _PIN_LOCK:
        while not _pin_locked(known_hosts, hostname, key):
            pass  # `forget-key` replaced the file while we waited for its lock: open the new one


def _pin_locked(known_hosts: Path, hostname: str, key: paramiko.PKey) -> bool:
    with open(known_hosts, "a+", encoding="ascii") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            try:
                if os.stat(known_hosts).st_ino != os.fstat(f.fileno()).st_ino:
                    return False
            except FileNotFoundError:
                return False
            f.seek(0)
            current = paramiko.HostKeys()
            for line in f.read().splitlines():
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
                if entry is not None:
                    for name in entry.hostnames:
                        current.add(name, entry.key.get_name(), entry.key)
            existing = current.lookup(hostname)
            if existing is not None and key.get_name() in existing:
                if existing[key.get_name()] != key:
                    raise HostKeyError(
                        f"host key of {hostname} changed while connecting",
                        hint="someone pinned another key for this host meanwhile; run again",
                    )
                return True
            f.seek(0, os.SEEK_END)
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            f.flush()
            os.fsync(f.fileno())
            return True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_PIN_LOCK = threading.Lock()


@dataclass
class SshTransport:
    """A lazily opened SSH connection to one node.

    ``host`` is the node's inventory name, used in every message.
    """

    node: Node
    known_hosts: Path
    policy: HostKeyPolicy | None = None
    password: str | None = None
    host: str = field(init=False)
    round_trips: int = field(default=0, init=False)
    connections: int = field(default=0, init=False)
    _conn: Connection | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.host = self.node.name
        if self.password is None:
            self.password = os.environ.get(PASSWORD_ENV) or None

    @property
    def effective_policy(self) -> HostKeyPolicy:
        return self.policy or self.node.ssh.host_key_policy

    def _open(self) -> Connection:
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        refuse_documentation_address(self.node)
        conn = self._connection()
        self._handshake(conn)
        sock = conn.client.get_transport().sock
        if isinstance(sock, socket.socket):
            # paramiko leaves Nagle on: each small exec then waits for the
            # delayed ACK, ~40 ms per command on an idle LAN.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _detect_dead_peer(sock)
        self.connections += 1
        self._conn = conn
        return conn

    def _connection(self) -> Connection:
        """An unopened connection with the inventory's settings and piprov's host-key policy."""
        ssh = self.node.ssh
        connect_kwargs: dict[str, object] = {
            "look_for_keys": False,
            "allow_agent": False,
            "banner_timeout": ssh.connect_timeout,
            "auth_timeout": ssh.connect_timeout,
        }
        if ssh.identity_file:
            connect_kwargs["key_filename"] = [os.path.expanduser(ssh.identity_file)]
        if self.password:
            connect_kwargs["password"] = self.password
        # The inventory is the single source of truth: ~/.ssh/config must not
        # silently change users, ports or keys.
        config = Config(overrides={"load_ssh_configs": False})
        conn = Connection(
            self.node.address,
            user=ssh.user,
            port=ssh.port,
            config=config,
            connect_timeout=int(max(1, ssh.connect_timeout)),
            connect_kwargs=connect_kwargs,
        )
        client: paramiko.SSHClient = conn.client
        if self.known_hosts.exists():
            # load_host_keys would make paramiko rewrite the file on save;
            # we only ever append, under a lock (pin_host_key).
            client.get_host_keys().load(str(self.known_hosts))
        if self.effective_policy == "tofu":
            client.set_missing_host_key_policy(_TrustOnFirstUsePolicy(self.known_hosts))
        else:
            client.set_missing_host_key_policy(_StrictPolicy(self.host, self.known_hosts))
        return conn

    def _handshake(self, conn: Connection) -> None:
        """Open ``conn``; every way that fails becomes a TransportError naming the node."""
        ssh = self.node.ssh
        try:
            _open_once_more_if_dropped(conn)
        except HostKeyError as e:
            e.host = e.host or self.host
            raise
        except paramiko.BadHostKeyException as e:
            raise HostKeyError(
                f"HOST KEY CHANGED for {self.node.address}: expected {_fingerprint(e.expected_key)}, "
                f"got {_fingerprint(e.key)}; nothing was done on this node",
                host=self.host,
                hint=f"if the SD card was re-flashed, run `piprov node forget-key {self.host}` and try again; "
                "otherwise someone may be impersonating the node",
            ) from None
        except paramiko.AuthenticationException as e:
            raise AuthenticationError(
                f"SSH authentication as {ssh.user!r} failed on {self.node.address}:{ssh.port} ({e})",
                host=self.host,
                hint="check identity_file in the inventory, or run `piprov keys` to install your key",
            ) from None
        except (socket.timeout, TimeoutError) as e:
            raise TransportError(
                f"SSH to {self.node.address}:{ssh.port} timed out after {ssh.connect_timeout:g} s",
                host=self.host,
                hint="is the node powered and on the network?",
            ) from e
        except (OSError, paramiko.SSHException, EOFError) as e:
            raise TransportError(
                f"cannot reach {self.node.address}:{ssh.port} over SSH: {e or type(e).__name__}",
                host=self.host,
                hint="is the node powered and on the network?",
            ) from None

    def run(
        self, command: str, *, sudo: bool = False, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run ``command`` with ``sh -c`` on the node and wait for it.

        A non-zero exit is returned, not raised: the caller knows what it means.
        Losing the connection raises TransportError naming the node.
        """
        full = f"sudo -n sh -c {shlex.quote(command)}" if sudo else command
        with self._lock:
            conn = self._open()
            start = time.monotonic()
            self.round_trips += 1
            try:
                chan = conn.client.get_transport().open_session(timeout=timeout)
                chan.settimeout(timeout)
                chan.exec_command(full)
                if stdin:
                    chan.sendall(stdin)
                chan.shutdown_write()
                stdout, stderr = _drain(chan, timeout)
                code = chan.recv_exit_status()
                chan.close()
                if code == -1 and not conn.client.get_transport().is_active():
                    # paramiko closes the channels of a dead connection with
                    # "exit status" -1: that is a lost node, not a failed command.
                    raise EOFError("the connection dropped before the command finished")
            except socket.timeout:
                self._drop()
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
        return CommandResult(
            host=self.host,
            command=command,
            exit_code=code,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            seconds=time.monotonic() - start,
        )

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection may fail any way
                pass
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def _open_once_more_if_dropped(conn: Connection) -> None:
    """Connect; once more after 0.5 s if the connection dropped during the handshake.

    A Pi that just booted or is busy (sshd restarting, MaxStartups) may close
    a connection mid-handshake; paramiko then even calls it an authentication
    failure ("transport shut down or saw EOF"). Refused connections, timeouts,
    host-key problems and real authentication failures are not retried.
    """
    try:
        conn.open()
        return
    except (HostKeyError, paramiko.BadHostKeyException, TimeoutError):
        raise
    except paramiko.AuthenticationException as e:
        if "saw EOF" not in str(e):
            raise
    except (ConnectionResetError, EOFError, paramiko.SSHException):
        pass
    conn.close()
    time.sleep(0.5)
    conn.open()


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
