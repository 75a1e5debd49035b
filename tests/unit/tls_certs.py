"""Throwaway certificates for the TLS tests: a CA that issues server and client leaves
(ECDSA P-256, as the cluster PKI issues), and a client certificate from a CA the
servers do not trust."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CertSet:
    ca: Path
    server: Pair
    client: Pair
    stranger: Pair  # a client certificate signed by another CA


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)))


@dataclass
class CA:
    """A CA in ``dir`` (its ``ca.crt`` there); :meth:`issue` writes NAME.crt and NAME.key (0600) beside it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    dir: Path

    @classmethod
    def make(cls, where: Path, cn: str) -> "CA":
        where.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (_builder(_name(cn), _name(cn), key)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False, decipher_only=False),
                               critical=True)
                .sign(key, hashes.SHA256()))
        (where / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, where)

    @property
    def file(self) -> str:
        return str(self.dir / "ca.crt")

    def issue(self, name: str, cn: str, org: str | None = None, server: bool = False,
              ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[str, str]:
        """A leaf: a server one (serverAuth, SANs ``ips`` and localhost) or a client one (clientAuth)."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = (_builder(_name(cn, org), self.cert.subject, key)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if server:
            names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            b = b.add_extension(x509.SubjectAlternativeName([*names, x509.DNSName("localhost")]), critical=False)
        crt, pem = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        pem.chmod(0o600)
        return str(crt), str(pem)


def _pair(files: tuple[str, str]) -> Pair:
    return Pair(Path(files[0]), Path(files[1]))


def make_pki(dir: Path, server_ips: list[str]) -> CertSet:
    ca, other = CA.make(dir, "test-ca"), CA.make(dir / "other", "not-the-cluster-ca")
    return CertSet(Path(ca.file), _pair(ca.issue("etcd-server", "etcd", server=True, ips=tuple(server_ips))),
                   _pair(ca.issue("client", "flannel:n1")), _pair(other.issue("stranger", "flannel:n1")))
