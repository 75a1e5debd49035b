"""The apiserver stand-in's storage: objects as JSON in etcd through the v2 keys API.

Kubernetes 1.1 stored its objects exactly so (etcd 2, one JSON object per key
under ``/registry/``: ``minions``, ``pods/<ns>``, ``controllers/<ns>``,
``namespaces``, ...; pkg/registry/*/etcd at v1.1.2). Kubernetes 1.18 stores them
in etcd3 (``--storage-backend`` etcd3, its default since 1.6); the stand-in keeps
the v2 keys API for both, against the lab's real etcd 3.4 started with
``--enable-v2`` (the cheap choice: one store, and its watch, for both lines; the
1.18 key names follow 1.18's layout, ``/registry/daemonsets/<ns>``,
``/registry/leases/<ns>``, ``/registry/poddisruptionbudgets/<ns>``). Nothing in
piprov reads the apiserver's keys, so the difference cannot be observed through
the API. ``metadata.resourceVersion`` is the key's etcd modifiedIndex, a list's is
the etcd index it was read at; an update carrying a resourceVersion is a
compare-and-swap (409 Conflict when stale), one without is unconditional.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

from .apitypes import APIError, Resource, not_found
from .etcd2 import COMPARE_FAILED, KEY_NOT_FOUND, NODE_EXISTS, Etcd2, EtcdError

Obj = dict[str, Any]


class Store:
    """Objects as JSON in etcd v2; resourceVersion is etcd's modifiedIndex."""

    def __init__(self, etcd: Etcd2, prefix: str) -> None:
        self.etcd = etcd
        self.prefix = prefix.rstrip("/")

    def key(self, res: Resource, ns: str | None, name: str = "") -> str:
        assert res.etcd_dir
        parts = [self.prefix, res.etcd_dir] + ([ns] if res.namespaced and ns else []) + ([name] if name else [])
        return "/".join(parts)

    @staticmethod
    def _decode(node: Any) -> Obj:
        obj: Obj = json.loads(node.value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(node.modified_index)
        return obj

    @staticmethod
    def _encode(obj: Obj) -> str:
        o = dict(obj)
        o["metadata"] = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
        return json.dumps(o, separators=(",", ":"))

    def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        try:
            return self._decode(self.etcd.get(self.key(res, ns, name)))
        except EtcdError as e:
            if e.code == KEY_NOT_FOUND:
                raise not_found(res, name) from None
            raise

    def list(self, res: Resource, ns: str | None) -> tuple[list[Obj], str]:
        nodes, index = self.etcd.list(self.key(res, ns))
        return [self._decode(n) for n in nodes if n.value], str(index)

    def create(self, res: Resource, obj: Obj) -> Obj:
        meta = obj["metadata"]
        try:
            node = self.etcd.create(self.key(res, meta.get("namespace"), meta["name"]), self._encode(obj))
        except EtcdError as e:
            if e.code == NODE_EXISTS:
                raise APIError(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists',
                               {"name": meta["name"], "kind": res.plural}) from None
            raise
        meta["resourceVersion"] = str(node.modified_index)
        return obj

    def put(self, res: Resource, obj: Obj, prev_rv: str | None) -> Obj:
        meta = obj["metadata"]
        try:
            node = self.etcd.set(self.key(res, meta.get("namespace"), meta["name"]), self._encode(obj),
                                 prev_index=int(prev_rv) if prev_rv else None, prev_exist=True)
        except EtcdError as e:
            if e.code == COMPARE_FAILED:
                raise APIError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{meta["name"]}": '
                               "the object has been modified; please apply your changes to the latest version and try again",
                               {"name": meta["name"], "kind": res.plural}) from None
            if e.code == KEY_NOT_FOUND:
                raise not_found(res, meta["name"]) from None
            raise
        meta["resourceVersion"] = str(node.modified_index)
        return obj

    def delete(self, res: Resource, ns: str | None, name: str, prev_rv: str | None = None) -> None:
        try:
            self.etcd.delete(self.key(res, ns, name), prev_index=int(prev_rv) if prev_rv else None)
        except EtcdError as e:
            if e.code == KEY_NOT_FOUND:
                raise not_found(res, name) from None
            if e.code == COMPARE_FAILED:
                raise APIError(409, "Conflict", f'{res.plural} "{name}" changed while being deleted') from None
            raise

    def update(self, res: Resource, ns: str | None, name: str, fn: Callable[[Obj], Obj | None]) -> Obj:
        """Read-modify-write with compare-and-swap, retried on conflicts."""
        for _ in range(20):
            cur = self.get(res, ns, name)
            new = fn(copy.deepcopy(cur))
            if new is None:
                return cur
            try:
                return self.put(res, new, cur["metadata"]["resourceVersion"])
            except APIError as e:
                if e.code != 409:
                    raise
        raise APIError(409, "Conflict", f'too many conflicting writes to {res.plural} "{name}"')
