"""The one HTTP client: a request in, a status and the body's bytes out.

piprov speaks HTTP to three servers of the cluster it built: the apiserver's
secure port, the master's etcd v2 API (both HTTPS, authenticated by the
controller's client certificate: ``tls``) and the health URLs of the
playbook. None needs more than urllib. An answer with any
status is an answer (a 404 or 429 is data to its caller); only "nothing
answered" is an exception, :class:`Unreachable`, raised in this one place.
Each caller words it for its user (the Kubernetes API, etcd, a probe).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable


MAX_INTERVAL = 0.25


def poll_until(look: Callable[[], tuple[bool, str]], timeout: float, *, cancel: threading.Event | None = None,
               clock: Callable[[], float] = time.monotonic) -> tuple[bool, str]:
    """Call ``look`` until it says done or ``timeout`` ends: (done?, what the last look saw).

    The one wait of the controller on a server: quick at first (most things come
    up within a second), then backing off to four looks a second. Not slower: a
    look that comes late holds up every step waiting on this one, and a cold
    `up` has four such waits in a row on its critical path (etcd's /health, the
    apiserver's /healthz, the master's and a worker's Ready); backing off to one
    look a second left ~0.4 s on each of them (issue #16's cold run). A look is
    one small HTTPS request.
    """
    deadline, interval = clock() + timeout, 0.05
    while True:
        ok, detail = look()
        if ok:
            return True, detail
        now = clock()
        if now >= deadline or (cancel is not None and cancel.is_set()):
            return False, detail
        wait = min(interval, deadline - now)
        if cancel is not None:
            cancel.wait(wait)
        else:
            time.sleep(wait)
        interval = min(interval * 1.5, MAX_INTERVAL)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class Unreachable(Exception):
    """Nothing answered at ``url``: refused, timed out, no route, or a URL no socket can reach."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


def request(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    content_type: str = "application/json",
    accept: str | None = None,
    timeout: float = 10.0,
    limit: int = -1,
    tls: ssl.SSLContext | None = None,
) -> Response:
    """``method url``; with ``json_body``, send it as JSON under ``content_type``.

    ``limit`` caps the bytes read (a probe needs only the start of a page).
    ``tls`` is the context an https URL is reached with (the cluster's CA to
    trust, the client certificate to present); a failed handshake is
    :class:`Unreachable` like any other "no HTTP answer".
    Raises :class:`Unreachable` when no HTTP answer came back.
    """
    data = json.dumps(json_body).encode() if json_body is not None else None
    try:
        req = urllib.request.Request(url, data=data, method=method)  # a URL it cannot parse: ValueError
        if data is not None:
            req.add_header("Content-Type", content_type)
        if accept is not None:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=timeout, context=tls) as resp:  # noqa: S310 - the cluster's own servers
            return Response(int(resp.status), bytes(resp.read(limit)))
    except urllib.error.HTTPError as e:
        return Response(int(e.code), bytes(e.read(limit) or b""))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise Unreachable(url, str(getattr(e, "reason", e))) from None
