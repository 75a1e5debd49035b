"""The Docker Engine HTTP API over its unix socket (what the kubelet of 2016 spoke)."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any


class DockerError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"docker: {status} {message}")
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.socket_path)
        self.sock = s


class Docker:
    def __init__(self, endpoint: str = "unix:///var/run/docker.sock", timeout: float = 60.0) -> None:
        self.path = endpoint[len("unix://"):] if endpoint.startswith("unix://") else endpoint
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
                 timeout: float | None = None) -> tuple[int, bytes]:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        conn = _UnixConnection(self.path, timeout or self.timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
             ok: tuple[int, ...] = (200, 201, 204, 304), timeout: float | None = None) -> Any:
        status, raw = self._request(method, path, body, query, timeout)
        if status not in ok:
            try:
                message = json.loads(raw).get("message", raw.decode(errors="replace"))
            except ValueError:
                message = raw.decode(errors="replace")
            raise DockerError(status, message)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def info(self) -> dict[str, Any]:
        return dict(self.call("GET", "/info"))

    def version(self) -> dict[str, Any]:
        return dict(self.call("GET", "/version"))

    def containers(self, label: str) -> list[dict[str, Any]]:
        return list(self.call("GET", "/containers/json",
                              query={"all": "1", "filters": json.dumps({"label": [label]})}))

    def inspect(self, cid: str) -> dict[str, Any] | None:
        try:
            return dict(self.call("GET", f"/containers/{cid}/json"))
        except DockerError as e:
            if e.status == 404:
                return None
            raise

    def has_image(self, image: str) -> bool:
        status, _ = self._request("GET", f"/images/{image}/json")
        return status == 200

    def pull(self, image: str) -> None:
        repo, tag = image, "latest"
        last = image.rsplit("/", 1)[-1]
        if "@" in last:
            repo, tag = image.split("@", 1)[0], image.split("@", 1)[1]
        elif ":" in last:
            repo, tag = image.rsplit(":", 1)
        status, raw = self._request("POST", "/images/create", query={"fromImage": repo, "tag": tag}, timeout=300)
        if status != 200:
            raise DockerError(status, raw.decode(errors="replace").strip())
        for line in raw.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("error"):
                raise DockerError(500, f"pulling {image}: {msg['error']}")

    def create(self, name: str, config: dict[str, Any]) -> str:
        return str(self.call("POST", "/containers/create", config, query={"name": name})["Id"])

    def start(self, cid: str) -> None:
        self.call("POST", f"/containers/{cid}/start")

    def remove(self, cid: str) -> None:
        try:
            self.call("DELETE", f"/containers/{cid}", query={"force": "1", "v": "1"})
        except DockerError as e:
            if e.status != 404:
                raise
