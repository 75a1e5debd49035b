"""Log-in keys and host keys: `piprov keys` and `piprov node forget-key`.

Every HypriotOS card boots with the same login (pirate / hypriot). ``piprov
keys`` uses that password once, over a host-key-checked connection, to put
the user's public key in ``~/.ssh/authorized_keys`` on each node; it then
proves that key-only login works on a fresh connection before it does
anything else, and only on nodes where that proof passed may it turn password
login off (an sshd drop-in, validated with ``sshd -t`` before the reload).

Passwords are never taken from the command line or written anywhere: they
come from the prompt or ``$PIPROV_SSH_PASSWORD``, live in memory for the run,
and are never part of a message (paramiko's errors do not carry them either).

Which nodes still accept the default password is checked by trying it, the
only honest way: the shadow hash (yescrypt/sha512-crypt) cannot be computed
on a node that has no Python, and ``PasswordAuthentication yes`` alone does
not say which password. :func:`default_password_accepted` first checks the
host key against piprov's known_hosts (the password is never offered to an
unverified host), then asks sshd which methods it allows and tries the
password only if ``password`` is among them: one short connection per node.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko

from piprov.errors import AuthenticationError, HostKeyError, KeyFileError, PiprovError, TransportError
from piprov.inventory.model import HostKeyPolicy, Inventory, Node, refuse_documentation_address
from piprov.localfs import atomic_write
from piprov.fleet import naming, parallel, reach
from piprov.jump import Jumps
from piprov.shell.keys import disable_password_script, install_key_script
from piprov.ssh.hostkeys import DamagedLine, parse_line, read_known_hosts
from piprov.transport import SshTransport, known_hosts_name

HYPRIOT_PASSWORD = "hypriot"
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


@dataclass(frozen=True)
class PublicKey:
    kind: str
    blob: str  # base64
    comment: str = ""

    @property
    def line(self) -> str:
        return f"{self.kind} {self.blob}" + (f" {self.comment}" if self.comment else "")


def public_key_path(identity_file: str) -> Path:
    return Path(os.path.expanduser(identity_file) + ".pub")


def parse_public_key(text: str, source: str) -> PublicKey:
    """The first key line of an OpenSSH ``.pub`` file, checked."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2 or parts[0] not in _KEY_TYPES:
            break
        try:
            decoded = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            break
        if not decoded[4:].startswith(parts[0].encode()):
            break
        comment = parts[2] if len(parts) > 2 else ""
        # A comment ends up in a shell command and authorized_keys: keep it plain.
        comment = "".join(c for c in comment if c.isalnum() or c in "@._-+")[:64]
        return PublicKey(parts[0], parts[1], comment)
    raise KeyFileError(f"{source} is not an OpenSSH public key", hint=f"regenerate it: ssh-keygen -y -f {source[:-4]}")


def generate_keypair(identity_file: Path, comment: str = "piprov") -> PublicKey:
    """Write a new ed25519 pair (private 0600, ``.pub`` 0644), each file atomically; never overwrite."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if identity_file.exists():
        raise KeyFileError(f"{identity_file} already exists; not overwriting a private key")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode() + f" {comment}\n"
    identity_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(Path(f"{identity_file}.pub"), line.encode(), mode=0o644)
    atomic_write(identity_file, private, mode=0o600)
    return parse_public_key(line, f"{identity_file}.pub")


@dataclass
class NodeKeyResult:
    node: str
    key: str = ""  # "present" or "added"
    key_login: bool = False
    password_disabled: bool = False
    error: PiprovError | None = None


def _password_transport(node: Node, known_hosts: Path, policy: HostKeyPolicy | None, password: str) -> SshTransport:
    # No identity file: this connection must prove the password, not the key.
    return SshTransport(node, known_hosts, policy=policy, password=password, use_keys=False,
                        tunnels=Jumps(known_hosts, policy=policy))


def _key_transport(node: Node, known_hosts: Path, policy: HostKeyPolicy | None) -> SshTransport:
    # password="" (not None) keeps $PIPROV_SSH_PASSWORD out of it: key only.
    return SshTransport(node, known_hosts, policy=policy, password="", tunnels=Jumps(known_hosts, policy=policy))


def key_login_works(node: Node, known_hosts: Path, policy: HostKeyPolicy | None = None) -> bool:
    t = _key_transport(node, known_hosts, policy)
    try:
        return reach(t, timeout=node.ssh.connect_timeout + 5).ok
    except HostKeyError:
        raise
    except TransportError:
        return False
    finally:
        t.close()


def setup_node(
    node: Node,
    key: PublicKey,
    known_hosts: Path,
    *,
    password: str,
    disable_password: bool,
    policy: HostKeyPolicy | None = None,
) -> NodeKeyResult:
    """Install ``key`` on one node, prove key login, then maybe disable passwords. Never raises."""
    res = NodeKeyResult(node.name)
    try:
        if not node.ssh.identity_file:
            raise KeyFileError("no ssh.identity_file in the inventory: piprov does not know which key to install",
                            host=node.name, hint="set ssh.identity_file, e.g. ~/.ssh/id_ed25519")
        t = _password_transport(node, known_hosts, policy, password)
        try:
            out = t.run(install_key_script(key), timeout=node.ssh.connect_timeout + 20)
        except TransportError as e:
            if not isinstance(e, AuthenticationError):
                raise
            if not key_login_works(node, known_hosts, policy):
                raise TransportError(
                    f"the password for {node.ssh.user!r} was refused and the key does not work yet",
                    host=node.name,
                    hint="give the node's current password: --ask-password, or $PIPROV_SSH_PASSWORD in scripts",
                ) from None
            # Password refused but the key already works (e.g. passwords
            # already off): nothing to install.
            out = None
        finally:
            t.close()
        if out is not None:
            if not out.ok or out.stdout.strip() not in ("present", "added"):
                raise TransportError(f"could not update ~/.ssh/authorized_keys: {out.tail(3) or 'no output'}",
                                     host=node.name)
            res.key = out.stdout.strip()
        else:
            res.key = "present"
        res.key_login = key_login_works(node, known_hosts, policy)
        if not res.key_login:
            raise TransportError("the key was installed but key-only login still fails; password login left on",
                                 host=node.name, hint="check the home directory's permissions on the node "
                                 "(sshd's StrictModes) and its journal (journalctl -u ssh)")
        if disable_password:
            t = _key_transport(node, known_hosts, policy)
            try:
                out = t.run(disable_password_script(), sudo=True, timeout=60)
            finally:
                t.close()
            if not out.ok:
                raise TransportError(f"could not disable password login: {out.tail(3) or 'no output'}",
                                     host=node.name)
            res.password_disabled = True
    except PiprovError as e:
        res.error = naming(e, node.name)
    return res


def default_password_accepted(node: Node, known_hosts: Path, password: str = HYPRIOT_PASSWORD) -> bool | None:
    """Does the node let ``node.ssh.user`` in with ``password``? None when that cannot be told safely.

    The host key must match piprov's known_hosts first: a password (even the
    well-known default) is never offered to a host that is not verified.
    """
    refuse_documentation_address(node)
    try:
        sock = socket.create_connection((node.address, node.ssh.port), timeout=node.ssh.connect_timeout)
    except OSError:
        return None
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = node.ssh.connect_timeout
        transport.start_client(timeout=node.ssh.connect_timeout)
        key = transport.get_remote_server_key()
        pinned = read_known_hosts(known_hosts).lookup(known_hosts_name(node.address, node.ssh.port))
        if pinned is None or pinned.get(key.get_name()) != key:
            return None
        try:
            transport.auth_none(node.ssh.user)
            return True  # no authentication at all: worse than the default password
        except paramiko.BadAuthenticationType as e:
            if "password" not in e.allowed_types:
                return False
        except paramiko.AuthenticationException:
            pass
        try:
            transport.auth_password(node.ssh.user, password, fallback=False)
            return transport.is_authenticated()
        except paramiko.AuthenticationException:
            return False
    except (paramiko.SSHException, OSError, EOFError):
        return None
    finally:
        transport.close()


def default_password_report(inventory: Inventory) -> dict[str, bool | None]:
    """Node name -> whether it accepts the HypriotOS default password (None: could not tell)."""
    found = parallel([n.name for n in inventory.nodes],
                     lambda name: default_password_accepted(inventory.node(name), inventory.known_hosts), max_workers=16)
    for e in found.failed.values():
        raise e
    return found.succeeded


# -- piprov's known_hosts --------------------------------------------------------------------------


def _names_host(entry_name: str, names: set[str]) -> bool:
    """Whether a known_hosts host field is one of ``names``, also when hashed
    (``|1|salt|hmac``, as ssh writes them with HashKnownHosts yes)."""
    if entry_name.startswith("|1|"):
        try:
            return any(paramiko.HostKeys.hash_host(n, entry_name) == entry_name for n in names)
        except (binascii.Error, IndexError, ValueError):
            return False
    return entry_name in names


def forget_host_key(known_hosts: Path, node: Node) -> int:
    """Remove every known_hosts entry for the node's address; return how many lines went.

    Under the same flock as :func:`piprov.transport.pin_host_key`, and atomic:
    the new file is written beside the old one and renamed over it (pinning
    re-checks the inode after taking the lock, so it never appends to the
    replaced file).
    """
    names = {known_hosts_name(node.address, node.ssh.port)}
    if not known_hosts.exists():
        return 0
    with open(known_hosts, "a+", encoding="ascii") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            lines = f.read().splitlines(keepends=True)
            kept: list[str] = []
            removed = 0
            for line in lines:
                try:
                    entry = parse_line(line)
                except DamagedLine:
                    # A damaged line naming the node goes too (it is what stops
                    # connecting to it); other damaged lines are left as they are.
                    if any(_names_host(h, names) for h in line.split()[0].split(",")):
                        removed += 1
                        continue
                    entry = None
                if entry is not None and any(_names_host(h, names) for h in entry.hostnames):
                    left = [h for h in entry.hostnames if not _names_host(h, names)]
                    removed += 1
                    if left:
                        kept.append(",".join(left) + " " + line.split(None, 1)[1])
                    continue
                kept.append(line)
            if removed:
                st = os.fstat(f.fileno())
                atomic_write(known_hosts, "".join(kept).encode("ascii"), mode=st.st_mode & 0o777)
            return removed
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
