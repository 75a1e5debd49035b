"""The cluster CA on the controller, next to the inventory, and the leaves it issued.

Layout of ``<inventory file>.pki/`` (mode 0700): ``ca.crt``, ``ca.key``
(0600; encrypted when ``$PIPROV_CA_PASSPHRASE`` was set when it was made),
``admin.crt``/``admin.key`` (the controller's own client certificate) and
``<node>/<name>.crt|.key`` per node. Leaves are kept: a leaf is re-issued only
when it will not do any more (:func:`piprov.pki.x509.reissue_reason`), so
that a re-run renders the same bytes and plans no change.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from piprov.errors import PiprovError
from piprov.inventory.model import Inventory
from piprov.localfs import atomic_write
from piprov.lock import FileLock
from piprov.pki import x509 as px

PASSPHRASE_ENV = "PIPROV_CA_PASSPHRASE"
Clock = Callable[[], dt.datetime]


class PkiError(PiprovError):
    """The cluster CA or a certificate on the controller cannot be read, made or used."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def pki_dir(inventory: Inventory) -> Path:
    """``cluster.pki_dir`` of the inventory, else ``<inventory file>.pki`` next to it."""
    return inventory.pki_directory


def passphrase_from_env() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def _private_dir(d: Path) -> None:
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask
    except OSError as e:
        raise PkiError(f"cannot create {d}: {e.strerror or e}") from None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PkiError(f"cannot read {path}: {e.strerror or e}") from None


def _write_pair(crt: Path, key: Path, pair: px.KeyPair) -> None:
    # The key first: a run cut in between leaves a certificate that does not
    # match its key, which the next run re-issues.
    atomic_write(key, pair.key_pem, mode=0o600)
    atomic_write(crt, pair.cert_pem, mode=0o644)


def ensure_ca(directory: Path, common_name: str, now: dt.datetime, passphrase: bytes | None) -> None:
    """Make the CA once, under the PKI's lock; an existing one is left alone."""
    _private_dir(directory)
    with FileLock(directory / ".lock", what="issuing certificates", wait=30):
        crt, key = directory / "ca.crt", directory / "ca.key"
        if crt.exists():
            return
        if key.exists():
            raise PkiError(f"{key} exists but {crt} does not",
                           hint="restore ca.crt from a backup; if no certificate was ever issued from this "
                                "key, delete ca.key and a new CA is made")
        _write_pair(crt, key, px.make_ca(common_name, now, passphrase))


@dataclass(frozen=True)
class CertInfo:
    """One certificate of the cluster, for `piprov certs` and the expiry warning of `status`."""

    name: str
    node: str | None  # None: the CA's and the controller's own
    path: Path
    not_after: dt.datetime
    subject: str

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days


def _info(name: str, node: str | None, path: Path) -> CertInfo | None:
    data = _read(path)
    if data is None:
        return None
    try:
        s = px.summary(data)
    except ValueError:
        raise PkiError(f"{path} is not a PEM certificate") from None
    return CertInfo(name, node, path, s.not_after, s.subject)


def read_certificates(directory: Path) -> list[CertInfo]:
    """Every certificate under ``directory``: the CA, the controller's, then each node's (by name)."""
    out = [i for n in ("ca", "admin") if (i := _info(n, None, directory / f"{n}.crt")) is not None]
    if not directory.is_dir():
        return out
    for d in sorted(p for p in directory.iterdir() if p.is_dir()):
        for crt in sorted(d.glob("*.crt")):
            info = _info(crt.stem, d.name, crt)
            if info is not None:
                out.append(info)
    return out


@dataclass(frozen=True)
class Renewed:
    """One leaf re-issued by a rotation: who holds it, and its serial before (None: none) and after."""

    node: str | None  # None: the controller's own (admin)
    name: str
    old_serial: int | None
    new_serial: int


class LeafStore:
    """Leaves under the PKI directory: reused while they do, issued when not (one issuer at a time)."""

    def __init__(self, directory: Path, clock: Clock, passphrase: bytes | None) -> None:
        self.directory = directory
        self.clock = clock
        self._passphrase = passphrase
        self._mutex = threading.Lock()
        self._ca_key: ec.EllipticCurvePrivateKey | None = None
        ca = _read(directory / "ca.crt")
        if ca is None:
            raise PkiError(f"no CA certificate at {directory / 'ca.crt'}")
        self.ca_cert_pem = ca

    def paths(self, owner: str | None, name: str) -> tuple[Path, Path]:
        if owner is not None and (not owner or "/" in owner or owner.startswith(".")):
            raise PkiError(f"node name {owner!r} cannot name a directory of {self.directory}")
        d = self.directory if owner is None else self.directory / owner
        return d / f"{name}.crt", d / f"{name}.key"

    def _on_disk(self, crt: Path, key: Path) -> px.KeyPair | None:
        c, k = _read(crt), _read(key)
        return None if c is None or k is None else px.KeyPair(c, k)

    def get(self, owner: str | None, spec: px.LeafSpec) -> px.KeyPair:
        """The leaf ``spec`` asks for: the one on disk if it will do, else a new one (written first)."""
        crt, key = self.paths(owner, spec.name)
        # Judged without the mutex: every node's leaves are read and checked at once
        # (the plan of 250 nodes queued ~1,000 checks on it). A pair read while it is
        # rewritten (key, then certificate, each renamed whole) reads as not matching,
        # and the judgment is made again under the locks below, as before.
        pair = self._on_disk(crt, key)
        if px.reissue_reason(pair, spec, self.ca_cert_pem, self.clock()) is None:
            assert pair is not None
            return pair
        with self._mutex:
            pair = self._on_disk(crt, key)
            if px.reissue_reason(pair, spec, self.ca_cert_pem, self.clock()) is None:
                assert pair is not None
                return pair
            with FileLock(self.directory / ".lock", what="issuing certificates", wait=30):
                # Another run may have issued it while we waited.
                pair = self._on_disk(crt, key)
                now = self.clock()
                if px.reissue_reason(pair, spec, self.ca_cert_pem, now) is None:
                    assert pair is not None
                    return pair
                new = px.issue(spec, self.ca_cert_pem, self._key(), now)
                _private_dir(crt.parent)
                _write_pair(crt, key, new)
                return new

    def renew(self, leaves: Sequence[tuple[str | None, px.LeafSpec]]) -> list[Renewed]:
        """Re-issue every one of ``leaves`` (owner, spec) from the current CA, good or not.

        Under the PKI's lock for the whole batch, so that no `plan` or `up`
        issues in between; each pair written as :meth:`get` writes it (key,
        then certificate, each atomically). The CA key is opened before the
        first write: a wrong passphrase changes nothing.
        """
        with self._mutex, FileLock(self.directory / ".lock", what="re-issuing certificates", wait=30):
            ca_key = self._key()
            out: list[Renewed] = []
            for owner, spec in leaves:
                crt, key = self.paths(owner, spec.name)
                old = _read(crt)
                new = px.issue(spec, self.ca_cert_pem, ca_key, self.clock())
                _private_dir(crt.parent)
                _write_pair(crt, key, new)
                new_serial = px.serial(new.cert_pem)
                assert new_serial is not None
                out.append(Renewed(owner, spec.name, None if old is None else px.serial(old), new_serial))
            return out

    def _key(self) -> ec.EllipticCurvePrivateKey:
        if self._ca_key is not None:
            return self._ca_key
        path = self.directory / "ca.key"
        pem = _read(path)
        if pem is None:
            raise PkiError(f"cannot issue a certificate: {path} is missing",
                           hint="restore the CA key from a backup")
        encrypted = px.is_encrypted(pem)
        if encrypted and not self._passphrase:
            raise PkiError(f"{path} is encrypted: set ${PASSPHRASE_ENV} to issue certificates")
        try:
            self._ca_key = px.load_ca_key(pem, self._passphrase if encrypted else None)
        except (ValueError, TypeError):
            # Never the passphrase itself, nor the library's words (they may quote input).
            what = f"the passphrase in ${PASSPHRASE_ENV} does not open it" if encrypted else "not a usable EC key"
            raise PkiError(f"cannot read the CA key {path}: {what}") from None
        return self._ca_key
