"""kube-proxy STAND-IN (``/hyperkube proxy``).

Not Kubernetes. This stand-in ONLY stays up and answers ``GET /healthz`` ("ok")
on ``--healthz-bind-address`` (default 0.0.0.0) : ``--healthz-port`` (default
10249, the port kube-proxy 1.1 served it on). It programs no iptables rules and
proxies no service traffic: the lab has no Service objects. ``--master`` and all
other flags are accepted and logged.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from .common import Flag, parse_flags, serve_healthz, setup_logging

log = logging.getLogger("standin")

FLAGS = [Flag("master", ""), Flag("healthz-port", 10249, int), Flag("healthz-bind-address", "0.0.0.0")]


def main(argv: list[str]) -> None:
    setup_logging("proxy")
    opts = parse_flags("proxy", argv, FLAGS)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve_healthz(opts["healthz-bind-address"], opts["healthz-port"])
    log.info("proxy stand-in up (master %s); it proxies nothing", opts["master"] or "unset")
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
