"""etcd 2.1.1 WRAPPER (installed as /usr/local/bin/etcd in the lab's ``etcd-amd64:2.1.1`` image).

This is not etcd 2.1.1: no etcd 2.x binary can be obtained here. It is a stand-in
for etcd 2.1.1's command line and client port around the REAL etcd (Debian's
3.4, /opt/etcd3/bin/etcd in the image), so every key flannel and the apiserver
read and write is stored, watched and expired by real etcd code:

* flags: exactly etcd 2.1.1's (etcd-io/etcd v2.1.1 etcdmain/config.go:116-227),
  parsed by Go's ``flag`` package with ContinueOnError (config.go:131, ``goflag.py``).
  An unknown flag, e.g. ``--enable-v2`` (etcd 3.3+) or ``--log-level`` (3.4+):
  ``flag provided but not defined: -enable-v2`` on stderr, the usage on stdout,
  exit 2 (config.go:235-242). A positional argument: ``error verifying flags, 'x'
  is not a valid flag. See 'etcd --help'.``, exit 1 (config.go:243-245,
  etcdmain/etcd.go:63-71); so are the bootstrap conflict (config.go:264-266) and
  ``-listen-client-urls`` without ``-advertise-client-urls`` (config.go:292-298).
  ``-peers``/``-peers-file`` refuse any value (pkg/flags/flag.go DeprecatedFlag); the
  ignored 0.4 flags (config.go:46-60) log ``flag "-v" is no longer supported -
  ignoring.``; URL lists are checked as pkg/types/urls.go:28-52 NewURLs does.
  ``ETCD_<FLAG>`` variables fill unset flags (config.go:256, pkg/flags SetFlagsFromEnv).
  ``--version`` prints etcd 2.1.1's four lines (config.go:247-253).
* what it runs: the real etcd 3.4 with the same member flags plus ``--enable-v2=true``
  (etcd 2.x had only the v2 API), listening for clients on a loopback port of its
  own; an empty ``-data-dir`` becomes ``<name>.etcd`` as 2.1.1 does (etcd.go:88-90).
* the client port(s) of ``-listen-client-urls`` are served by a small proxy in this
  process (one request per connection, bytes relayed both ways, so v2 watches
  stream): it forwards only the paths etcd 2.1.1's client mux had
  (etcdserver/etcdhttp/client.go:93-106: /v2/keys, /v2/members, /v2/machines,
  /v2/stats, /v2/auth, /health, /version, /metrics, /debug/vars); anything else
  (/v3 and its gRPC gateway included) gets Go's ``404 page not found``.
  ``GET /version`` answers as 2.1.1 did: ``{"etcdserver":"2.1.1","etcdcluster":"2.1.0"}``
  (client.go:359-383, version/version.go:27-47; the cluster version is major.minor.0,
  etcdserver/server.go:950-957, "not_decided" before it is), and ``/health`` with
  2.1.1's ``{"health": "true"}`` / 503 ``{"health": "false"}`` (client.go:332-356).
* client TLS: 2.1.1's flags (config.go:186-191) with 2.1.1's meaning, served by this
  process in front of the filtered client mux, so an https:// URL keeps 2.1.1's
  surface and ``/version`` (relaying the bytes to a TLS listener of the real etcd
  3.4 would expose 3.4's mux and version to every client with a certificate, and
  piprov reads ``/version``). ``-cert-file``/``-key-file`` serve an https:// URL;
  ``-client-cert-auth`` or the deprecated ``-ca-file`` require and verify a client
  certificate (pkg/transport/listener.go:139-142) against ``-ca-file`` plus
  ``-trusted-ca-file`` (listener.go:120-130, 144-151; neither: the system's CAs, as
  Go's nil ClientCAs); ``-trusted-ca-file`` alone asks for none. TLS 1.2 at most:
  2.1.1 was built with Go 1.4.2, which has no TLS 1.3. An https:// URL without a
  certificate and key is served plain, as 2.1.1 does
  (pkg/transport/keepalive_listener.go:31), and one of the two alone is 2.1.1's
  ``KeyFile and CertFile must both be present[key: ..., cert: ...]``, exit 1
  (listener.go:88-91, etcdmain/etcd.go:118 plog.Fatalf). An http:// URL never has
  TLS. Python's ssl (OpenSSL), not Go's crypto/tls: the same policy, another
  library (the last-hyperkube profile runs the real etcd 3.4, whose TLS is Go's).
* SIGTERM/SIGINT go to the real etcd; the wrapper ends as it does (etcd re-raises the
  signal after its cleanup, v2.1.1 pkg/osutil/interrupt_unix.go, so both die by it).

Not covered (refused with exit 1 naming the flag, the lab never uses them): the
proxy mode (``-proxy`` on/readonly, ``-discovery-fallback=proxy`` with a discovery),
discovery (``-discovery``, ``-discovery-srv``), peer TLS (``-peer-cert-file`` etc.:
the lab's one member peers on loopback). The v2 API answers are etcd 3.4's v2
emulation (same JSON, error codes and headers for the keys API; /v2/stats and
/metrics carry 3.4's figures).
"""

from __future__ import annotations

import json
import errno
import logging
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any, NoReturn

from . import goflag

log = logging.getLogger("etcd")

VERSION = "2.1.1"
REAL_ETCD = os.environ.get("STANDIN_REAL_ETCD", "/opt/etcd3/bin/etcd")

USAGE = "usage: etcd [flags]\n       start an etcd server\n\n       etcd --version\n       show the version of etcd\n"


def _urls(value: str) -> list[str]:
    """pkg/types/urls.go:28-52 (v2.1.1) NewURLs."""
    out = []
    for raw in value.split(","):
        raw = raw.strip()
        u = urllib.parse.urlsplit(raw)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"URL scheme must be http or https: {raw}")
        if not u.netloc or ":" not in u.netloc or not u.netloc.rsplit(":", 1)[1]:
            raise ValueError(f'URL address does not have the form "host:port": {raw}')
        if u.path:
            raise ValueError(f"URL must not contain a path: {raw}")
        out.append(raw)
    return sorted(out)


def _choice(*allowed: str) -> goflag.Setter:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError("invalid value")  # pkg/flags/strings.go:40
        return value
    return check


def _deprecated(name: str) -> goflag.Setter:
    def refuse(_: str) -> str:
        raise ValueError(f'flag "-{name}" is no longer supported.')
    return refuse


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid address {value!r}")
    return value


IGNORED = ("cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force",
           "max-result-buffer", "max-retry-attempts", "peer-heartbeat-interval", "peer-election-timeout",
           "retry-interval", "snapshot", "v", "vv")  # config.go:46-60

_S, _B, _U = goflag.string, goflag.boolean, goflag.uinteger
_P = "http://localhost:2380,http://localhost:7001"
_C = "http://localhost:2379,http://localhost:4001"
FLAGS: list[goflag.GoFlag] = [
    # member (config.go:139-148)
    _S("cors"), _S("data-dir"), goflag.GoFlag("listen-peer-urls", _urls(_P), _urls),
    goflag.GoFlag("listen-client-urls", _urls(_C), _urls), _U("max-snapshots", 5), _U("max-wals", 5),
    _S("name", "default"), _U("snapshot-count", 10000), _U("heartbeat-interval", 100), _U("election-timeout", 1000),
    # clustering (config.go:151-167)
    goflag.GoFlag("initial-advertise-peer-urls", _urls(_P), _urls),
    goflag.GoFlag("advertise-client-urls", _urls(_C), _urls), _S("discovery"),
    goflag.GoFlag("discovery-fallback", "proxy", _choice("exit", "proxy")), _S("discovery-proxy"), _S("discovery-srv"),
    _S("initial-cluster", "default=http://localhost:2380,default=http://localhost:7001"),
    _S("initial-cluster-token", "etcd-cluster"),
    goflag.GoFlag("initial-cluster-state", "new", _choice("new", "existing")),
    # proxy (config.go:170-179)
    goflag.GoFlag("proxy", "off", _choice("off", "readonly", "on")), _U("proxy-failure-wait", 5000),
    _U("proxy-refresh-interval", 30000), _U("proxy-dial-timeout", 1000), _U("proxy-write-timeout", 5000),
    _U("proxy-read-timeout", 0),
    # security (config.go:182-191)
    _S("ca-file"), _S("cert-file"), _S("key-file"), _B("client-cert-auth"), _S("trusted-ca-file"),
    _S("peer-ca-file"), _S("peer-cert-file"), _S("peer-key-file"), _B("peer-client-cert-auth"),
    _S("peer-trusted-ca-file"),
    # logging, unsafe, version (config.go:194-201)
    _B("debug"), _S("log-package-levels"), _B("force-new-cluster"), _B("version"),
    # v0.4.6 compatibility (config.go:204-209)
    goflag.GoFlag("addr", "", _host_port), goflag.GoFlag("bind-addr", "", _host_port),
    goflag.GoFlag("peer-addr", "", _host_port), goflag.GoFlag("peer-bind-addr", "", _host_port),
    goflag.GoFlag("peers", "", _deprecated("peers")), goflag.GoFlag("peers-file", "", _deprecated("peers-file")),
] + [goflag.GoFlag(name, "", str, is_bool=True) for name in IGNORED]  # IgnoredFlag.IsBoolFlag

UNSUPPORTED = ("discovery", "discovery-srv", "peer-ca-file", "peer-cert-file", "peer-key-file", "peer-client-cert-auth",
               "peer-trusted-ca-file")


class ConfigError(Exception):
    """etcd.go:63-71: "error verifying flags, ..." and exit 1."""


class StartError(Exception):
    """What startEtcd returns: etcd.go:118 ``plog.Fatalf("%v", err)``, exit 1."""


def parse_config(argv: list[str], env: dict[str, str] | None = None) -> goflag.Parsed:
    """etcd 2.1.1's config.Parse (config.go:233-303). Exits as it does on flag errors;
    raises ConfigError for what Parse returns."""
    try:
        opts = goflag.parse(argv, FLAGS)
    except goflag.FlagError as exc:
        print(exc, file=sys.stderr)
        print(USAGE)
        sys.exit(2)
    except goflag.HelpRequested:
        print(USAGE)
        sys.exit(0)
    if opts.args:
        raise ConfigError(f"'{opts.args[0]}' is not a valid flag")
    if opts["version"]:
        print(f"etcd Version: {VERSION}\nGit SHA: Not provided (lab wrapper around etcd 3.4)\n"
              f"Go Version: go1.4.2\nGo OS/Arch: linux/amd64")
        sys.exit(0)
    try:
        goflag.from_env(opts, FLAGS, "ETCD", env)
    except goflag.FlagError as exc:
        log.critical("%s", exc)
        sys.exit(1)
    given = set(opts.given)
    if len(given & {"discovery", "initial-cluster", "discovery-srv"}) > 1:
        raise ConfigError('multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", '
                          '"discovery" or "discovery-srv"')
    _from_addr(opts, given)
    maybe_proxy = opts["proxy"] != "off" or ("discovery" in given and opts["discovery-fallback"] == "proxy")
    if not maybe_proxy and "listen-client-urls" in given and "advertise-client-urls" not in given:
        raise ConfigError("-advertise-client-urls is required when -listen-client-urls is set explicitly")
    if 5 * opts["heartbeat-interval"] > opts["election-timeout"]:
        raise ConfigError(f"-election-timeout[{opts['election-timeout']}ms] should be at least as 5 times as "
                          f"-heartbeat-interval[{opts['heartbeat-interval']}ms]")
    for name in IGNORED:
        if name in given:
            log.warning('flag "-%s" is no longer supported - ignoring.', name)
    return opts


def _from_addr(opts: goflag.Parsed, given: set[str]) -> None:
    """The 0.4 -addr family (pkg/flags SetBindAddrFromAddr, URLsFromFlags)."""
    pairs = (("listen-peer-urls", "peer-bind-addr", "peer-addr"), ("initial-advertise-peer-urls", "peer-addr", ""),
             ("listen-client-urls", "bind-addr", "addr"), ("advertise-client-urls", "addr", ""))
    for urls, addr, fallback in pairs:
        value = opts[addr] or (f"[::]:{opts[fallback].rsplit(':', 1)[1]}" if fallback and opts[fallback] else "")
        if not value:
            continue
        if urls in given:
            raise ConfigError(f"Set only one of flags -{urls} and -{addr}")
        opts.values[urls] = [f"http://{value}"]
        opts.given.append(urls)


def server_tls(opts: goflag.Parsed) -> ssl.SSLContext | None:
    """The https:// client URLs' TLS as 2.1.1's TLSInfo.ServerConfig builds it (module
    docstring); None: they are served plain (no certificate nor key given)."""
    cert, key = opts["cert-file"], opts["key-file"]
    if not any(u.startswith("https://") for u in opts["listen-client-urls"]) or not (cert or key):
        return None
    if not (cert and key):
        raise StartError(f"KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # Go 1.4.2
    cas = [c for c in (opts["ca-file"], opts["trusted-ca-file"]) if c]
    for path in (cert, key, *cas):
        if not os.access(path, os.R_OK):
            code = errno.EACCES if os.path.exists(path) else errno.ENOENT
            raise StartError(f"open {path}: {os.strerror(code).lower()}")  # Go's *PathError text
    try:
        ctx.load_cert_chain(cert, key)
        if opts["client-cert-auth"] or opts["ca-file"]:
            ctx.verify_mode = ssl.CERT_REQUIRED
            for ca in cas:
                ctx.load_verify_locations(ca)
            if not cas:
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    except (ssl.SSLError, ValueError) as exc:
        raise StartError(f"tls: {exc}") from None
    return ctx


def real_argv(opts: goflag.Parsed, client_port: int) -> list[str]:
    """The real etcd 3.4's command line for this 2.1.1 configuration."""
    for name in UNSUPPORTED:
        if opts[name]:
            raise ConfigError(f"-{name} is not implemented by this lab wrapper")
    if opts["proxy"] != "off":
        raise ConfigError("-proxy is not implemented by this lab wrapper")
    data_dir = opts["data-dir"] or f"{opts['name']}.etcd"
    argv = [REAL_ETCD, f"--name={opts['name']}", f"--data-dir={data_dir}", "--enable-v2=true",
            f"--listen-client-urls=http://127.0.0.1:{client_port}",
            f"--advertise-client-urls={','.join(opts['advertise-client-urls'])}",
            f"--listen-peer-urls={','.join(opts['listen-peer-urls'])}",
            f"--initial-advertise-peer-urls={','.join(opts['initial-advertise-peer-urls'])}",
            f"--initial-cluster={opts['initial-cluster']}", f"--initial-cluster-token={opts['initial-cluster-token']}",
            f"--initial-cluster-state={opts['initial-cluster-state']}",
            f"--heartbeat-interval={opts['heartbeat-interval']}", f"--election-timeout={opts['election-timeout']}",
            f"--snapshot-count={opts['snapshot-count']}", f"--max-snapshots={opts['max-snapshots']}",
            f"--max-wals={opts['max-wals']}"]
    if opts["cors"]:
        argv.append(f"--cors={opts['cors']}")
    if opts["force-new-cluster"]:
        argv.append("--force-new-cluster")
    if opts["debug"]:
        argv.append("--debug")
    return argv


# -- the client port -------------------------------------------------------------------------

# etcdserver/etcdhttp/client.go:93-106 (v2.1.1): what the client mux served.
SERVED = ("/v2/keys", "/v2/members", "/v2/machines", "/v2/stats/", "/v2/auth", "/health", "/version",
          "/metrics", "/debug/vars")


def served(path: str) -> bool:
    p = path.split("?", 1)[0]
    return any(p.startswith(s) if s.endswith("/") else (p == s or p.startswith(s + "/")) for s in SERVED)


def _response(status: str, body: bytes, ctype: str = "text/plain; charset=utf-8", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n").encode() + body


def version_body(upstream: dict[str, Any]) -> bytes:
    cluster = str(upstream.get("etcdcluster", "not_decided"))
    return json.dumps({"etcdserver": VERSION,
                       "etcdcluster": "not_decided" if cluster == "not_decided" else "2.1.0"},
                      separators=(",", ":")).encode()


def _get_upstream(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def local_answer(method: str, path: str, port: int) -> bytes | None:
    """What the wrapper answers itself (None: relay to the real etcd)."""
    p = path.split("?", 1)[0]
    if not served(path):
        return _response("404 Not Found", b"404 page not found\n")
    if p not in ("/version", "/health"):
        return None
    if method != "GET":  # client.go allowMethod
        return _response("405 Method Not Allowed", b"Method Not Allowed\n", extra="Allow: GET\r\n")
    try:
        status, body = _get_upstream(port, p)
    except OSError:
        return _response("503 Service Unavailable", b'{"health": "false"}\n')
    if p == "/version":
        return _response("200 OK", version_body(json.loads(body or b"{}")), "text/plain; charset=utf-8")
    if status == 200 and json.loads(body or b"{}").get("health") == "true":
        return _response("200 OK", b'{"health": "true"}', "text/plain; charset=utf-8")
    return _response("503 Service Unavailable", b'{"health": "false"}\n')


def _read_request(conn: socket.socket) -> tuple[bytes, str, str] | None:
    """(raw head + body, method, path) of one request, or None when the client went."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > 1 << 20:
            return None
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path = (lines[0].split(" ") + ["", ""])[:2]
    length = 0
    kept = [lines[0]]
    for line in lines[1:]:
        name = line.split(":", 1)[0].strip().lower()
        if name == "content-length":
            length = int(line.split(":", 1)[1].strip() or 0)
        if name not in ("connection", "keep-alive"):
            kept.append(line)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        rest += chunk
    kept.append("Connection: close")
    return ("\r\n".join(kept) + "\r\n\r\n").encode("latin-1") + rest, method, path


def _relay(client: socket.socket, up: socket.socket) -> None:
    """Upstream's answer to the client until upstream closes; a client that goes ends it
    (so the real etcd drops an abandoned watch)."""
    sel = selectors.DefaultSelector()
    sel.register(up, selectors.EVENT_READ)
    sel.register(client, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in sel.select():
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if key.fileobj is up:
                    if not data:
                        return
                    client.sendall(data)
                elif not data:
                    return
    finally:
        sel.close()


def serve_client(conn: socket.socket, port: int) -> None:
    try:
        req = _read_request(conn)
        if req is None:
            return
        raw, method, path = req
        answer = local_answer(method, path, port)
        if answer is not None:
            conn.sendall(answer)
            return
        with socket.create_connection(("127.0.0.1", port), timeout=10) as up:
            up.settimeout(None)
            up.sendall(raw)
            _relay(conn, up)
    except OSError:
        pass
    finally:
        conn.close()


def serve_tls_client(conn: socket.socket, port: int, tls: ssl.SSLContext) -> None:
    """serve_client after the TLS handshake; a client it fails (no certificate, one from
    another CA) gets no HTTP at all."""
    try:
        conn.settimeout(30)
        secure = tls.wrap_socket(conn, server_side=True)
        secure.settimeout(None)
    except (OSError, ssl.SSLError) as exc:
        log.debug("TLS handshake failed: %s", exc)
        conn.close()
        return
    serve_client(secure, port)


def listen(url: str, port: int, tls: ssl.SSLContext | None = None) -> threading.Thread:
    """Serve one client URL through the 2.1.1 client mux proxy; https:// with ``tls``
    (server_tls) behind a TLS handshake."""
    u = urllib.parse.urlsplit(url)
    secure = tls if u.scheme == "https" else None
    host = u.hostname or ""
    host = "127.0.0.1" if host == "localhost" else host
    if host in ("", "0.0.0.0"):
        srv = socket.create_server(("", u.port or 0), backlog=128)
    elif ":" in host:
        srv = socket.create_server((host, u.port or 0), family=socket.AF_INET6, dualstack_ipv6=host == "::",
                                   backlog=128)
    else:
        srv = socket.create_server((host, u.port or 0), backlog=128)

    def accept() -> None:
        while True:
            c, _ = srv.accept()
            if secure is not None:
                threading.Thread(target=serve_tls_client, args=(c, port, secure), daemon=True).start()
            else:
                threading.Thread(target=serve_client, args=(c, port), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    return t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> NoReturn:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s.%(msecs)03d000 %(levelname).1s | etcdmain: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    try:
        opts = parse_config(sys.argv[1:] if argv is None else argv)
        port = _free_port()
        tls = server_tls(opts)
        cmd = real_argv(opts, port)
    except StartError as exc:
        log.critical("%s", exc)
        sys.exit(1)
    except ConfigError as exc:
        log.error("error verifying flags, %s. See 'etcd --help'.", exc)
        if "advertise-client-urls is required" in str(exc):
            log.error("When listening on specific address(es), this etcd process must advertise accessible "
                      "url(s) to each connected client.")
        sys.exit(1)
    log.info("etcd Version: %s (lab wrapper: running %s with the v2 API)", VERSION, REAL_ETCD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    proc = subprocess.Popen(cmd, env=env)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: proc.send_signal(s))
    _wait_port(port, proc)
    try:
        for url in opts["listen-client-urls"]:
            listen(url, port, tls)
            log.info("listening for client requests on %s", url)
    except OSError as exc:
        log.critical("listen %s: %s", opts["listen-client-urls"], exc)
        proc.terminate()
        proc.wait()
        sys.exit(1)
    code = proc.wait()
    if code < 0:  # killed by a signal, as etcd's osutil.HandleInterrupts re-raises it: die the same way
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
