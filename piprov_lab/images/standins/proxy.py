"""kube-proxy STAND-IN (``/hyperkube proxy`` on 1.1, ``/hyperkube kube-proxy`` on 1.18).

Not Kubernetes. This stand-in ONLY stays up and answers ``GET /healthz`` ("ok"),
where the release served it (cmd/kube-proxy/app/server.go): 1.1 on
``--healthz-bind-address`` (127.0.0.1) : ``--healthz-port`` (10249); 1.18 on
``--healthz-bind-address`` (0.0.0.0:10256; the deprecated ``--healthz-port``
replaces its port) and on the metrics server, ``--metrics-bind-address``
(127.0.0.1:10249), whose mux also installs /healthz. It programs no iptables
rules and proxies no service traffic: the lab has no Service objects. Flags are
the release's (flagsets.py; unknown -> exit 1). Its apiserver client is the
real one's: ``--kubeconfig`` (server, CA, client certificate), its server
overridden by ``--master`` when given (cmd/kube-proxy/app/server.go, 1.1 and
1.18); the stand-in checks at start that the apiserver answers it with those
credentials (GET /api, retried), and logs the outcome.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any

from . import release
from .common import HTTPError, flags_for, kube_client_from_flags, parse_flags, serve_healthz, setup_logging, version_requested

log = logging.getLogger("standin")
FLAGS = flags_for("proxy", release.current())


def _host_port(value: str, port: int | None) -> tuple[str, int]:
    host, _, p = value.rpartition(":")
    return host or "0.0.0.0", port if port is not None else int(p)


def endpoints(opts: dict[str, Any], rel: release.Release) -> list[tuple[str, int]]:
    if not rel.modern:
        return [(opts["healthz-bind-address"], int(opts["healthz-port"]))]
    healthz_port = int(opts["healthz-port"]) if opts["healthz-port"] != 10256 else None
    metrics_port = int(opts["metrics-port"]) if opts["metrics-port"] != 10249 else None
    return [_host_port(opts["healthz-bind-address"], healthz_port), _host_port(opts["metrics-bind-address"], metrics_port)]


def main(argv: list[str]) -> None:
    setup_logging("proxy")
    rel = release.current()
    opts = parse_flags("proxy", argv, flags_for("proxy", rel))
    if version_requested(opts, rel):
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for host, port in endpoints(opts, rel):
        serve_healthz(host, port)
    kube = kube_client_from_flags(opts, "proxy")
    log.info("%s proxy stand-in up (apiserver %s); it proxies nothing", rel.version, kube.master)
    threading.Thread(target=check_api, args=(kube,), daemon=True).start()
    threading.Event().wait()


def check_api(kube: Any, attempts: int = 60) -> bool:
    """Whether the apiserver answers this proxy (the real one lists services and endpoints)."""
    for attempt in range(attempts):
        try:
            status, body = kube.request("GET", "/api")
            if status == 200:
                log.info("apiserver %s answers", kube.master)
                return True
            log.warning("apiserver %s: HTTP %d %s", kube.master, status, body)
        except (HTTPError, OSError) as exc:
            log.warning("apiserver %s not reachable: %s", kube.master, exc)
        time.sleep(2.0)
    return False


if __name__ == "__main__":
    main(sys.argv[1:])
