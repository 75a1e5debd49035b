"""A self-signed serving certificate, stdlib only: what the kubelet makes when it has no --tls-cert-file.

Part of the hyperkube STAND-IN, not Kubernetes. The real kubelets (1.1
cmd/kubelet/app/server.go InitializeTLS, 1.18 pkg/kubelet/apis/config
... ``--cert-dir``) write ``<cert-dir>/kubelet.crt`` and ``kubelet.key``, a
certificate for the node's host name signed by its own key, when
``--tls-cert-file``/``--tls-private-key-file`` are not given, and serve 10250 with
it. The stand-in has no crypto library (stdlib only), so this module writes the
same thing by hand: an RSA-2048 key (Miller-Rabin primes), a v3 certificate
(CN and a SAN for the host name, IP SANs for addresses), sha256WithRSAEncryption,
DER built here, PEM out. Nobody verifies it (the apiserver dials kubelets
without --kubelet-certificate-authority, i.e. InsecureSkipVerify); it exists so
that 10250 speaks TLS and can ask for client certificates.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import secrets

_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p ** 0.5) + 1, 2))]


def _probable_prime(n: int, rounds: int = 40) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        n = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _probable_prime(n):
            return n


# -- DER ------------------------------------------------------------------------

def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _int(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=False))


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    out = bytes([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, out)


def _time(t: dt.datetime) -> bytes:
    return _tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())  # UTCTime (until 2050)


def _name(cn: str) -> bytes:
    return _seq(_tlv(0x31, _seq(_oid("2.5.4.3"), _tlv(0x0C, cn.encode()))))


SHA256_RSA = _seq(_oid("1.2.840.113549.1.1.11"), b"\x05\x00")


def _pem(kind: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN " + kind.encode() + b"-----\n" + b"\n".join(lines) + b"\n-----END " + kind.encode() + b"-----\n"


def self_signed(host: str, addresses: list[str], days: int = 365) -> tuple[bytes, bytes]:
    """(certificate PEM, RSA private key PEM) for `host`, self-signed, valid from an hour ago."""
    e = 65537
    while True:
        p, q = _prime(1024), _prime(1024)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    n, d = p * q, pow(e, -1, (p - 1) * (q - 1))
    key = _seq(_int(0), _int(n), _int(e), _int(d), _int(p), _int(q), _int(d % (p - 1)), _int(d % (q - 1)),
               _int(pow(q, -1, p)))
    spki = _seq(_seq(_oid("1.2.840.113549.1.1.1"), b"\x05\x00"), _tlv(0x03, b"\x00" + _seq(_int(n), _int(e))))
    sans = [_tlv(0x82, host.encode())] if not _is_ip(host) else []
    sans += [_tlv(0x87, ipaddress.ip_address(a).packed) for a in addresses if _is_ip(a)]
    exts = [_seq(_oid("2.5.29.17"), _tlv(0x04, _seq(*sans)))] if sans else []
    exts.append(_seq(_oid("2.5.29.37"), _tlv(0x04, _seq(_oid("1.3.6.1.5.5.7.3.1")))))  # serverAuth
    now = dt.datetime.now(dt.timezone.utc)
    tbs = _seq(_tlv(0xA0, _int(2)), _int(int.from_bytes(os.urandom(8), "big")), SHA256_RSA, _name(host),
               _seq(_time(now - dt.timedelta(hours=1)), _time(now + dt.timedelta(days=days))), _name(host), spki,
               _tlv(0xA3, _seq(*exts)))
    digest_info = _seq(_seq(_oid("2.16.840.1.101.3.4.2.1"), b"\x05\x00"), _tlv(0x04, hashlib.sha256(tbs).digest()))
    k = (n.bit_length() + 7) // 8
    em = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    sig = pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")
    cert = _seq(tbs, SHA256_RSA, _tlv(0x03, b"\x00" + sig))
    return _pem("CERTIFICATE", cert), _pem("RSA PRIVATE KEY", key)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def ensure(cert_dir: str, host: str, addresses: list[str]) -> tuple[str, str]:
    """<cert_dir>/kubelet.crt and kubelet.key, made once (a restarted kubelet reuses them, as the real one)."""
    crt, key = os.path.join(cert_dir, "kubelet.crt"), os.path.join(cert_dir, "kubelet.key")
    if not (os.path.exists(crt) and os.path.exists(key)):
        os.makedirs(cert_dir, exist_ok=True)
        cert_pem, key_pem = self_signed(host, addresses)
        fd = os.open(key + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        os.replace(key + ".tmp", key)
        with open(crt + ".tmp", "wb") as f:
            f.write(cert_pem)
        os.replace(crt + ".tmp", crt)
    return crt, key
