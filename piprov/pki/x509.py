"""Keys and certificates with PyCA cryptography: make the CA, issue a leaf, judge a leaf on disk.

Pure apart from the random numbers: bytes in, bytes out, the time passed in
(``now``), so that tests can move the clock. Nothing here reads or writes a file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# ECDSA P-256: Go's crypto/tls has served and verified it since Go 1.2, older
# than every etcd, flannel and hyperkube in playbooks/versions.yaml, and
# Python's ssl (OpenSSL) does too. Smaller and much faster to make than RSA.
CURVE = ec.SECP256R1()
# Pis have no RTC: until NTP answers they boot with the time of their last
# shutdown (fake-hwclock) or 1970. A day of slack keeps a fresh certificate
# valid on a Pi whose clock is a little behind.
BACKDATE = dt.timedelta(hours=24)
CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=365)
# A leaf with less than this left is re-issued (and `status` warns).
RENEW_BEFORE = dt.timedelta(days=30)

Kind = Literal["server", "client"]


@dataclass(frozen=True)
class LeafSpec:
    """What a leaf certificate must say: its subject, its names, what it is for."""

    name: str  # file stem: <name>.crt, <name>.key
    kind: Kind
    cn: str
    o: str | None = None
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    @property
    def subject(self) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.o)] if self.o else []
        return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, self.cn)])

    def san_set(self) -> frozenset[str]:
        return frozenset([*(f"DNS:{d}" for d in self.dns), *(f"IP:{ipaddress.ip_address(i)}" for i in self.ips)])


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVE)


def key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def make_ca(common_name: str, now: dt.datetime, passphrase: bytes | None = None) -> KeyPair:
    """A self-signed CA that may sign leaves only (path length 0)."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "piprov"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE).not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem(key, passphrase))


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _usages(kind: Kind) -> list[x509.ObjectIdentifier]:
    # A server certificate may also act as a client: etcd 3.2+ dials its own
    # client port with its serving certificate (the gRPC gateway), and with
    # --client-cert-auth that handshake needs clientAuth too. kubeadm issues its
    # etcd server certificate with both usages for this reason
    # (kubernetes/kubernetes cmd/kubeadm/app/phases/certs/certlist.go,
    # KubeadmCertEtcdServer: "etcd 3.2 introduced an undocumented requirement for
    # ClientAuth usage on the server cert", citing coreos/etcd issue 9785).
    if kind == "server":
        return [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return [ExtendedKeyUsageOID.CLIENT_AUTH]


def issue(spec: LeafSpec, ca_cert_pem: bytes, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> KeyPair:
    """A new key and a certificate for it, signed by the CA."""
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    key = new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        # Never past the CA's own end: a verifier would refuse the chain then.
        .not_valid_after(min(now + LEAF_LIFETIME, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_usages(spec.kind)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False)  # type: ignore[arg-type]
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def _sans(cert: x509.Certificate) -> frozenset[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset([*(f"DNS:{d}" for d in ext.get_values_for_type(x509.DNSName)),
                      *(f"IP:{i}" for i in ext.get_values_for_type(x509.IPAddress))])


def _usages_of(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def reissue_reason(pair: KeyPair | None, spec: LeafSpec, ca_cert_pem: bytes, now: dt.datetime) -> str | None:
    """Why the leaf on disk will not do (None: keep it, byte for byte)."""
    if pair is None:
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        key = serialization.load_pem_private_key(pair.key_pem, None)
    except (ValueError, TypeError):
        return "unreadable"
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        return "its key does not match"
    if cert.subject != spec.subject:
        return f"subject {cert.subject.rfc4514_string()} -> {spec.subject.rfc4514_string()}"
    if _sans(cert) != spec.san_set():
        return "its names (SANs) differ"
    if _usages_of(cert) != _usages(spec.kind):
        return "its key usages differ"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def load_ca_key(pem: bytes, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    """The CA key; raises ValueError (wrong or missing passphrase) or TypeError, worded by the caller."""
    key = serialization.load_pem_private_key(pem, passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an ECDSA key")
    return key


def is_encrypted(pem: bytes) -> bool:
    return b"ENCRYPTED" in pem.split(b"\n", 1)[0]


@dataclass(frozen=True)
class CertSummary:
    subject: str
    not_after: dt.datetime
    sans: tuple[str, ...]


def serial(cert_pem: bytes) -> int | None:
    """The certificate's serial number (None: not a readable PEM certificate)."""
    try:
        return x509.load_pem_x509_certificate(cert_pem).serial_number
    except ValueError:
        return None


def summary(cert_pem: bytes) -> CertSummary:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return CertSummary(cert.subject.rfc4514_string(), cert.not_valid_after_utc, tuple(sorted(_sans(cert))))
