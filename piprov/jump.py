"""Jump hosts: reaching a node through another (``ssh.proxy_jump``, or ProxyJump in ssh_config).

A jump host is connected like any node (its host key checked against the same
known_hosts, strict unless trust on first use was asked for; its login as
OpenSSH would), and carries a ``direct-tcpip`` channel to the node (RFC 4254
7.2; what ``ssh -J`` asks sshd for). One connection per jump host, however
many nodes sit behind it; a jump host that is itself an inventory node shares
that node's own connection. A jump host may have its own jump host; a loop is
refused.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from pathlib import Path
from typing import Mapping

import paramiko

from piprov.errors import JumpHostError, PiprovError
from piprov.inventory.model import HostKeyPolicy, Node, SshSettings
from piprov.ssh.auth import KeyChain
from piprov.ssh.config import Hop, Resolved
from piprov.ssh.secrets import Session, current
from piprov.transport import SshTransport, open_socket

_opening = threading.local()


class Jumps:
    """The jump hosts of one fleet (or one command), each connected once."""

    def __init__(self, known_hosts: Path, *, policy: HostKeyPolicy | None = None, session: Session | None = None,
                 keychain: KeyChain | None = None, nodes: Mapping[str, Node] | None = None,
                 transports: Mapping[str, SshTransport] | None = None) -> None:
        self.known_hosts = known_hosts
        self.policy = policy
        self.session = session or current()
        self.keychain = keychain or KeyChain(self.session)
        self.nodes = dict(nodes or {})
        self.transports = transports if transports is not None else {}
        self._own: dict[tuple[str, str, int | None, str | None], SshTransport] = {}
        self._lock = threading.Lock()

    def channel(self, node: Node, r: Resolved) -> socket.socket | paramiko.Channel:
        """A byte stream to ``node``'s sshd through its jump host (a plain socket if the hop is the node itself)."""
        hop = r.proxy_jump
        assert hop is not None
        bastion = self._bastion(node, hop, r.port)
        if bastion is None:
            return open_socket(r.address, r.port, r.connect_timeout, host=node.name)
        stack: list[str] = getattr(_opening, "stack", [])
        if bastion.host in stack or node.name in stack:
            raise JumpHostError(f"jump hosts form a loop: {' -> '.join([*stack, node.name, bastion.host])}",
                                host=node.name, hint="check ssh.proxy_jump and ProxyJump in your ssh config")
        _opening.stack = [*stack, node.name]
        try:
            t = bastion.connection()
        except PiprovError as e:
            raise JumpHostError(f"cannot reach jump host {bastion.host} on the way to {r.address}: {e.message}",
                                host=node.name, hint=e.hint) from e
        finally:
            _opening.stack = stack
        try:
            return t.open_channel("direct-tcpip", (r.address, r.port), ("127.0.0.1", 0), timeout=r.connect_timeout)
        except paramiko.ChannelException as e:
            raise JumpHostError(
                f"jump host {bastion.host} refused to forward to {r.address}:{r.port}: {e.text}", host=node.name,
                hint="its sshd must allow TCP forwarding (AllowTcpForwarding) and reach the node") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            bastion.close()
            raise JumpHostError(f"jump host {bastion.host} dropped the way to {r.address}:{r.port}: "
                                f"{e or type(e).__name__}", host=node.name) from None

    def _bastion(self, node: Node, hop: Hop, port: int) -> SshTransport | None:
        """The transport to ``hop``; None when the hop is the node itself (a global proxy_jump on the bastion)."""
        target = self.nodes.get(hop.host) or next((n for n in self.nodes.values() if n.address == hop.host), None)
        if (target is not None and target.name == node.name) or hop.host == node.name or (
                hop.host == node.address and (hop.port or 22) == port):
            return None
        with self._lock:
            if target is not None and hop.user is None and hop.port is None and target.name in self.transports:
                return self.transports[target.name]
            key = (target.name if target else hop.host, "", hop.port, hop.user)
            if key not in self._own:
                self._own[key] = SshTransport(self._hop_node(node, hop, target), self.known_hosts,
                                              policy=self.policy, session=self.session, keychain=self.keychain,
                                              tunnels=self)
            return self._own[key]

    def _hop_node(self, node: Node, hop: Hop, target: Node | None) -> Node:
        """A jump host as a node: an inventory node with the hop's user/port, or one made from the hop.

        A hop that is not an inventory node takes its user and port from the hop
        (``user@host:port``), else from its ssh_config block, else piprov's
        defaults; its key from ssh_config, else the inventory's identity_file.
        """
        extra = {k for k, v in (("user", hop.user), ("port", hop.port)) if v is not None}
        if target is not None:
            ssh = dataclasses.replace(target.ssh, user=hop.user or target.ssh.user, port=hop.port or target.ssh.port,
                                      explicit=target.ssh.explicit | extra)
            return dataclasses.replace(target, ssh=ssh)
        address = str(self.session.config().lookup(hop.host).get("hostname") or hop.host)
        base = node.ssh
        ssh = SshSettings(user=hop.user or SshSettings.user, port=hop.port or SshSettings.port,
                          identity_file=base.identity_file, host_key_policy=base.host_key_policy,
                          connect_timeout=base.connect_timeout, explicit=frozenset(extra))
        return Node(name=hop.host, address=address, role="worker", ssh=ssh)

    def close(self) -> None:
        for t in self._own.values():
            t.close()
