"""piprov's known_hosts: read it line by line, pin new keys under a lock.

paramiko's own reader (``HostKeys.load``) stops at the first damaged line with
``InvalidHostKey``, a plain ``Exception`` subclass that names no file or line
(paramiko 5.1.0, paramiko/hostkeys.py ``HostKeyEntry.from_line`` raises it for
bad base64; other damage comes out as SSHException, ValueError, IndexError or
struct.error from the key parsers). Here every line is parsed on its own and a
damaged one is a :class:`~piprov.errors.HostKeyError` naming the file, the line
and how to fix it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from piprov.errors import HostKeyError, Location


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    """The name a host is filed under in known_hosts (OpenSSH's convention)."""
    return address if port == 22 else f"[{address}]:{port}"


class DamagedLine(Exception):
    """A known_hosts line that is not ``names keytype base64``; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_line(line: str) -> paramiko.hostkeys.HostKeyEntry | None:
    """The entry on ``line``; None for blank lines, comments, markers and key types paramiko does not know.

    Raises DamagedLine for a line that is neither.
    """
    text = line.strip()
    if not text or text.startswith("#") or text.startswith("@"):
        return None  # @cert-authority / @revoked: OpenSSH's, not pins piprov writes
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(text)
    except Exception as e:  # noqa: BLE001 - paramiko's InvalidHostKey is a bare Exception; see the module doc
        raise DamagedLine(f"the key is not valid base64 or not a valid {text.split()[1:2] or 'key'}: "
                          f"{type(e).__name__}") from None
    if entry is None and len(text.split()) < 3:
        raise DamagedLine("a line needs three fields: host names, key type, key")
    return entry


def damaged_error(path: Path, lineno: int, reason: str, first_field: str = "") -> HostKeyError:
    host = first_field.split(",")[0] if first_field and not first_field.startswith("|") else ""
    fix = f"delete or repair line {lineno} (sed -i '{lineno}d' {path})"
    if host:
        fix += f", or `piprov node forget-key NODE` for the node at {host}; then pin its key again"
    return HostKeyError(f"damaged line in {path}: {reason}", location=Location(str(path), lineno), hint=fix)


def read_known_hosts(path: Path) -> paramiko.HostKeys:
    """Every pinned key in ``path`` (none if it does not exist); a damaged line raises HostKeyError."""
    keys = paramiko.HostKeys()
    text = _text(path)
    if text is not None:
        _add_lines(keys, text, path)
    return keys


def _text(path: Path) -> str | None:
    """known_hosts' text, None when there is none yet."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise HostKeyError(f"cannot read {path}: {e.strerror or e}") from None


@dataclass
class _Parsed:
    """known_hosts as parsed from one text of the file, and the lookups made in it."""

    text: str
    keys: paramiko.HostKeys
    found: dict[str, dict[str, paramiko.PKey] | None] = field(default_factory=dict)


_PARSED: dict[Path, _Parsed] = {}
_PARSED_LOCK = threading.Lock()


def pinned_keys(known_hosts: Path, hostname: str) -> dict[str, paramiko.PKey] | None:
    """The keys pinned for ``hostname`` (key type -> key), None if none: what the file says now.

    Every connection asks this twice (the key type to ask for, then the check).
    The file is read every time, but parsed only when its text differs from the
    last one parsed: at 250 nodes, parsing it per lookup was 500 parses of a
    250-line file (a key object per line), most of the controller's CPU before
    any node answered. Comparing the text, not the file's times, keeps this
    exactly as strict as reading it anew: an edit within the clock's tick counts.
    """
    path = Path(known_hosts)
    text = _text(path)
    if text is None:
        return None
    with _PARSED_LOCK:
        parsed = _PARSED.get(path)
        if parsed is None or parsed.text != text:
            keys = paramiko.HostKeys()
            _add_lines(keys, text, path)
            parsed = _PARSED[path] = _Parsed(text, keys)
        if hostname not in parsed.found:
            got = parsed.keys.lookup(hostname)
            parsed.found[hostname] = {t: got[t] for t in got.keys()} if got else None
        return parsed.found[hostname]


def _add_lines(keys: paramiko.HostKeys, text: str, path: Path) -> None:
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            entry = parse_line(line)
        except DamagedLine as e:
            raise damaged_error(path, lineno, e.reason, line.split()[0] if line.split() else "") from None
        if entry is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)


_PIN_LOCK = threading.Lock()


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
    with open(known_hosts, "a+", encoding="ascii", errors="replace") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            try:
                if os.stat(known_hosts).st_ino != os.fstat(f.fileno()).st_ino:
                    return False
            except FileNotFoundError:
                return False
            f.seek(0)
            current = paramiko.HostKeys()
            _add_lines(current, f.read(), known_hosts)
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


def check_host_key(known_hosts: Path, hostname: str, key: paramiko.PKey, *, host: str, tofu: bool) -> None:
    """Accept ``key`` for ``hostname`` only if pinned (or pin it, with ``tofu``); a changed key always stops.

    A host pinned under another key type counts as changed, as paramiko's
    SSHClient has it (paramiko 5.1.0, paramiko/client.py ``connect``).
    ``host`` names the node (or jump host) in messages.
    """
    pinned = pinned_keys(known_hosts, hostname)
    if pinned:
        expected = pinned.get(key.get_name()) or next(iter(pinned.values()))
        if expected != key:
            raise HostKeyError(
                f"HOST KEY CHANGED for {hostname}: expected {fingerprint(expected)}, got {fingerprint(key)}; "
                "nothing was done on this node",
                host=host,
                hint=f"if the SD card was re-flashed, run `piprov node forget-key {host}` and try again; "
                "otherwise someone may be impersonating the node",
            )
        return
    if tofu:
        pin_host_key(known_hosts, hostname, key)
        return
    raise HostKeyError(
        f"host key of {hostname} is not in {known_hosts} ({key.get_name()} {fingerprint(key)})",
        host=host,
        hint="check the fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), "
        "then run again with --trust-new-hosts to pin it, or set host_key_policy: tofu",
    )


def prefer_pinned_type(transport: paramiko.Transport, known_hosts: Path, hostname: str) -> None:
    """Ask the server for the host key type pinned for it first, as paramiko's SSHClient does
    (paramiko 5.1.0, paramiko/client.py ``connect``): a server with several host keys then
    shows the one piprov knows."""
    pinned = pinned_keys(known_hosts, hostname)
    if not pinned:
        return
    opts = transport.get_security_options()
    keytype = next(iter(pinned))
    if keytype == "ssh-rsa":
        keytype = next((t for t in ("rsa-sha2-512", "rsa-sha2-256") if t in opts.key_types), keytype)
    if keytype in opts.key_types:
        opts.key_types = [keytype, *(t for t in opts.key_types if t != keytype)]
