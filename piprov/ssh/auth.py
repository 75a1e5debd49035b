"""Logging in: which keys, in what order, and RSA signatures old servers accept.

Keys are tried as OpenSSH tries them: agent keys that are the configured
identity files first (an encrypted file held by the agent needs no
passphrase), then the identity files themselves (a passphrase asked once per
run, :mod:`piprov.ssh.secrets`), then the agent's other keys unless
IdentitiesOnly, then a password if one was given. Every way this fails is a
typed error naming its cause: missing key file, passphrase needed, login refused.

RSA and old servers: OpenSSH added rsa-sha2-256/512 signatures and the
``server-sig-algs`` extension together in 7.2 (release notes of OpenSSH 7.2,
"ssh(1), sshd(8): add support for RSA signatures using SHA-256/512 hash
algorithms" and "draft-ssh-ext-info"). Without that extension paramiko signs
with the first RSA algorithm in its list, rsa-sha2-512 (paramiko 5.1.0,
paramiko/auth_handler.py ``_finalize_pubkey_algorithm``), which OpenSSH < 7.2
(HypriotOS 1.x ships 6.7) rejects; paramiko 5.0 also removed SHA-1 signing
altogether (paramiko/rsakey.py ``RSAKey.HASHES`` has no ``ssh-rsa``; changelog
5.0.0). So :class:`NodeTransport` offers ``ssh-rsa`` first where the server sent
no server-sig-algs, last where it did (chosen only if the server lists nothing
newer), and :class:`LegacyRSAKey` can sign it (agent keys sign it themselves:
flag 0 in paramiko/agent.py ``ALGORITHM_FLAG_MAP``). OpenSSH's client does the
same: it signs ssh-rsa when the server sent no server-sig-algs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import hashes

from piprov.errors import AuthenticationError, KeyFileError, PassphraseError
from piprov.ssh.config import Resolved
from piprov.ssh.secrets import Session

log = logging.getLogger("piprov.transport")


class LegacyRSAKey(paramiko.RSAKey):
    """An RSA key that can also sign ``ssh-rsa`` (SHA-1), for servers that know nothing newer."""

    # Final in types-paramiko; a subclass widening it is what paramiko itself did before 5.0.
    HASHES = {**paramiko.RSAKey.HASHES, "ssh-rsa": hashes.SHA1}  # type: ignore[misc]


class NodeTransport(paramiko.Transport):
    """A client transport that falls back to ssh-rsa signatures only where the server offers nothing newer."""

    node_name = ""

    @property
    def preferred_pubkeys(self) -> Any:
        algos = [a for a in super().preferred_pubkeys if a != "ssh-rsa"]
        # Filled in from the server's EXT_INFO, which comes before the answer to
        # our userauth service request (RFC 8308 2.4): read when signing, it is known.
        if "server-sig-algs" not in getattr(self, "server_extensions", {}):
            log.debug("%s: the server sent no server-sig-algs (OpenSSH < 7.2): RSA keys sign with ssh-rsa (SHA-1)",
                      self.node_name)
            return ("ssh-rsa", *algos)
        return (*algos, "ssh-rsa")


def _load_key(path: str, password: str | None) -> paramiko.PKey:
    # bytes: PKey.from_path hands the password to cryptography's loaders, which take no str.
    key = paramiko.PKey.from_path(path, password.encode() if password is not None else None)  # type: ignore[arg-type]
    if isinstance(key, paramiko.RSAKey) and not isinstance(key, LegacyRSAKey):
        key = LegacyRSAKey(key=key.key)
    return key


@dataclass(frozen=True)
class Candidate:
    """A key to offer, and what to call it in messages."""

    what: str
    key: paramiko.PKey | None = None  # None: a file still to load
    path: str | None = None


def _public_blob(path: str) -> bytes | None:
    """The key blob of ``path + '.pub'``, to recognise the agent's copy of an identity file."""
    import base64
    import binascii

    try:
        fields = Path(path + ".pub").read_text().split()
        return base64.b64decode(fields[1]) if len(fields) >= 2 else None
    except (OSError, IndexError, ValueError, binascii.Error):
        return None


def check_identity_files(r: Resolved, host: str) -> None:
    """Before any packet: an identity file the inventory or ssh_config names must exist."""
    if not r.identities_explicit:
        return
    for f in r.identity_files:
        if not os.path.exists(f):
            raise KeyFileError(f"identity file {f} does not exist", host=host,
                               hint="fix ssh.identity_file in the inventory (or IdentityFile in your ssh config); "
                               "`ssh-keygen -t ed25519 -f FILE` makes a key, `piprov keys` installs it")
        if not os.access(f, os.R_OK):
            raise KeyFileError(f"identity file {f} is not readable by this user", host=host,
                               hint=f"chmod 600 {f} and check its owner")


class KeyChain:
    """The keys of one run: identity files loaded (and unlocked) once, shared by every connection."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._loaded: dict[str, paramiko.PKey | None] = {}

    def load(self, path: str, host: str, *, required: bool) -> paramiko.PKey | None:
        """The key in ``path``; None for a default file that is missing or cannot be used."""
        with self.session.lock_for(path):
            if path not in self._loaded:
                self._loaded[path] = self._read(path, host, required=required)
            return self._loaded[path]

    def _read(self, path: str, host: str, *, required: bool) -> paramiko.PKey | None:
        try:
            return _load_key(path, None)
        except FileNotFoundError:
            if required:
                raise KeyFileError(f"identity file {path} does not exist", host=host) from None
            return None
        except TypeError:
            pass  # cryptography: "Password was not given but private key is encrypted"
        except (OSError, ValueError, paramiko.SSHException) as e:
            if not required:
                return None
            raise KeyFileError(f"{path} is not a private key piprov can use: {e}", host=host,
                               hint="give an OpenSSH or PEM private key (ed25519, ecdsa or rsa)") from None
        secret = self.session.passphrase(path).get()
        if secret is None:
            if not required:
                return None
            raise PassphraseError(
                f"identity file {path} is protected by a passphrase, and there is no terminal to ask for it",
                host=host, hint=f"add it to your ssh-agent (ssh-add {path}), or run piprov on a terminal")
        try:
            return _load_key(path, secret.reveal())
        except (TypeError, ValueError, paramiko.SSHException):
            raise PassphraseError(f"wrong passphrase for {path}", host=host,
                                  hint="run again and type it carefully, or add the key to ssh-agent") from None


def _agent_keys() -> tuple[paramiko.Agent | None, list[paramiko.AgentKey]]:
    if not os.environ.get("SSH_AUTH_SOCK"):
        return None, []
    try:
        agent = paramiko.Agent()
        return agent, list(agent.get_keys())
    except (paramiko.SSHException, OSError):
        return None, []


def authenticate(t: paramiko.Transport, r: Resolved, keys: KeyChain | None, *, password: str | None,
                 host: str) -> None:
    """Log in on the started transport ``t`` (with no ``keys``: the password alone);
    AuthenticationError (or a subclass) naming why not."""
    agent, agent_keys = _agent_keys() if keys is not None else (None, [])
    files = r.identity_files if keys is not None else ()
    tried: list[str] = []
    try:
        blobs = {b: f for f in files if (b := _public_blob(f)) is not None}
        order: list[Candidate] = [Candidate(f"{blobs[k.asbytes()]} (in ssh-agent)", k)
                                  for k in agent_keys if k.asbytes() in blobs]
        order += [Candidate(f, path=f) for f in files]
        if not r.identities_only:
            order += [Candidate(f"ssh-agent key {k.get_name()} {k.comment or ''}".strip(), k)
                      for k in agent_keys if k.asbytes() not in blobs]
        offered: set[bytes] = set()
        for c in order:
            if c.key is not None:
                key: paramiko.PKey | None = c.key
            else:
                assert keys is not None
                key = keys.load(c.path or "", host, required=r.identities_explicit)
            if key is None or key.asbytes() in offered:
                continue
            offered.add(key.asbytes())
            tried.append(c.what)
            if _try_key(t, r.user, key):
                return
        if password:
            tried.append("password")
            try:
                t.auth_password(r.user, password, fallback=False)
                if t.is_authenticated():
                    return
            except paramiko.AuthenticationException:
                pass
    finally:
        if agent is not None:
            agent.close()
    raise _refused(r, tried, host)


def _try_key(t: paramiko.Transport, user: str, key: paramiko.PKey) -> bool:
    try:
        t.auth_publickey(user, key)
    except paramiko.BadAuthenticationType:
        return False
    except paramiko.AuthenticationException as e:
        if "saw EOF" in str(e):
            raise  # the server hung up: not this key's fault (the transport retries once)
        return False
    return bool(t.is_authenticated())


def _refused(r: Resolved, tried: list[str], host: str) -> AuthenticationError:
    where = f"{r.address}:{r.port}"
    if not tried:
        return AuthenticationError(
            f"no SSH key to log in to {where} as {r.user!r}: no identity file, no ssh-agent key, no password",
            host=host, hint="set ssh.identity_file in the inventory (or IdentityFile in ~/.ssh/config), "
            "or add your key to ssh-agent (ssh-add)")
    return AuthenticationError(
        f"SSH authentication as {r.user!r} refused by {where} (tried {', '.join(tried)})",
        host=host, hint="check the user and the key (ssh.user, ssh.identity_file), "
        "or run `piprov keys` to install your key on the node")
