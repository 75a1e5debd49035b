"""A client for etcd's v2 keys API over HTTP (what flannel 0.5 and Kubernetes 1.1 spoke).

https:// endpoints speak TLS with the ssl context given (the client certificate
to present and the CAs to trust, as Go's transport.TLSInfo builds it for
flannel), else Python's default context (system CAs, as Go's empty tls.Config).

Errors follow etcd's own codes: 100 key not found, 101 compare failed,
105 key already exists, 401 event index cleared.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .common import JSONClient

log = logging.getLogger("standin")

KEY_NOT_FOUND = 100
COMPARE_FAILED = 101
NODE_EXISTS = 105
EVENT_INDEX_CLEARED = 401


class EtcdError(Exception):
    def __init__(self, code: int, message: str, index: int = 0, cause: str = "") -> None:
        super().__init__(f"etcd error {code}: {message}")
        self.code = code
        self.message = message
        self.index = index
        self.cause = cause

    def go_client_text(self) -> str:
        """The text of etcd's Go v2 client error, ``100: Key not found (/coreos.com) [12]``
        (etcd client/keys.go ``Error.Error``), as flannel 0.12's logs show it."""
        return f"{self.code}: {self.message} ({self.cause}) [{self.index}]"


class EtcdUnreachable(Exception):
    pass


@dataclass
class Node:
    key: str
    value: str | None
    modified_index: int
    created_index: int
    ttl: int | None = None
    dir: bool = False

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Node":
        return cls(
            key=d["key"],
            value=d.get("value"),
            modified_index=int(d.get("modifiedIndex", 0)),
            created_index=int(d.get("createdIndex", 0)),
            ttl=d.get("ttl"),
            dir=bool(d.get("dir", False)),
        )


def _flatten(d: dict[str, Any]) -> list[Node]:
    out: list[Node] = []
    for child in d.get("nodes", []) or []:
        if child.get("dir"):
            out.extend(_flatten(child))
        else:
            out.append(Node.from_json(child))
    return out


class Etcd2:
    """Talks to the first reachable endpoint of a list, moving on when one fails."""

    def __init__(self, endpoints: list[str], timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> None:
        self.endpoints = [e.rstrip("/") for e in endpoints if e.strip()]
        if not self.endpoints:
            raise ValueError("no etcd endpoints given")
        self.timeout = timeout
        self.tls = tls  # for https:// endpoints: the CA trusted and the client certificate presented
        # One keep-alive connection per endpoint and thread: the apiserver serves
        # requests from many threads and http.client connections are not shareable.
        self._local = threading.local()
        self._current = 0

    @property
    def _clients(self) -> list[JSONClient]:
        clients: list[JSONClient] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = [JSONClient(e, self.timeout, self.tls) for e in self.endpoints]
            self._local.clients = clients
        return clients

    def _do(self, method: str, key: str, params: dict[str, str] | None = None,
            form: dict[str, str] | None = None, timeout: float | None = None) -> tuple[int, Any, int]:
        path = "/v2/keys" + urllib.parse.quote(key)
        if params:
            path += "?" + urllib.parse.urlencode(params)
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        last: Exception | None = None
        for n in range(len(self._clients)):
            idx = (self._current + n) % len(self._clients)
            client = self._clients[idx]
            if timeout is not None:
                client = JSONClient(self.endpoints[idx], timeout, self.tls)
            try:
                conn = client._connection()
                headers = {"Accept": "application/json"}
                if body is not None:
                    headers["Content-Type"] = "application/x-www-form-urlencoded"
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                etcd_index = int(resp.getheader("X-Etcd-Index", "0") or 0)
                if timeout is not None:
                    client.close()
                self._current = idx
                return resp.status, json.loads(raw) if raw else None, etcd_index
            except (OSError, ValueError, http.client.HTTPException) as exc:
                # HTTPException: a long-poll watch cut short when etcd's host
                # loses power (IncompleteRead) is an outage, not a crash.
                client.close()
                last = exc
        raise EtcdUnreachable(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last}")

    @staticmethod
    def _check(status: int, data: Any) -> dict[str, Any]:
        if status >= 400 or (isinstance(data, dict) and "errorCode" in data):
            data = data or {}
            raise EtcdError(int(data.get("errorCode", 0)), str(data.get("message", status)), int(data.get("index", 0)),
                            str(data.get("cause", "")))
        assert isinstance(data, dict)
        return data

    def version(self) -> Any:
        """GET /version on the first endpoint that answers (a health probe)."""
        last: Exception | None = None
        for c in self._clients:
            try:
                return c.call("GET", "/version")
            except Exception as exc:  # noqa: BLE001 - any failure means "try the next one"
                c.close()
                last = exc
        raise EtcdUnreachable(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last}")

    def get(self, key: str) -> Node:
        status, data, _ = self._do("GET", key, {"quorum": "true"})
        return Node.from_json(self._check(status, data)["node"])

    def get_or_none(self, key: str) -> Node | None:
        try:
            return self.get(key)
        except EtcdError as e:
            if e.code == KEY_NOT_FOUND:
                return None
            raise

    def list(self, prefix: str) -> tuple[list[Node], int]:
        """Every leaf under prefix (recursive) and the etcd index the read saw."""
        status, data, index = self._do("GET", prefix, {"recursive": "true", "sorted": "true", "quorum": "true"})
        try:
            body = self._check(status, data)
        except EtcdError as e:
            if e.code == KEY_NOT_FOUND:
                return [], max(index, e.index)
            raise
        node = body["node"]
        if not node.get("dir"):
            return [Node.from_json(node)], index
        return _flatten(node), index

    def set(self, key: str, value: str, ttl: int | None = None, prev_exist: bool | None = None,
            prev_index: int | None = None) -> Node:
        form = {"value": value}
        if ttl is not None:
            form["ttl"] = str(ttl)
        if prev_exist is not None:
            form["prevExist"] = "true" if prev_exist else "false"
        if prev_index is not None:
            form["prevIndex"] = str(prev_index)
        status, data, _ = self._do("PUT", key, form=form)
        return Node.from_json(self._check(status, data)["node"])

    def create(self, key: str, value: str, ttl: int | None = None) -> Node:
        """Atomic create: fails with NODE_EXISTS when the key is there."""
        return self.set(key, value, ttl=ttl, prev_exist=False)

    def refresh(self, key: str, ttl: int) -> Node:
        """Renew a TTL without changing the value (and without waking watchers)."""
        status, data, _ = self._do("PUT", key, form={"ttl": str(ttl), "refresh": "true", "prevExist": "true"})
        return Node.from_json(self._check(status, data)["node"])

    def delete(self, key: str, prev_index: int | None = None) -> Node:
        params = {"prevIndex": str(prev_index)} if prev_index is not None else None
        status, data, _ = self._do("DELETE", key, params)
        body = self._check(status, data)
        return Node.from_json(body.get("prevNode") or body["node"])

    def watch(self, prefix: str, after_index: int, timeout: float) -> tuple[str, Node, Node | None] | None:
        """Wait for the next change under prefix after after_index.

        Returns (action, node, prevNode), or None when nothing happened within
        timeout. Raises EtcdError(EVENT_INDEX_CLEARED) when after_index is too old.
        """
        params = {"wait": "true", "recursive": "true", "waitIndex": str(after_index + 1)}
        try:
            status, data, _ = self._do("GET", prefix, params, timeout=timeout)
        except EtcdUnreachable as exc:
            if "timed out" in str(exc):
                return None
            raise
        body = self._check(status, data)
        prev = Node.from_json(body["prevNode"]) if body.get("prevNode") else None
        return str(body["action"]), Node.from_json(body["node"]), prev

