"""kube-apiserver STAND-IN (``/hyperkube apiserver`` on 1.1, ``/hyperkube kube-apiserver`` on 1.18).

Not Kubernetes: no Kubernetes server binary can be obtained here, so the lab
runs this program in its place. It serves the Kubernetes REST API of the
release in ``KUBE_VERSION`` (release.py) as kubectl 1.20, piprov and the
stand-in kubelets use it, over the insecure port (no TLS, no authentication or
authorization, as the 2016 insecure port; 1.18 still had ``--insecure-port``,
deprecated) and over the secure port (HTTPS, client certificates checked
against ``--client-ca-file``, 401 without credentials: apiauth.py).

The parts, one module per concern:
* flags: flagsets.py (the release's kube-apiserver flags; unknown -> exit 1).
  Used: ``--etcd-servers``, ``--etcd-prefix``, ``--insecure-bind-address``
  (default 127.0.0.1), ``--insecure-port`` (8080), 1.1's deprecated aliases
  ``--address``/``--port``; ``--bind-address``, ``--secure-port``,
  ``--tls-cert-file``, ``--tls-private-key-file``, ``--client-ca-file``,
  ``--token-auth-file``, (1.18) ``--anonymous-auth``, ``--authorization-mode``
  (apiauth.py); (1.18) ``--etcd-cafile``/``--etcd-certfile``/``--etcd-keyfile``:
  etcd over TLS with that client certificate (1.1 has no such flags);
  ``--kubelet-https``, ``--kubelet-client-certificate``/``--kubelet-client-key``,
  ``--kubelet-certificate-authority``: how ``pods/log`` dials the kubelet's
  10250 (apisubres.py). The rest are accepted and change nothing.
* apitypes.py: the resources each release serves, defaults, validation, and
  the fields its decoder drops (ownerReferences on 1.1);
* apidiscovery.py: /api, /api/v1, /apis, /apis/G[/V], /version, /healthz;
* apistore.py: objects in etcd (v2 keys API; see there for 1.18's etcd3);
* apiverbs.py: list/watch/get/create/update/patch/delete, Tables;
* apisubres.py: binding, log, scale, eviction (1.18), events;
* apiauth.py: the secure port's TLS and authentication.
Errors are ``Status`` objects (404 NotFound, 405 MethodNotAllowed, 409
AlreadyExists/Conflict, 422 Invalid, 429 TooManyRequests for an eviction a
PodDisruptionBudget forbids). A path the release did not serve (``GET
/apis/policy``, ``POST .../pods/NAME/eviction`` on 1.1) is a 404.

Not covered: authorization (every authenticated request is allowed, as under
AlwaysAllow), admission control, services/endpoints/configmaps/
secrets/deployments, OpenAPI schemas, protobuf.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import apiauth, apidiscovery, kobj, release
from .apistore import Store
from .apisubres import Subresources
from .apitypes import SYSTEM_NAMESPACES, APIError, Resource, default_ns, resources_of
from .apiverbs import Request, Response, Verbs
from .common import client_tls, flags_for, parse_flags, setup_logging, version_requested
from .etcd2 import Etcd2, EtcdUnreachable
from .release import Release

log = logging.getLogger("standin")
Obj = dict[str, Any]
FLAGS = flags_for("apiserver", release.current())  # the image's release; serve() takes any


class API(Verbs, Subresources):
    def __init__(self, store: Store, rel: Release, opts: dict[str, Any] | None = None) -> None:
        self.store = store
        self.rel = rel
        self.opts = opts or {}
        self.by_path = {(r.group, r.version, r.plural): r for r in resources_of(rel)}

    def route(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        ns: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = self.by_path.get((group, version, rest[0]))
        if res is None or (ns is not None and not res.namespaced) or len(rest) > 3:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and sub not in res.subresources:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if name is not None and res.namespaced and ns is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return res, ns, name, sub

    def handle(self, req: Request) -> Response:
        try:
            if req.method in ("GET", "HEAD"):
                if apidiscovery.health_path(self.rel, req.path):
                    self.store.etcd.version()
                    return Response(200, b"ok", "text/plain")
                doc = apidiscovery.document(self.rel, req.path, req.headers.get("Host", ""))
                if doc is not None:
                    return Response(*doc)
            res, ns, name, sub = self.route(req.path)
            return self.dispatch(req, res, ns, name, sub)
        except APIError as e:
            return Response(e.code, e.status())
        except EtcdUnreachable as e:
            return Response(503, APIError(503, "ServiceUnavailable", f"etcd unreachable: {e}").status())

    def dispatch(self, req: Request, res: Resource, ns: str | None, name: str | None, sub: str | None) -> Response:
        m = req.method
        if res.etcd_dir is None:
            return self.events(req, res, ns, name)
        if res.kind == "ReplicationControllerDummy" and sub != "scale":
            # 1.1 registered extensions/v1beta1 replicationcontrollers only for its scale subresource.
            raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if name is None:
            if m == "GET":
                if req.query.get("watch") in ("1", "true"):
                    return self.watch(req, res, ns)
                return self.list(req, res, ns)
            if m == "POST":
                return self.create(req, res, ns)
            raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if sub == "eviction" and m == "POST":
            return self.evict(req, res, ns or "default", name)
        if sub == "binding" and m == "POST":
            return self.bind(req, res, ns or "default", name)
        if sub == "log" and m == "GET":
            return self.logs(req, res, ns or "default", name)
        if sub == "scale":
            if m == "GET":
                return Response(200, self.scale_of(self.store.get(res, ns, name)))
            if m in ("PUT", "PATCH"):
                return self.update_scale(req, res, ns, name)
        if sub in (None, "status"):
            if m == "GET":
                return self.get(req, res, ns, name)
            if m == "PUT":
                return self.replace(req, res, ns, name, sub)
            if m == "PATCH":
                return self.patch(req, res, ns, name, sub)
            if m == "DELETE" and sub is None:
                return self.delete(req, res, ns, name)
        raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def make_handler(api: API, auth: apiauth.Authenticator | None = None) -> type[BaseHTTPRequestHandler]:
    """The request handler of one port: `auth` None is the insecure port (no authentication)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "standin-apiserver"

        def setup(self) -> None:
            apiauth.handshake(self.request)
            super().setup()
            # Headers and body go out in two writes; without NODELAY, Nagle and the
            # client's delayed ACK stall every keep-alive request by ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(self.command, url.path, dict(urllib.parse.parse_qsl(url.query)), self.headers, body)
            try:
                resp = self._unauthorized() or api.handle(req)
            except Exception as exc:  # noqa: BLE001 - a server answers 500, it does not die
                log.exception("internal error on %s %s", self.command, self.path)
                resp = Response(500, APIError(500, "InternalError", f"internal error: {exc}").status())
            if not isinstance(resp.body, (bytes, dict, list)):
                self._stream(resp)
                return
            data = resp.body if isinstance(resp.body, bytes) else json.dumps(resp.body).encode()
            self.send_response(resp.code)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            if resp.code >= 400 and resp.code != 404:
                log.info("%s %s -> %d", self.command, self.path, resp.code)

        def _unauthorized(self) -> Response | None:
            if auth is None:
                return None
            peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
            if auth.user(peer or None, self.headers) is not None:
                return None
            return Response(*auth.unauthorized())

        def _stream(self, resp: Response) -> None:
            self.send_response(resp.code)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in resp.body:
                    if chunk:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    elif self._client_gone():
                        return
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True

        def _client_gone(self) -> bool:
            import select
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return apiauth.peer_gone(self.connection)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler


def ensure_namespaces(store: Store, rel: Release) -> None:
    res = next(r for r in resources_of(rel) if r.plural == "namespaces")
    for ns in SYSTEM_NAMESPACES[rel.line]:
        obj = {"kind": "Namespace", "apiVersion": "v1",
               "metadata": {"name": ns, "uid": kobj.new_uid(), "creationTimestamp": kobj.now_rfc3339()}}
        default_ns(obj)
        try:
            store.create(res, obj)
        except APIError as e:
            if e.code != 409:
                raise


def etcd_client(opts: dict[str, Any]) -> Etcd2:
    """etcd as --etcd-servers names it; over TLS with --etcd-cafile/--etcd-certfile/--etcd-keyfile
    (1.18's storage transport: the CA trusted, the client certificate presented)."""
    tls = None
    if opts.get("etcd-cafile") or opts.get("etcd-certfile"):
        tls = client_tls(opts.get("etcd-cafile") or "", opts.get("etcd-certfile") or "", opts.get("etcd-keyfile") or "")
    return Etcd2(opts["etcd-servers"].split(","), tls=tls)


def serve_secure(opts: dict[str, Any], api: API, rel: Release) -> ThreadingHTTPServer | None:
    """The secure port (HTTPS, authenticated), or None when not served (apiauth.server_context)."""
    ctx = apiauth.server_context(opts)
    if ctx is None:
        return None
    server = apiauth.TLSServer((opts["bind-address"] or "0.0.0.0", opts["secure-port"]),
                               make_handler(api, apiauth.Authenticator(opts, rel)), ctx)
    log.info("%s apiserver serving securely on %s:%d (client CA %s)", rel.version, *server.server_address[:2],
             opts["client-ca-file"] or "none")
    return server


def serve(opts: dict[str, Any], rel: Release | None = None) -> ThreadingHTTPServer:
    """The insecure port's server (returned, not started) and, when configured, the secure
    port's, started in a thread and kept as ``.secure`` on the returned server."""
    rel = rel or release.current()
    etcd = etcd_client(opts)
    store = Store(etcd, opts["etcd-prefix"])
    for attempt in range(60):
        try:
            ensure_namespaces(store, rel)
            break
        except EtcdUnreachable as exc:
            if attempt == 59:
                raise
            log.info("waiting for etcd: %s", exc)
            import time
            time.sleep(1)
    host = opts["address"] or opts["insecure-bind-address"]
    port = opts["port"] or opts["insecure-port"]
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    api = API(store, rel, opts)
    secure = serve_secure(opts, api, rel)
    server = ThreadingHTTPServer((host, port), make_handler(api))
    log.info("%s apiserver serving insecurely on %s:%d (etcd %s)", rel.version, host, server.server_address[1],
             opts["etcd-servers"])
    if secure is not None:
        import threading
        threading.Thread(target=secure.serve_forever, daemon=True).start()
    server.secure = secure  # type: ignore[attr-defined]
    return server


def main(argv: list[str]) -> None:
    setup_logging("apiserver")
    rel = release.current()
    opts = parse_flags("apiserver", argv, flags_for("apiserver", rel))
    if version_requested(opts, rel):
        return
    try:
        server = serve(opts, rel)
    except (EtcdUnreachable, OSError) as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)
    server.serve_forever()
