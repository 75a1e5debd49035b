"""A node's SSH settings as OpenSSH would take them: the inventory first, then ssh_config.

The inventory wins for every setting it gives (globally or on the node); what
it leaves out comes from the ssh_config file (``-F``, ``$PIPROV_SSH_CONFIG``, or
``~/.ssh/config``): User, Port, IdentityFile, IdentitiesOnly, ProxyJump, and
HostName for a jump host named by alias. piprov's own defaults (user pirate,
port 22, as HypriotOS ships) come last. A node is looked up in the ssh_config
by its inventory name first (a ``Host`` alias), then by its address; the
connection always goes to the inventory's address.

paramiko's SSHConfig does the matching (OpenSSH's first-obtained-value rule,
``Host``/``Match`` blocks, ``%h``/``~`` expansion in IdentityFile and ProxyJump:
paramiko 5.1.0, paramiko/config.py ``lookup`` and ``TOKENS_BY_CONFIG_KEY``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from piprov.errors import InventoryError, Location
from piprov.inventory.model import Node, SshSettings

DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
_HOP_RE = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>[0-9]{1,5}))?$")


@dataclass(frozen=True)
class Hop:
    """A jump host: where to connect and as whom (from ``[user@]host[:port]``)."""

    host: str
    user: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class Resolved:
    """Everything needed to log in to one host."""

    address: str
    user: str
    port: int
    identity_files: tuple[str, ...]  # expanded paths; explicit ones must exist
    identities_explicit: bool  # from the inventory or ssh_config, not piprov's defaults
    identities_only: bool
    proxy_jump: Hop | None
    connect_timeout: float


def parse_hop(text: str) -> Hop:
    """``[user@]host[:port]``, as ProxyJump takes it; ValueError if it is not that."""
    m = _HOP_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not [user@]host[:port]")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is not 1-65535")
    return Hop(m["host"].strip("[]"), m["user"], port)


def load_config(path: Path | None) -> paramiko.SSHConfig:
    """The ssh_config at ``path`` (an empty one for None); a broken file is an InventoryError naming it."""
    if path is None:
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except FileNotFoundError:
        raise InventoryError(f"ssh config {path} does not exist",
                             hint="-F FILE and $PIPROV_SSH_CONFIG name the ssh_config to read; "
                             "-F none reads none") from None
    except OSError as e:
        raise InventoryError(f"cannot read ssh config {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - paramiko raises ConfigParseError, ValueError, KeyError...
        raise InventoryError(f"cannot parse ssh config {path}: {e}", location=Location(str(path)),
                             hint="`ssh -G HOST -F FILE` shows what OpenSSH makes of it") from None


def _lookup(config: paramiko.SSHConfig, *names: str) -> dict[str, Any]:
    """Options for the first of ``names`` that a Host block names, merged with the next ones'."""
    merged: dict[str, Any] = {}
    for name in names:
        for key, value in config.lookup(name).items():
            merged.setdefault(key, value)
    return merged


def resolve(node: Node, config: paramiko.SSHConfig) -> Resolved:
    """The settings for ``node``: the inventory's where it gives them, else ssh_config's, else piprov's defaults."""
    return _resolve(node.address, node.ssh, _lookup(config, node.name, node.address))


def _resolve(address: str, ssh: SshSettings, opts: dict[str, Any], own_jump: bool = True) -> Resolved:
    given = ssh.explicit
    user = ssh.user if "user" in given or "user" not in opts else str(opts["user"])
    port = ssh.port if "port" in given or "port" not in opts else int(opts["port"])
    if "identity_file" in given and ssh.identity_file:
        files: tuple[str, ...] = (ssh.identity_file,)
        explicit_files = True
    elif opts.get("identityfile"):
        files = tuple(os.path.expanduser(f) for f in opts["identityfile"])
        explicit_files = True
    elif ssh.identity_file:  # a default set in code (SshSettings built without the loader)
        files, explicit_files = (ssh.identity_file,), True
    else:
        files = tuple(os.path.expanduser(f) for f in DEFAULT_IDENTITIES)
        explicit_files = False
    only = str(opts.get("identitiesonly", "no")).lower() == "yes"
    if "proxy_jump" in given or ssh.proxy_jump:
        jump_text = ssh.proxy_jump  # the inventory's (null: none, whatever ssh_config says)
    else:
        jump_text = opts.get("proxyjump") if own_jump else None
    jump = None
    if jump_text and str(jump_text).lower() != "none":
        if "," in str(jump_text):
            raise InventoryError(f"ProxyJump {jump_text!r} is a chain of jump hosts; piprov goes through one",
                                 hint="set ssh.proxy_jump to the last jump host, reachable directly")
        try:
            jump = parse_hop(str(jump_text))
        except ValueError as e:
            raise InventoryError(f"ProxyJump {e}") from None
    return Resolved(address=address, user=user, port=port, identity_files=files, identities_explicit=explicit_files,
                    identities_only=only, proxy_jump=jump, connect_timeout=ssh.connect_timeout)
