"""The apiserver stand-in's subresources: binding, log, scale, eviction; events.

* ``pods/binding``: sets ``spec.nodeName`` once (409 if already bound).
* ``pods/log``: proxied to the kubelet's ``/containerLogs`` on its node's
  InternalIP:10250 over https (--kubelet-https, default true) with
  ``--kubelet-client-certificate``/``--kubelet-client-key``, as the real apiserver does.
* scale: 1.18 ``replicationcontrollers/scale`` (autoscaling/v1 Scale, selector
  as a string); 1.1 only under extensions/v1beta1 (extensions Scale, selector as
  a map).
* ``pods/eviction`` (1.18 only: policy/v1beta1 Eviction,
  pkg/registry/core/pod/storage/eviction.go): a Running pod covered by a
  PodDisruptionBudget is evicted only while the PDB allows a disruption,
  computed at eviction time from the ready pods matching its selector
  (minAvailable / maxUnavailable, integer or percent, of the owning RCs'
  replicas); otherwise 429 TooManyRequests naming the budget. More than one PDB
  for a pod is a 500, as in 1.18.
* events: accepted and dropped; lists are empty.
"""

from __future__ import annotations

import http.client
import ssl
import logging
import urllib.parse
from typing import Any

from . import kobj
from .apistore import Store
from .apitypes import APIError, Resource, invalid, not_found
from .apiverbs import Request, Response
from .release import Release

log = logging.getLogger("standin")
Obj = dict[str, Any]


class Subresources:
    store: Store
    rel: Release
    by_path: dict[tuple[str, str, str], Resource]

    def body(self, req: Request) -> Any:
        raise NotImplementedError

    def _apply_patch(self, req: Request, obj: Obj) -> Obj:
        raise NotImplementedError

    def bind(self, req: Request, res: Resource, ns: str, name: str) -> Response:
        binding = self.body(req) or {}
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise APIError(422, "Invalid", "Binding.target.name: Required value")

        def fn(pod: Obj) -> Obj:
            if pod["spec"].get("nodeName"):
                raise APIError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} '
                               f'is already assigned to node "{pod["spec"]["nodeName"]}"')
            pod["spec"]["nodeName"] = target
            kobj.set_condition(pod, {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                     "lastTransitionTime": kobj.now_rfc3339()})
            return pod

        self.store.update(res, ns, name, fn)
        return Response(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    def logs(self, req: Request, res: Resource, ns: str, name: str) -> Response:
        """Proxy to the kubelet's /containerLogs, as the real apiserver does."""
        pod = self.store.get(res, ns, name)
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        container = req.query.get("container") or (containers[0] if len(containers) == 1 else "")
        if container not in containers:
            raise APIError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                           f"{containers}" if not container else f"container {container} is not valid for pod {name}")
        node_name = pod["spec"].get("nodeName")
        if not node_name:
            raise APIError(400, "BadRequest", f'pod "{name}" is not scheduled yet')
        node = self.store.get(self.by_path[("", "v1", "nodes")], None, node_name)
        addrs = {a.get("type"): a.get("address") for a in node.get("status", {}).get("addresses") or []}
        port = ((node.get("status", {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 10250)
        host = addrs.get("InternalIP") or node_name
        query = urllib.parse.urlencode({k: v for k, v in req.query.items() if k in ("tailLines", "previous")})
        conn = self.kubelet_connection(host, int(port))
        try:
            conn.request("GET", f"/containerLogs/{ns}/{name}/{container}" + (f"?{query}" if query else ""))
            resp = conn.getresponse()
            body = resp.read()
        except OSError as e:
            raise APIError(500, "InternalError", f"cannot reach the kubelet of node {node_name} at {host}:{port}: {e}") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise APIError(resp.status if resp.status in (400, 404) else 500, "NotFound" if resp.status == 404 else
                           "InternalError", body.decode(errors="replace").strip() or f"kubelet answered {resp.status}")
        return Response(200, body, "text/plain")

    def kubelet_connection(self, host: str, port: int) -> http.client.HTTPConnection:
        """How the apiserver dials a kubelet (pkg/kubelet/client, 1.1 and 1.18): https unless
        --kubelet-https=false, presenting --kubelet-client-certificate/-key, verifying the kubelet's
        (self-signed) certificate only against --kubelet-certificate-authority (else not at all)."""
        opts = getattr(self, "opts", {}) or {}
        if not opts.get("kubelet-https", True):
            return http.client.HTTPConnection(host, port, timeout=10)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if opts.get("kubelet-certificate-authority"):
            ctx.load_verify_locations(cafile=opts["kubelet-certificate-authority"])
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if opts.get("kubelet-client-certificate"):
            ctx.load_cert_chain(opts["kubelet-client-certificate"], opts.get("kubelet-client-key") or None)
        return http.client.HTTPSConnection(host, port, timeout=10, context=ctx)

    def scale_of(self, rc: Obj) -> Obj:
        m = rc["metadata"]
        selector = rc["spec"].get("selector") or {}
        # 1.1's extensions/v1beta1 ScaleStatus.Selector is a map; autoscaling/v1's a string.
        sel: Any = dict(selector) if not self.rel.modern else ",".join(f"{k}={v}" for k, v in selector.items())
        return {"kind": "Scale", "apiVersion": "autoscaling/v1" if self.rel.modern else "extensions/v1beta1",
                "metadata": {"name": m["name"], "namespace": m.get("namespace"), "uid": m.get("uid"),
                             "resourceVersion": m["resourceVersion"], "creationTimestamp": m.get("creationTimestamp")},
                "spec": {"replicas": rc["spec"].get("replicas", 0)},
                "status": {"replicas": (rc.get("status") or {}).get("replicas", 0), "selector": sel}}

    def update_scale(self, req: Request, res: Resource, ns: str | None, name: str) -> Response:
        def fn(rc: Obj) -> Obj:
            scale = self.scale_of(rc)
            new = self._apply_patch(req, scale) if req.method == "PATCH" else self.body(req)
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and rv != rc["metadata"]["resourceVersion"]:
                raise APIError(409, "Conflict", f'Operation cannot be fulfilled on replicationcontrollers "{name}": '
                               "the object has been modified; please apply your changes to the latest version and try again")
            replicas = (new.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise invalid(res, name, "spec.replicas: must be a non-negative integer")
            if replicas != rc["spec"].get("replicas"):
                rc["spec"]["replicas"] = replicas
                rc["metadata"]["generation"] = int(rc["metadata"].get("generation", 1)) + 1
            return rc

        rc = self.store.update(res, ns, name, fn)
        log.info("scaled replicationcontrollers %s/%s to %s", ns, name, rc["spec"]["replicas"])
        return Response(200, self.scale_of(rc))

    @staticmethod
    def pdb_status(pdb: Obj, pods: list[Obj], rcs: list[Obj]) -> Obj:
        """What the disruption controller would publish for pdb (policy/v1beta1 status)."""
        reqs = kobj.selector_requirements(pdb["spec"].get("selector"))
        matching = [p for p in pods if reqs and kobj.match_requirements(reqs, p["metadata"].get("labels"))
                    and kobj.pod_active(p)]
        healthy = sum(1 for p in matching if kobj.pod_ready(p))
        expected, counted = 0, set()
        for p in matching:
            ref = kobj.controller_ref(p)
            rc = next((r for r in rcs if ref and r["metadata"].get("uid") == ref.get("uid")), None)
            if rc is None:
                expected += 1
            elif rc["metadata"]["uid"] not in counted:
                counted.add(rc["metadata"]["uid"])
                expected += int(rc["spec"].get("replicas", 0))
        spec = pdb["spec"]
        if "maxUnavailable" in spec and spec["maxUnavailable"] is not None:
            desired = max(0, expected - kobj.int_or_percent(spec["maxUnavailable"], expected, True))
        else:
            desired = kobj.int_or_percent(spec.get("minAvailable", 1), expected, True)
        return {"observedGeneration": pdb["metadata"].get("generation", 1), "currentHealthy": healthy,
                "desiredHealthy": desired, "expectedPods": expected,
                "disruptionsAllowed": max(0, healthy - desired)}

    def evict(self, req: Request, res: Resource, ns: str, name: str) -> Response:
        pod = self.store.get(res, ns, name)
        phase = (pod.get("status") or {}).get("phase")
        ok = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        if phase in ("Succeeded", "Failed", "Pending"):
            self.store.delete(res, ns, name)
            return Response(201, ok)
        pdb_res = self.by_path[("policy", "v1beta1", "poddisruptionbudgets")]
        pdbs = [p for p in self.store.list(pdb_res, ns)[0]
                if kobj.match_requirements(kobj.selector_requirements(p["spec"].get("selector")) or [("", "exists", [])],
                                           pod["metadata"].get("labels"))]
        if len(pdbs) > 1:
            raise APIError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction "
                           "subresource does not support.")
        if pdbs:
            pdb = pdbs[0]
            pods = self.store.list(res, ns)[0]
            rcs = self.store.list(self.by_path[("", "v1", "replicationcontrollers")], ns)[0]
            st = self.pdb_status(pdb, pods, rcs)
            allowed = st["disruptionsAllowed"] >= 1 if kobj.pod_ready(pod) else st["currentHealthy"] >= st["desiredHealthy"]
            if not allowed:
                log.info("eviction of pods %s/%s refused by poddisruptionbudget %s", ns, name, pdb["metadata"]["name"])
                raise APIError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                               {"causes": [{"reason": "DisruptionBudget", "message":
                                            f"The disruption budget {pdb['metadata']['name']} needs "
                                            f"{st['desiredHealthy']} healthy pods and has {st['currentHealthy']} currently"}]})
        self.store.delete(res, ns, name, pod["metadata"]["resourceVersion"])
        log.info("evicted pods %s/%s", ns, name)
        return Response(201, ok)

    def events(self, req: Request, res: Resource, ns: str | None, name: str | None) -> Response:
        if req.method == "GET" and name is None:
            return Response(200, {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
        if req.method in ("POST", "PUT", "PATCH"):
            obj = self.body(req) or {}
            if isinstance(obj, dict):
                meta = obj.setdefault("metadata", {})
                meta.setdefault("uid", kobj.new_uid())
                meta["resourceVersion"] = "1"
                return Response(201 if req.method == "POST" else 200, obj)
        if req.method == "GET" and name:
            raise not_found(res, name)
        if req.method == "DELETE":
            return Response(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
