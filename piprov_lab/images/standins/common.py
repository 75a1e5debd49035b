"""Helpers shared by the stand-ins: Go-style flag parsing, logging, JSON over HTTP(S), kubeconfig files."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("standin")


def setup_logging(component: str) -> None:
    """glog-like one-line records on stderr (what `docker logs` shows)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s {component} %(levelname).1s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )


@dataclass
class Flag:
    name: str
    default: Any
    kind: type = str  # str, int, float (a Go duration or a plain number) or bool
    help: str = ""


class FlagError(SystemExit):
    """A command line the real server refuses: pflag's message on stderr, exit status 1."""

    def __init__(self, component: str, message: str) -> None:
        print(f"Error: {message}", file=sys.stderr)
        super().__init__(1)
        self.component, self.message = component, message


def flags_for(server: str, release: Any, overrides: dict[str, Any] | None = None) -> list[Flag]:
    """The flag set of `server` in `release` (flagsets.py), with the lab's documented default overrides."""
    from . import flagsets
    rows = flagsets.table(flagsets.GLOBAL[release.line]) + flagsets.table(flagsets.SERVERS[server][release.line])
    out = []
    for name, kind, default in rows:
        if kind is float and isinstance(default, str):
            default = _duration(default)
        if overrides and name in overrides:
            default = overrides[name]
        out.append(Flag(name, default, kind))
    return out


def parse_flags(component: str, argv: list[str], flags: list[Flag], strict: bool | None = None) -> dict[str, Any]:
    """Parse flags the way Go's pflag does (``--a=b``, ``--a b``, bare bools, ``_`` read as ``-``).

    Strict (the default when `flags` holds the global ``help`` flag, i.e. came
    from ``flags_for``: the hyperkube servers): a flag the server does not have
    ends the program as pflag does: ``Error: unknown flag: --x`` on stderr, exit
    status 1 (the real servers exit the same way; hyperkube 1.1 through
    RunToExit, the 1.18 binaries through cobra); a single dash takes one-letter
    shorthands only, and the only shorthand the servers share is ``-h``.
    Lenient (a hand-made flag list, e.g. flanneld's): unknown flags are logged
    and ignored, ``-a=b`` reads as ``--a=b`` (Go's flag package).
    Positional arguments are ignored, as the servers do.
    """
    if strict is None:
        strict = any(f.name == "help" for f in flags)
    if not strict:
        return _parse_lenient(component, argv, flags)
    known = {f.name: f for f in flags}
    values: dict[str, Any] = {f.name: f.default for f in flags}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            log.info("%s: ignoring positional argument %r", component, arg)
            continue
        if not arg.startswith("--"):
            short = arg[1:2]
            if short != "h":
                raise FlagError(component, f"unknown shorthand flag: {short!r} in {arg}")
            values["help"] = True
            continue
        name, eq, value = arg[2:].partition("=")
        name = name.replace("_", "-")
        flag = known.get(name)
        if flag is None:
            raise FlagError(component, f"unknown flag: --{name}")
        if not eq:
            if flag.kind is bool or name == "version":  # pflag NoOptDefVal "true"
                value = "true"
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise FlagError(component, f"flag needs an argument: --{name}")
        try:
            if flag.kind is bool:
                if value.lower() not in ("1", "t", "true", "0", "f", "false"):
                    raise ValueError(value)
                values[name] = value.lower() in ("1", "t", "true")
            elif flag.kind is int:
                values[name] = int(value)
            elif flag.kind is float:
                values[name] = _duration(value)  # Go durations ("20s", "1m") or seconds
            else:
                values[name] = value
        except ValueError:
            raise FlagError(component, f'invalid argument "{value}" for --{name}') from None
    return values


def _parse_lenient(component: str, argv: list[str], flags: list[Flag]) -> dict[str, Any]:
    known = {f.name: f for f in flags}
    values: dict[str, Any] = {f.name: f.default for f in flags}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            log.info("%s: ignoring positional argument %r", component, arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        name = name.replace("_", "-")
        flag = known.get(name)
        if flag is None:
            log.info("%s: ignoring flag --%s (not implemented by this stand-in)", component, name)
            continue
        if not eq:
            if flag.kind is bool:
                value = "true"
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise SystemExit(f"{component}: flag --{name} needs a value")
        try:
            if flag.kind is bool:
                values[name] = value.lower() in ("1", "t", "true", "yes")
            elif flag.kind is int:
                values[name] = int(value)
            elif flag.kind is float:
                values[name] = _duration(value)
            else:
                values[name] = value
        except ValueError:
            raise SystemExit(f"{component}: invalid value {value!r} for flag --{name}") from None
    return values


def version_requested(opts: dict[str, Any], release: Any) -> bool:
    """--version as verflag answers it: "Kubernetes vX.Y.Z" on stdout, then exit 0."""
    if str(opts.get("version") or "").lower() in ("true", "raw", "1", "t"):
        print(f"Kubernetes {release.version}")
        return True
    return False


def _duration(value: str) -> float:
    """Go durations as seconds: "20s", "1m30s", "500ms", or a bare number of seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    total = 0.0
    num = ""
    i = 0
    if value.replace(".", "", 1).isdigit():
        return float(value)
    while i < len(value):
        c = value[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = "ms" if value[i : i + 2] == "ms" else c
        if unit not in units or not num:
            raise ValueError(value)
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    if num:
        raise ValueError(value)
    return total


def parse_duration(value: str) -> float:
    return _duration(value)


class HTTPError(Exception):
    def __init__(self, status: int, body: Any, text: str = "") -> None:
        super().__init__(f"HTTP {status}: {text or body}")
        self.status = status
        self.body = body


class JSONClient:
    """A tiny keep-alive HTTP/JSON client for one base URL (http://host:port or https://host:port).

    https: `tls` is the client context (the CA it trusts, the certificate it
    presents); without one, the system's default trust, as Go's client has.
    """

    def __init__(self, base: str, timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> None:
        parsed = urllib.parse.urlsplit(base if "//" in base else "http://" + base)
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if self.https else 80)
        self.timeout = timeout
        self.tls = tls
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=self.tls or ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        hdrs = {"Accept": "application/json"}
        if data is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=hdrs)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.close()
                # A keep-alive connection the server closed: retry once on a fresh one.
                if attempt:
                    raise
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        status, parsed = self.request(method, path, body, **kw)
        if status not in ok:
            message = parsed.get("message", "") if isinstance(parsed, dict) else str(parsed)
            raise HTTPError(status, parsed, f"{method} {path}: {message}")
        return parsed


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def local_ip_towards(host: str, port: int) -> str | None:
    """The local address the kernel would use to reach host (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            ip = s.getsockname()[0]
            return str(ip)
    except OSError:
        return None


def client_tls(ca_file: str = "", cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """A TLS client context as client-go builds one from a kubeconfig's (or Go's tls.Config from
    flags): trust `ca_file` (else the system roots), present `cert_file`/`key_file` if given.
    Server names are checked against the certificate's SANs (IPs included), as Go does."""
    ctx = ssl.create_default_context(cafile=ca_file or None)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None)
    return ctx


@dataclass(frozen=True)
class Kubeconfig:
    """What a component takes from a kubeconfig file: its current context's server and credentials."""
    server: str
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def tls(self) -> ssl.SSLContext | None:
        """The TLS context for the server (None for an http:// one, where TLS settings do nothing)."""
        return client_tls(self.ca_file, self.cert_file, self.key_file) if self.server.startswith("https:") else None


def load_kubeconfig(path: str, component: str) -> Kubeconfig:
    """The current context of a kubeconfig file (else its first cluster and user), as clientcmd
    reads it: file paths only (certificate-authority, client-certificate, client-key; the *-data
    forms are not covered). Exits as the real component does when the file cannot be used."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise SystemExit(f"{component}: cannot read the kubeconfig {path}: {exc}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml  # bundled in the image
        doc = yaml.safe_load(text)
    doc = doc if isinstance(doc, dict) else {}
    clusters = {c.get("name"): (c.get("cluster") or {}) for c in doc.get("clusters") or []}
    users = {u.get("name"): (u.get("user") or {}) for u in doc.get("users") or []}
    ctx = {c.get("name"): (c.get("context") or {}) for c in doc.get("contexts") or []}.get(doc.get("current-context"), {})
    cluster = clusters.get(ctx.get("cluster")) or next(iter(clusters.values()), {})
    user = users.get(ctx.get("user")) or next(iter(users.values()), {})
    server = cluster.get("server") or ""
    return Kubeconfig(str(server), str(cluster.get("certificate-authority") or ""),
                      str(user.get("client-certificate") or ""), str(user.get("client-key") or ""))


def api_client_config(opts: dict[str, Any], component: str) -> Kubeconfig:
    """--kubeconfig, its server overridden by --master when that is given: what kube-proxy,
    the scheduler and the controller-manager do in 1.1 and 1.18 (clientcmd's
    NewNonInteractiveDeferredLoadingClientConfig with ConfigOverrides{Server: master});
    neither: the default client, http://127.0.0.1:8080 (localhost:8080 in both releases)."""
    kc = load_kubeconfig(opts["kubeconfig"], component) if opts.get("kubeconfig") else Kubeconfig("")
    server = opts.get("master") or kc.server or "http://127.0.0.1:8080"
    return Kubeconfig(server, kc.ca_file, kc.cert_file, kc.key_file)


def kube_client_from_flags(opts: dict[str, Any], component: str) -> "KubeClient":
    kc = api_client_config(opts, component)
    return KubeClient(kc.server, tls=kc.tls())


class KubeClient:
    """The few calls the stand-in controllers make to the apiserver (JSON, v1)."""

    def __init__(self, master: str, timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> None:
        self.master = master.split(",")[0].rstrip("/")
        self.http = JSONClient(self.master, timeout, tls)
        self.lock = __import__("threading").Lock()

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        with self.lock:
            return self.http.call(method, path, body, ok, **kw)

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        with self.lock:
            return self.http.request(method, path, body, **kw)

    def list(self, path: str, **query: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({k.replace("_", ""): v for k, v in query.items() if v is not None})
        items: list[dict[str, Any]] = self.call("GET", path + ("?" + q if q else "")).get("items") or []
        return items

    def healthy(self) -> bool:
        try:
            status, _ = self.request("GET", "/healthz")
            return status == 200
        except OSError:
            return False


def pod_path(pod: dict[str, Any], sub: str = "") -> str:
    m = pod["metadata"]
    return f"/api/v1/namespaces/{m.get('namespace', 'default')}/pods/{m['name']}" + (f"/{sub}" if sub else "")


def serve_healthz(host: str, port: int, check: Callable[[], bool] | None = None,
                  extra: Callable[[str], tuple[int, Any] | None] | None = None,
                  tls: ssl.SSLContext | None = None, authenticated: Callable[[Any], bool] | None = None) -> None:
    """Answer GET /healthz ("ok") on host:port from a daemon thread; over TLS with `tls`, and
    401 "Unauthorized" for a connection `authenticated` refuses (it gets the socket)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from . import apiauth

    class H(BaseHTTPRequestHandler):
        def setup(self) -> None:
            apiauth.handshake(self.request)
            super().setup()

        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            code, body = 404, b"404 page not found\n"
            if authenticated is not None and not authenticated(self.connection):
                code, body = 401, b"Unauthorized\n"
            elif self.path.split("?")[0] == "/healthz":
                good = check() if check else True
                code, body = (200, b"ok") if good else (500, b"unhealthy")
            elif extra is not None:
                try:
                    got = extra(self.path)
                except Exception as exc:  # noqa: BLE001 - answer 500, keep serving
                    got = (500, f"{exc}\n".encode())
                if got is not None:
                    code, payload = got
                    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer.allow_reuse_address = True
    try:
        server = apiauth.TLSServer((host, port), H, tls) if tls is not None else ThreadingHTTPServer((host, port), H)
    except OSError as exc:
        log.warning("cannot serve /healthz on %s:%d: %s", host, port, exc)
        return
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log.info("serving /healthz on %s:%d%s", host, port, " (https)" if tls is not None else "")
