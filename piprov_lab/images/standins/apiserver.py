"""kube-apiserver STAND-IN (``/hyperkube apiserver`` on 1.1, ``/hyperkube kube-apiserver`` on 1.18).

Not Kubernetes: no Kubernetes server binary can be obtained here, so the lab
runs this program in its place. It serves the Kubernetes REST API of the
release in ``KUBE_VERSION`` (release.py) as kubectl 1.20, piprov and the
stand-in kubelets use it, over the insecure port (no TLS, no authentication or
authorization, as the 2016 insecure port; 1.18 still had ``--insecure-port``,
deprecated).

The parts, one module per concern:
* flags: flagsets.py (the release's kube-apiserver flags; unknown -> exit 1).
  Used: ``--etcd-servers``, ``--etcd-prefix``, ``--insecure-bind-address``
  (default 127.0.0.1), ``--insecure-port`` (8080), 1.1's deprecated aliases
  ``--address``/``--port``; the rest are accepted and change nothing.
* apitypes.py: the resources each release serves, defaults, validation, and
  the fields its decoder drops (ownerReferences on 1.1);
* apidiscovery.py: /api, /api/v1, /apis, /apis/G[/V], /version, /healthz;
* apistore.py: objects in etcd (v2 keys API; see there for 1.18's etcd3);
* apiverbs.py: list/watch/get/create/update/patch/delete, Tables;
* apisubres.py: binding, log, scale, eviction (1.18), events.
Errors are ``Status`` objects (404 NotFound, 405 MethodNotAllowed, 409
AlreadyExists/Conflict, 422 Invalid, 429 TooManyRequests for an eviction a
PodDisruptionBudget forbids). A path the release did not serve (``GET
/apis/policy``, ``POST .../pods/NAME/eviction`` on 1.1) is a 404.

Not covered: TLS, authn/authz, admission control, services/endpoints/configmaps/
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

from . import apidiscovery, kobj, release
from .apistore import Store
from .apisubres import Subresources
from .apitypes import SYSTEM_NAMESPACES, APIError, Resource, default_ns, resources_of
from .apiverbs import Request, Response, Verbs
from .common import flags_for, parse_flags, setup_logging, version_requested
from .etcd2 import Etcd2, EtcdUnreachable
from .release import Release

log = logging.getLogger("standin")
Obj = dict[str, Any]
FLAGS = flags_for("apiserver", release.current())  # the image's release; serve() takes any


class API(Verbs, Subresources):
    def __init__(self, store: Store, rel: Release) -> None:
        self.store = store
        self.rel = rel
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


def make_handler(api: API) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "standin-apiserver"

        def setup(self) -> None:
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
                resp = api.handle(req)
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
            try:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

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


def serve(opts: dict[str, Any], rel: Release | None = None) -> ThreadingHTTPServer:
    rel = rel or release.current()
    etcd = Etcd2(opts["etcd-servers"].split(","))
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
    server = ThreadingHTTPServer((host, port), make_handler(API(store, rel)))
    log.info("%s apiserver serving insecurely on %s:%d (etcd %s)", rel.version, host, server.server_address[1],
             opts["etcd-servers"])
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
