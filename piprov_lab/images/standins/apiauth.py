"""The apiserver stand-in's secure port: TLS serving and who a request is (authentication).

Part of the kube-apiserver STAND-IN (apiserver.py), not Kubernetes. What the
releases do, and the stand-in with them:

* ``--secure-port`` (6443; 0: no HTTPS at all) on ``--bind-address`` (0.0.0.0),
  serving ``--tls-cert-file``/``--tls-private-key-file``. Without them the real
  server generates a self-signed pair in ``--cert-dir``; the stand-in cannot
  make certificates (stdlib only) and then serves no secure port, saying so.
* authenticators, in the order of the release's union (1.1
  pkg/apiserver/authenticator/authn.go NewAuthenticator; 1.18
  pkg/kubeapiserver/authenticator/config.go): the x509 one (a client
  certificate signed by a CA of ``--client-ca-file``; the user is its CN), the
  token file (``--token-auth-file``, CSV ``token,user,uid[,"group,..."]``,
  ``Authorization: Bearer TOKEN``).
* a request no authenticator accepts is 401. 1.1 has no anonymous user
  (and no filter at all when no authenticator is configured) and answers
  ``http.Error(w, "Unauthorized", 401)`` (pkg/auth/handlers/handlers.go
  Unauthorized): text. 1.18 treats it as ``system:anonymous`` when
  ``--anonymous-auth`` (default true) is on, except under the AlwaysAllow
  authorizer, where it resets anonymous to false with a warning
  (pkg/kubeapiserver/options/authentication.go ApplyAuthorization); its 401
  is a Status object, reason Unauthorized.

Differences from the Go servers: they request a client certificate without
verifying it in the handshake (tls.RequestClientCert) and the x509
authenticator rejects a bad one with 401; Python's ssl verifies what it
requests, so a certificate from another CA fails the handshake instead. No
authorization beyond AlwaysAllow (an authenticated user may do anything, as
under AlwaysAllow), no basic auth, no OIDC, no service-account tokens.
"""

from __future__ import annotations

import csv
import logging
import socket
import ssl
from http.server import ThreadingHTTPServer
from typing import Any

from .release import Release

log = logging.getLogger("standin")
ANONYMOUS = "system:anonymous"


class Authenticator:
    def __init__(self, opts: dict[str, Any], rel: Release) -> None:
        self.rel = rel
        self.x509 = bool(opts.get("client-ca-file"))
        self.tokens = read_token_file(opts["token-auth-file"]) if opts.get("token-auth-file") else {}
        if rel.modern:
            anonymous = bool(opts.get("anonymous-auth", True))
            if anonymous and "AlwaysAllow" in str(opts.get("authorization-mode") or "AlwaysAllow").split(","):
                log.warning("AnonymousAuth is not allowed with the AlwaysAllow authorizer. Resetting AnonymousAuth "
                            "to false. You should use a different authorizer")
                anonymous = False
        else:
            # 1.1 installs the authentication filter only when some authenticator is configured.
            anonymous = not (self.x509 or self.tokens or opts.get("basic-auth-file"))
        self.anonymous = anonymous

    def user(self, peercert: dict[str, Any] | None, headers: Any) -> str | None:
        """The authenticated user name, system:anonymous where allowed, else None (401)."""
        if self.x509 and peercert:
            for rdn in peercert.get("subject") or ():
                for key, value in rdn:
                    if key == "commonName":
                        return str(value)
        auth = str(headers.get("Authorization") or "")
        if self.tokens and auth.lower().startswith("bearer "):
            name = self.tokens.get(auth[7:].strip())
            if name:
                return name
        return ANONYMOUS if self.anonymous else None

    def unauthorized(self) -> tuple[int, Any, str]:
        if self.rel.modern:
            return 401, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                         "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, "application/json"
        return 401, b"Unauthorized\n", "text/plain; charset=utf-8"


def read_token_file(path: str) -> dict[str, str]:
    """token -> user of a --token-auth-file (pkg/auth/authenticator/token/tokenfile: CSV, >= 3 columns)."""
    out: dict[str, str] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 3 and row[0].strip():
                out[row[0].strip()] = row[1].strip()
            elif row:
                raise SystemExit(f"apiserver: token file {path}: a line has {len(row)} columns, want at least 3")
    return out


def server_context(opts: dict[str, Any]) -> ssl.SSLContext | None:
    """The serving context, or None when the stand-in serves no secure port."""
    if not opts.get("secure-port"):
        return None
    cert, key = opts.get("tls-cert-file") or "", opts.get("tls-private-key-file") or ""
    if not cert or not key:
        log.warning("no --tls-cert-file/--tls-private-key-file: the real apiserver would self-sign into "
                    "--cert-dir; this stand-in cannot make certificates and serves no secure port")
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if opts.get("client-ca-file"):
        ctx.load_verify_locations(cafile=opts["client-ca-file"])
        ctx.verify_mode = ssl.CERT_OPTIONAL  # asked for, not required: no certificate is a 401, not a TLS error
    return ctx


class TLSServer(ThreadingHTTPServer):
    """HTTPS: the handshake runs in the request's thread (a slow or failing client holds
    no one else up); a failed handshake is logged in one line, as Go's http.Server does."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, OSError)):
            log.info("http: TLS handshake error from %s:%d: %s", client_address[0], client_address[1], exc)
            return
        super().handle_error(request, client_address)


def handshake(conn: Any, timeout: float = 10.0) -> None:
    """Finish the TLS handshake of an accepted connection (no-op on plain sockets)."""
    if isinstance(conn, ssl.SSLSocket):
        conn.settimeout(timeout)
        conn.do_handshake()
        conn.settimeout(None)


def peer_gone(conn: Any) -> bool:
    """Whether the client of a readable connection has closed it (a streamed watch stops then)."""
    try:
        if isinstance(conn, ssl.SSLSocket):
            conn.setblocking(False)
            try:
                return conn.recv(1) == b""
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            finally:
                conn.setblocking(True)
        return bool(conn.recv(1, socket.MSG_PEEK) == b"")
    except OSError:
        return True
