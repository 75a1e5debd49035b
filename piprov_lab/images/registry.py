"""Pushing images to a Docker Registry (HTTP API v2, plain HTTP) straight from Python."""

from __future__ import annotations

import hashlib
import http.client
import urllib.parse
from pathlib import Path

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class RegistryError(Exception):
    pass


class Registry:
    def __init__(self, address: str, timeout: float = 60.0) -> None:
        self.address = address
        host, _, port = address.partition(":")
        self.conn = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
        self.uploaded: dict[str, str] = {}  # digest -> a repository holding it

    def close(self) -> None:
        self.conn.close()

    def _req(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.HTTPException, OSError) as exc:
                self.conn.close()
                if attempt:
                    raise RegistryError(f"registry {self.address} unreachable: {exc}") from None
        raise AssertionError("unreachable")

    def ping(self) -> None:
        status, _, body = self._req("GET", "/v2/")
        if status != 200:
            raise RegistryError(f"registry {self.address}: GET /v2/ answered {status}: {body[:200]!r}")

    def manifest_digest(self, repo: str, tag: str) -> str | None:
        status, headers, _ = self._req("HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPE})
        return headers.get("docker-content-digest") if status == 200 else None

    def has_blob(self, repo: str, digest: str) -> bool:
        status, _, _ = self._req("HEAD", f"/v2/{repo}/blobs/{digest}")
        return status == 200

    def push_blob(self, repo: str, digest: str, path: Path) -> None:
        if self.has_blob(repo, digest):
            return
        source = self.uploaded.get(digest)
        if source:
            q = urllib.parse.urlencode({"mount": digest, "from": source})
            status, _, _ = self._req("POST", f"/v2/{repo}/blobs/uploads/?{q}", body=b"")
            if status == 201:
                return
        status, headers, body = self._req("POST", f"/v2/{repo}/blobs/uploads/", body=b"")
        if status != 202 or "location" not in headers:
            raise RegistryError(f"starting upload to {repo}: {status} {body[:200]!r}")
        loc = urllib.parse.urlsplit(headers["location"])
        query = urllib.parse.parse_qsl(loc.query) + [("digest", digest)]
        data = path.read_bytes()
        status, _, body = self._req("PUT", f"{loc.path}?{urllib.parse.urlencode(query)}", body=data,
                                    headers={"Content-Type": "application/octet-stream",
                                             "Content-Length": str(len(data))})
        if status != 201:
            raise RegistryError(f"uploading {digest} to {repo}: {status} {body[:200]!r}")
        self.uploaded[digest] = repo

    def push_manifest(self, repo: str, tag: str, manifest: bytes) -> str:
        status, headers, body = self._req("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                          headers={"Content-Type": MANIFEST_TYPE})
        if status != 201:
            raise RegistryError(f"pushing manifest {repo}:{tag}: {status} {body[:300]!r}")
        return headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(manifest).hexdigest()
