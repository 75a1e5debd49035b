"""kubelet STAND-IN (``/hyperkube kubelet``).

Not Kubernetes; the lab's stand-in for the kubelet of the release in
``KUBE_VERSION`` with the docker runtime. Contract followed:

* flags: the release's (flagsets.py; unknown -> exit 1). Where the API server
  and the static pods come from differs per release:
  1.1: ``--api-servers`` (comma list; optional: without it only static pods
  run), ``--config`` = the static pod manifest directory, ``--allow-privileged``
  (default false); ``--kubeconfig`` (default /var/lib/kubelet/kubeconfig, used
  when it exists) says only how to authenticate: its CA and client certificate,
  while the server stays the first of ``--api-servers`` (1.1
  cmd/kubelet/app/server.go kubeconfigClientConfig overrides it); an explicit
  one that cannot be read leaves the kubelet without an API client ("No API
  client"), as 1.1 did.
  1.18: ``--kubeconfig FILE`` (the server and credentials of its current
  context; none: only static pods run), ``--pod-manifest-path`` (or ``staticPodPath`` in the
  KubeletConfiguration file ``--config`` names; that file's
  ``nodeStatusUpdateFrequency`` and ``nodeStatusReportFrequency`` are read too),
  privileged containers always allowed (--allow-privileged was removed in 1.15).
  Both: ``--hostname-override`` (the node name; an IPv4 here is also the node's
  InternalIP), ``--node-ip`` (1.18), ``--pod-infra-container-image``,
  ``--docker-endpoint``, ``--port`` (10250), ``--healthz-port`` (10248),
  ``--healthz-bind-address`` (127.0.0.1), ``--node-status-update-frequency``
  (the lab's default is 5s, not the real 10s: a lab override), ``--root-dir``,
  ``--register-schedulable`` (false registers the Node with
  ``spec.unschedulable``, as a master's kubelet did to keep workloads off it),
  ``--read-only-port`` (10255: ``/healthz`` and ``/pods`` without authentication,
  as the real read-only server; 0: no listener, as startKubelet skips it).
  An https apiserver is reached with the kubeconfig's certificate-authority,
  client-certificate and client-key (file paths).
  Manifests are JSON or YAML, one Pod per file, re-read every second.
* registers its Node once at start (labels: ``kubernetes.io/hostname`` on 1.1;
  on 1.18 also ``kubernetes.io/os``, ``kubernetes.io/arch`` and their ``beta.``
  forms; addresses InternalIP + Hostname, capacity, nodeInfo with
  kubeletVersion and the docker daemon's OS, kernel and version). Like the real
  kubelet it does not register again if the Node is deleted while it runs.
* node heartbeats. 1.1: the Ready condition with a fresh ``lastHeartbeatTime``
  every status period. 1.18 (pkg/kubelet/kubelet_node_status.go,
  pkg/kubelet/nodelease): the node's Lease ``kube-node-lease/<node>``
  (coordination.k8s.io/v1, holderIdentity the node, leaseDurationSeconds 40,
  owned by the Node) is renewed every 10 s (a quarter of the duration); the
  status is computed every status period but posted only when it changed or
  when ``nodeStatusReportFrequency`` (5 min) has passed since the last post.
* runs pods as docker containers on the node's docker daemon, the way the
  kubelet's dockertools did: one infra container (the pause image) per pod holding
  the network namespace (the daemon's bridge gives it the pod IP, from the node's
  flannel subnet), then each container with ``NetworkMode container:<infra>``;
  ``hostNetwork``/``hostPID`` pods use the host's. Containers are named
  ``k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`` and labelled
  ``io.kubernetes.pod.{name,namespace,uid}``, ``io.kubernetes.container.name``,
  ``io.kubernetes.container.restartCount``, so a restarted kubelet adopts them.
  ``command``/``args``/``env``/``workingDir``, ``securityContext.privileged``,
  ``hostPath`` and ``emptyDir`` volumes (under ``--root-dir``, which must be the
  same path on the node), ``restartPolicy`` (a dead container is replaced, with a
  10 s back-off after the first restart), ``imagePullPolicy`` (IfNotPresent /
  Always / Never).
* static pods from ``--config``: run without the apiserver (so a master's kubelet
  can start the apiserver itself); once the apiserver answers, a mirror pod
  ``<name>-<node>`` (annotation ``kubernetes.io/config.mirror``) shows each one.
* pods bound to the node (``fieldSelector=spec.nodeName=<node>``) are started;
  containers of pods that are gone (deleted, evicted) are removed (SIGKILL), but
  not before the apiserver has answered once since the kubelet started (the real
  kubelet's "all sources ready"): a cluster powering up keeps the workers' pods.
* reports pod status (``PUT pods/<name>/status``): phase, podIP, hostIP,
  startTime, conditions (Initialized, Ready, ContainersReady, PodScheduled),
  containerStatuses.
* ``/healthz`` on 127.0.0.1:10248 (plain HTTP) and on :10250 (HTTPS), plus ``/pods`` (the
  pods it runs, a PodList) and ``/containerLogs/<ns>/<pod>/<container>`` on :10250;
  ``/healthz`` and ``/pods`` on the read-only port (plain HTTP). 10250 serves
  ``--tls-cert-file``/``--tls-private-key-file``, else a self-signed pair it makes
  in ``--cert-dir`` (selfsign.py), as the real kubelets do; 1.1 lets everyone in
  (it requests client certificates and checks none); 1.18 authenticates a client
  certificate against ``--client-ca-file`` and, with ``--anonymous-auth=false``,
  answers 401 without one (api_port_tls).

Not covered: probes (a running container is ready), resource limits, cgroups,
secrets/configmaps/other volume types, graceful termination, image garbage
collection, exec/attach/port-forward on :10250, authorizers other than
AlwaysAllow on :10250, CNI, eviction
on resource pressure, the kubelet's own config file beyond the fields named above.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import platform
import socket
import ssl
import sys
import threading
import time
from typing import Any

from . import kobj, release
from .common import (HTTPError, KubeClient, flags_for, load_kubeconfig, local_ip_towards, parse_duration, parse_flags,
                     pod_path, serve_healthz, setup_logging, version_requested)
from .docker_api import Docker, DockerError

log = logging.getLogger("standin")
Obj = dict[str, Any]

L_UID, L_NAME, L_NS, L_CNAME, L_RESTARTS = ("io.kubernetes.pod.uid", "io.kubernetes.pod.name",
                                              "io.kubernetes.pod.namespace", "io.kubernetes.container.name",
                                              "io.kubernetes.container.restartCount")
L_SOURCE = "io.kubernetes.pod.source"  # "file" (static manifest) or "api"
MIRROR = "kubernetes.io/config.mirror"

LAB_DEFAULTS = {"node-status-update-frequency": 5.0}
FLAGS = flags_for("kubelet", release.current(), LAB_DEFAULTS)
LEASE_NS = "kube-node-lease"
LEASE_DURATION = 40  # seconds; renewed every quarter of it (pkg/kubelet/nodelease, 1.18)
REPORT_FREQUENCY = 300.0  # nodeStatusReportFrequency default, 1.18


def _read_yaml(path: str, what: str) -> Any:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise SystemExit(f"kubelet: cannot read the {what} {path}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError:
        import yaml  # bundled in the image
        return yaml.safe_load(text)


def kubeconfig_server(path: str) -> str:
    """The server of a kubeconfig's current context (else of its first cluster)."""
    server = load_kubeconfig(path, "kubelet").server
    if not server:
        raise SystemExit(f"kubelet: invalid kubeconfig {path}: no cluster server")
    return server


DEFAULT_KUBECONFIG_1_1 = "/var/lib/kubelet/kubeconfig"


def _api_client_1_1(opts: dict[str, Any], out: dict[str, Any]) -> None:
    """1.1: the server from --api-servers, the credentials from --kubeconfig (see the docstring)."""
    path = opts["kubeconfig"]
    if not opts["api-servers"] or not path:
        return
    if not os.path.exists(path):
        if path != DEFAULT_KUBECONFIG_1_1:
            log.warning("No API client: cannot read the kubeconfig %s", path)
            out["api-servers"] = ""
        return
    server = opts["api-servers"].split(",")[0]
    out["api-tls"] = dataclasses.replace(load_kubeconfig(path, "kubelet"), server=server).tls()


def effective_options(opts: dict[str, Any], rel: release.Release) -> dict[str, Any]:
    """The release's command line read into what the stand-in needs (the 1.1 names)."""
    out = dict(opts)
    out.setdefault("node-ip", "")
    out["api-tls"] = None
    out["node-status-report-frequency"] = REPORT_FREQUENCY if rel.modern else float(opts["node-status-update-frequency"])
    if not rel.modern:
        _api_client_1_1(opts, out)
        return out
    kc = load_kubeconfig(opts["kubeconfig"], "kubelet") if opts["kubeconfig"] else None
    if kc is not None and not kc.server:
        raise SystemExit(f"kubelet: invalid kubeconfig {opts['kubeconfig']}: no cluster server")
    out["api-servers"] = kc.server if kc else ""
    out["api-tls"] = kc.tls() if kc else None
    out["allow-privileged"] = True
    out["config"] = opts["pod-manifest-path"]
    if opts["config"]:
        cfg = _read_yaml(opts["config"], "kubelet config file") or {}
        out["config"] = out["config"] or cfg.get("staticPodPath", "")
        for key, flag in (("nodeStatusUpdateFrequency", "node-status-update-frequency"),
                          ("nodeStatusReportFrequency", "node-status-report-frequency")):
            if cfg.get(key):
                out[flag] = parse_duration(str(cfg[key]))
    return out


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm"}.get(m, m)


def demux_docker_stream(raw: bytes) -> bytes:
    """Strip the 8-byte frame headers docker puts on the logs of a container without a TTY."""
    out, i = bytearray(), 0
    while i + 8 <= len(raw) and raw[i] in (0, 1, 2) and raw[i + 1:i + 4] == b"\0\0\0":
        size = int.from_bytes(raw[i + 4:i + 8], "big")
        out += raw[i + 8:i + 8 + size]
        i += 8 + size
    return bytes(out) if i == len(raw) else raw


def load_manifest(path: str) -> Obj | None:
    with open(path) as f:
        text = f.read()
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml  # bundled in the image; JSON manifests need nothing else
        doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or doc.get("kind", "Pod") != "Pod":
        raise ValueError("not a Pod manifest")
    return doc


def dt_micro() -> str:
    """metav1.MicroTime as the API serialises it (RFC 3339 with microseconds)."""
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _significant(status: Obj) -> Any:
    """A node status without its heartbeat times: what decides whether 1.18 re-posts it."""
    conds = sorted((c.get("type"), c.get("status"), c.get("reason")) for c in status.get("conditions") or [])
    return (conds, status.get("addresses"), status.get("nodeInfo"), status.get("capacity"))


class Kubelet:
    def __init__(self, opts: dict[str, Any], docker: Docker, rel: release.Release | None = None) -> None:
        self.rel = rel or release.current()
        opts = effective_options(opts, self.rel)
        self.opts = opts
        self.docker = docker
        servers = [s for s in opts["api-servers"].split(",") if s]
        self.api_url = servers[0] if servers else ""
        tls = opts.get("api-tls")
        self.kube = KubeClient(self.api_url, tls=tls) if self.api_url else None
        self.beat_kube = KubeClient(self.api_url, tls=tls) if self.api_url else None
        self.node_name = opts["hostname-override"] or socket.gethostname()
        self.node_ip = self._node_ip()
        self.registered = False
        # Like the real kubelet's "sources ready": until the apiserver has answered
        # once, containers of API pods it does not know yet are left alone (a whole
        # cluster powering up must not kill the workers' pods before the master is back).
        self.api_seen = self.kube is None
        self.static: dict[str, Obj] = {}  # uid -> pod
        self.api_pods: dict[str, Obj] = {}  # uid -> pod
        self.bad_manifests: dict[str, float] = {}
        self.last_status: dict[str, str] = {}
        self.last_exit: dict[str, float] = {}
        self.lock = threading.Lock()
        self.node_uid = ""
        self.last_report = 0.0

    def _node_ip(self) -> str:
        for cand in (self.opts["node-ip"], self.opts["hostname-override"]):
            try:
                return str(ipaddress.IPv4Address(cand))
            except ValueError:
                pass
        if self.api_url:
            from urllib.parse import urlsplit
            u = urlsplit(self.api_url)
            ip = local_ip_towards(u.hostname or "127.0.0.1", u.port or 8080)
            if ip and not ip.startswith("127."):
                return ip
        from .flanneld import choose_public_ip
        return choose_public_ip("", "")[0]

    # -- node --------------------------------------------------------------------
    def node_status(self, old: Obj | None) -> Obj:
        try:
            info = self.docker.info()
        except (OSError, DockerError):
            info = {}
        mem_kib = 0
        try:
            with open("/proc/meminfo") as f:
                mem_kib = int(f.readline().split()[1])
        except (OSError, ValueError, IndexError):
            pass
        cap = {"cpu": str(os.cpu_count() or 1), "memory": f"{mem_kib}Ki", "pods": "110"}
        stamp = kobj.now_rfc3339()
        status = copy.deepcopy((old or {}).get("status") or {})
        status.update({
            "capacity": cap, "allocatable": cap,
            "addresses": [{"type": "InternalIP", "address": self.node_ip}, {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.opts["port"]}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": info.get("KernelVersion", ""),
                         "osImage": info.get("OperatingSystem", ""), "containerRuntimeVersion":
                         f"docker://{info.get('ServerVersion', '')}", "kubeletVersion": self.rel.version,
                         "kubeProxyVersion": self.rel.version, "operatingSystem": "linux", "architecture": _arch()},
        })
        obj = {"status": status}
        kobj.set_condition(obj, {"type": "Ready", "status": "True", "reason": "KubeletReady",
                                 "message": "kubelet is posting ready status", "lastHeartbeatTime": stamp,
                                 "lastTransitionTime": stamp})
        return status

    def register(self) -> bool:
        assert self.beat_kube is not None
        arch = _arch()
        labels = {"kubernetes.io/hostname": self.node_name}
        if self.rel.modern:
            labels.update({"kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
                           "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch})
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": labels},
                "spec": {"externalID": self.node_name, **({} if self.opts["register-schedulable"] else {"unschedulable": True})},
                "status": self.node_status(None)}
        status, body = self.beat_kube.request("POST", "/api/v1/nodes", node)
        if status in (200, 201):
            log.info("registered node %s (%s)", self.node_name, self.node_ip)
        elif status == 409:
            log.info("node %s already registered; taking it over", self.node_name)
        else:
            log.warning("registering node %s failed: %s %s", self.node_name, status, body)
            return False
        self.registered = True
        self.heartbeat()
        return True

    def heartbeat(self) -> None:
        assert self.beat_kube is not None
        status, node = self.beat_kube.request("GET", f"/api/v1/nodes/{self.node_name}")
        if status == 404:
            log.error("node %s not found: it was deleted; not registering again until restarted", self.node_name)
            return
        if status != 200:
            raise HTTPError(status, node)
        self.node_uid = node["metadata"].get("uid", "")
        new = self.node_status(node)
        due = time.monotonic() - self.last_report >= float(self.opts["node-status-report-frequency"])
        if not due and _significant(new) == _significant(node.get("status") or {}):
            return  # 1.18: an unchanged status waits for nodeStatusReportFrequency
        node["status"] = new
        code, body = self.beat_kube.request("PUT", f"/api/v1/nodes/{self.node_name}/status", node)
        if code == 200:
            self.last_report = time.monotonic()
        else:
            log.warning("node status update failed: %s %s", code, body)

    def renew_lease(self) -> None:
        """1.18: create or renew kube-node-lease/<node> (what the NodeLease controller does)."""
        assert self.beat_kube is not None
        base = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases"
        now = dt_micro()
        status, lease = self.beat_kube.request("GET", f"{base}/{self.node_name}")
        if status == 404:
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": self.node_name, "namespace": LEASE_NS},
                     "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION,
                              "renewTime": now}}
            if self.node_uid:
                lease["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                                         "uid": self.node_uid}]
            code, body = self.beat_kube.request("POST", base, lease)
        elif status == 200:
            lease["spec"].update({"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION,
                                  "renewTime": now})
            code, body = self.beat_kube.request("PUT", f"{base}/{self.node_name}", lease)
        else:
            raise HTTPError(status, lease)
        if code not in (200, 201):
            log.warning("renewing lease %s/%s failed: %s %s", LEASE_NS, self.node_name, code, body)

    def heartbeat_loop(self) -> None:
        period = float(self.opts["node-status-update-frequency"])
        next_status = next_lease = 0.0
        while True:
            try:
                if not self.registered:
                    self.register()
                    next_status = time.monotonic() + period
                else:
                    if self.rel.node_leases and time.monotonic() >= next_lease:
                        next_lease = time.monotonic() + LEASE_DURATION / 4
                        self.renew_lease()
                    if time.monotonic() >= next_status:
                        next_status = time.monotonic() + period
                        self.heartbeat()
            except (HTTPError, OSError) as exc:
                log.info("apiserver %s not reachable yet: %s", self.api_url, exc)
            time.sleep(min(1.0, period))


    # -- desired pods ----------------------------------------------------------------
    def read_static(self) -> None:
        d = self.opts["config"]
        pods: dict[str, Obj] = {}
        if d and os.path.isdir(d):
            for fn in sorted(os.listdir(d)):
                path = os.path.join(d, fn)
                if fn.startswith(".") or not os.path.isfile(path):
                    continue
                try:
                    pod = load_manifest(path)
                except Exception as exc:  # noqa: BLE001 - a bad file is logged, the rest still run
                    mtime = os.path.getmtime(path)
                    if self.bad_manifests.get(path) != mtime:
                        self.bad_manifests[path] = mtime
                        log.warning("ignoring manifest %s: %s", path, exc)
                    continue
                assert pod is not None
                meta = pod.setdefault("metadata", {})
                meta.setdefault("namespace", "default")
                digest = hashlib.md5((json.dumps(pod, sort_keys=True) + self.node_name).encode()).hexdigest()
                meta["name"] = f"{meta.get('name', fn.split('.')[0])}-{self.node_name}"
                meta["uid"] = digest
                meta.setdefault("annotations", {}).update({
                    "kubernetes.io/config.hash": digest, MIRROR: digest, "kubernetes.io/config.source": "file"})
                pod.setdefault("spec", {})["nodeName"] = self.node_name
                pods[digest] = pod
        with self.lock:
            self.static = pods

    def read_api(self) -> list[Obj] | None:
        if self.kube is None:
            return None
        try:
            pods = self.kube.list("/api/v1/pods", fieldSelector=f"spec.nodeName={self.node_name}")
        except (HTTPError, OSError):
            return None
        self.api_seen = True
        with self.lock:
            self.api_pods = {p["metadata"]["uid"]: p for p in pods
                             if MIRROR not in (p["metadata"].get("annotations") or {}) and kobj.pod_active(p)}
        return pods

    # -- containers ------------------------------------------------------------------
    def ensure_image(self, image: str, policy: str) -> None:
        if policy == "Never":
            return
        if policy == "Always" or not self.docker.has_image(image):
            log.info("pulling %s", image)
            self.docker.pull(image)

    def volume_binds(self, pod: Obj, c: Obj) -> list[str]:
        vols = {v.get("name"): v for v in pod["spec"].get("volumes") or []}
        binds = []
        for m in c.get("volumeMounts") or []:
            v = vols.get(m.get("name"))
            if v is None:
                continue
            if "hostPath" in v:
                src = v["hostPath"]["path"]
            elif "emptyDir" in v:
                src = os.path.join(self.opts["root-dir"], "pods", pod["metadata"]["uid"], "volumes",
                                   "kubernetes.io~empty-dir", v["name"])
                os.makedirs(src, exist_ok=True)
            else:
                log.warning("pod %s: volume %s: only hostPath and emptyDir are supported", pod["metadata"]["name"], v.get("name"))
                continue
            binds.append(f"{src}:{m['mountPath']}" + (":ro" if m.get("readOnly") else ""))
        return binds

    def labels(self, pod: Obj, cname: str, restarts: int) -> dict[str, str]:
        m = pod["metadata"]
        source = "file" if MIRROR in (m.get("annotations") or {}) else "api"
        return {L_UID: m["uid"], L_NAME: m["name"], L_NS: m.get("namespace", "default"), L_CNAME: cname,
                L_RESTARTS: str(restarts), L_SOURCE: source}

    def cname(self, pod: Obj, c: str, attempt: int) -> str:
        m = pod["metadata"]
        return f"k8s_{c}_{m['name']}_{m.get('namespace', 'default')}_{m['uid']}_{attempt}"

    def start_infra(self, pod: Obj) -> str:
        image = self.opts["pod-infra-container-image"]
        self.ensure_image(image, "IfNotPresent")
        spec = pod["spec"]
        host = {"NetworkMode": "host" if spec.get("hostNetwork") else "bridge",
                "PidMode": "host" if spec.get("hostPID") else ""}
        cid = self.docker.create(self.cname(pod, "POD", 0), {
            "Image": image, "Labels": {**self.labels(pod, "POD", 0), "io.kubernetes.docker.type": "podsandbox"},
            "Hostname": pod["metadata"]["name"][:63] if not spec.get("hostNetwork") else None, "HostConfig": host})
        self.docker.start(cid)
        return cid

    def start_container(self, pod: Obj, c: Obj, infra: str, restarts: int) -> None:
        spec = pod["spec"]
        privileged = bool((c.get("securityContext") or {}).get("privileged"))
        if privileged and not self.opts["allow-privileged"]:
            raise DockerError(403, f"container {c['name']}: privileged mode needs --allow-privileged=true")
        self.ensure_image(c["image"], c.get("imagePullPolicy", "IfNotPresent"))
        host: Obj = {"NetworkMode": "host" if spec.get("hostNetwork") else f"container:{infra}",
                     "PidMode": "host" if spec.get("hostPID") else "", "Privileged": privileged,
                     "Binds": self.volume_binds(pod, c)}
        config: Obj = {"Image": c["image"], "Labels": {**self.labels(pod, c["name"], restarts),
                                                       "io.kubernetes.docker.type": "container"},
                       "Env": [f"{e['name']}={e.get('value', '')}" for e in c.get("env") or [] if "name" in e],
                       "HostConfig": host}
        if c.get("command"):
            config["Entrypoint"] = c["command"]
            config["Cmd"] = c.get("args") or []
        elif c.get("args"):
            config["Cmd"] = c["args"]
        if c.get("workingDir"):
            config["WorkingDir"] = c["workingDir"]
        cid = self.docker.create(self.cname(pod, c["name"], restarts), config)
        self.docker.start(cid)
        log.info("started container %s of pod %s/%s", c["name"], pod["metadata"].get("namespace"), pod["metadata"]["name"])

    def sync_pod(self, pod: Obj, existing: list[Obj]) -> None:
        by_name: dict[str, Obj] = {}
        for ctr in existing:
            name = ctr["Labels"].get(L_CNAME, "")
            old = by_name.get(name)
            if old is None or int(ctr["Labels"].get(L_RESTARTS, 0)) > int(old["Labels"].get(L_RESTARTS, 0)):
                if old is not None:
                    self.docker.remove(old["Id"])
                by_name[name] = ctr
            else:
                self.docker.remove(ctr["Id"])
        infra = by_name.get("POD")
        if infra is not None and infra["State"] != "running":
            log.info("pod %s: infra container died; recreating the pod's containers", pod["metadata"]["name"])
            for ctr in by_name.values():
                self.docker.remove(ctr["Id"])
            by_name, infra = {}, None
        infra_id = infra["Id"] if infra else self.start_infra(pod)
        policy = pod["spec"].get("restartPolicy", "Always")
        for c in pod["spec"].get("containers") or []:
            ctr = by_name.get(c["name"])
            if ctr is None:
                self.start_container(pod, c, infra_id, 0)
                continue
            if ctr["State"] in ("running", "created", "restarting"):
                continue
            code = self.exit_code(ctr)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                continue
            restarts = int(ctr["Labels"].get(L_RESTARTS, 0))
            first_seen = self.last_exit.setdefault(ctr["Id"], time.monotonic())
            if restarts > 0 and time.monotonic() - first_seen < 10:
                continue  # back-off
            self.docker.remove(ctr["Id"])
            self.last_exit.pop(ctr["Id"], None)
            self.start_container(pod, c, infra_id, restarts + 1)

    @staticmethod
    def exit_code(ctr: Obj) -> int:
        status = str(ctr.get("Status", ""))
        try:
            return int(status.split("(")[1].split(")")[0]) if "(" in status else 0
        except (IndexError, ValueError):
            return 1

    def sync(self) -> None:
        self.read_static()
        api_list = self.read_api()
        with self.lock:
            desired = {**self.api_pods, **self.static}
        containers = self.docker.containers(L_UID)
        by_pod: dict[str, list[Obj]] = {}
        for ctr in containers:
            by_pod.setdefault(ctr["Labels"][L_UID], []).append(ctr)
        for uid, ctrs in by_pod.items():
            if uid not in desired:
                if not self.api_seen and ctrs[0]["Labels"].get(L_SOURCE) != "file":
                    continue
                for ctr in ctrs:
                    self.docker.remove(ctr["Id"])
                log.info("removed containers of pod %s/%s (no longer wanted)", ctrs[0]["Labels"].get(L_NS),
                         ctrs[0]["Labels"].get(L_NAME))
        for uid, pod in desired.items():
            try:
                self.sync_pod(pod, by_pod.get(uid, []))
            except (DockerError, OSError) as exc:
                log.warning("pod %s/%s: %s", pod["metadata"].get("namespace"), pod["metadata"]["name"], exc)
        if api_list is not None:
            self.report(desired, api_list)

    # -- status ------------------------------------------------------------------------
    def pod_status(self, pod: Obj) -> Obj:
        ctrs = {c["Labels"].get(L_CNAME): c for c in self.docker.containers(f"{L_UID}={pod['metadata']['uid']}")}
        infra = ctrs.get("POD")
        ip = self.node_ip if pod["spec"].get("hostNetwork") else ""
        started = None
        if infra:
            details = self.docker.inspect(infra["Id"]) or {}
            started = (details.get("State") or {}).get("StartedAt", "")[:19] + "Z"
            if not ip:
                ip = ((details.get("NetworkSettings") or {}).get("IPAddress")) or ""
        statuses, running, done_ok, total = [], 0, 0, 0
        for c in pod["spec"].get("containers") or []:
            total += 1
            ctr = ctrs.get(c["name"])
            st: Obj = {"name": c["name"], "image": c["image"], "ready": False,
                       "restartCount": int(ctr["Labels"].get(L_RESTARTS, 0)) if ctr else 0,
                       "imageID": "", "started": False}
            if ctr is None:
                st["state"] = {"waiting": {"reason": "ContainerCreating"}}
            else:
                st["containerID"] = f"docker://{ctr['Id']}"
                st["imageID"] = f"docker-pullable://{ctr.get('Image', '')}"
                details = self.docker.inspect(ctr["Id"]) or {}
                state = details.get("State") or {}
                if state.get("Running"):
                    st["state"] = {"running": {"startedAt": state.get("StartedAt", "")[:19] + "Z"}}
                    st["ready"] = st["started"] = True
                    running += 1
                else:
                    code = int(state.get("ExitCode", 0))
                    done_ok += code == 0
                    st["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                                  "startedAt": state.get("StartedAt", "")[:19] + "Z",
                                                  "finishedAt": state.get("FinishedAt", "")[:19] + "Z"}}
            statuses.append(st)
        policy = pod["spec"].get("restartPolicy", "Always")
        if running == total and total:
            phase = "Running"
        elif policy != "Always" and done_ok == total and total:
            phase = "Succeeded"
        elif running:
            phase = "Running"
        elif policy == "Never" and len([s for s in statuses if "terminated" in s["state"]]) == total:
            phase = "Failed"
        else:
            phase = "Pending" if not infra else "Running" if any("terminated" in s["state"] for s in statuses) else "Pending"
        ready = running == total and total > 0
        stamp = kobj.now_rfc3339()
        out = {"phase": phase, "hostIP": self.node_ip, "podIP": ip or None, "startTime": started,
               "qosClass": "BestEffort", "containerStatuses": statuses, "conditions": []}
        if ip:
            out["podIPs"] = [{"ip": ip}]
        holder = {"status": {"conditions": copy.deepcopy((pod.get("status") or {}).get("conditions") or [])}}
        for ctype, ok in (("Initialized", True), ("Ready", ready), ("ContainersReady", ready), ("PodScheduled", True)):
            kobj.set_condition(holder, {"type": ctype, "status": "True" if ok else "False", "lastProbeTime": None,
                                        "lastTransitionTime": stamp})
        out["conditions"] = holder["status"]["conditions"]
        return out

    def report(self, desired: dict[str, Obj], api_list: list[Obj]) -> None:
        assert self.kube is not None
        in_api = {p["metadata"]["name"] + "/" + p["metadata"].get("namespace", ""): p for p in api_list}
        for p in api_list:
            mirror_of = (p["metadata"].get("annotations") or {}).get(MIRROR)
            if mirror_of and mirror_of not in self.static:
                self.kube.request("DELETE", pod_path(p))  # its manifest is gone (or changed)
                log.info("deleted mirror pod %s/%s", p["metadata"].get("namespace"), p["metadata"]["name"])
        for uid, pod in desired.items():
            key = pod["metadata"]["name"] + "/" + pod["metadata"].get("namespace", "")
            target = in_api.get(key)
            if uid in self.static:
                if target is not None and (target["metadata"].get("annotations") or {}).get(MIRROR) != uid:
                    self.kube.request("DELETE", pod_path(target))
                    target = None
                if target is None:
                    if not self.registered:
                        continue
                    mirror = copy.deepcopy(pod)
                    mirror["metadata"].pop("uid", None)
                    code, target = self.kube.request("POST", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods", mirror)
                    if code != 201:
                        continue
                    log.info("created mirror pod %s", key)
            if target is None or target["metadata"]["uid"] != uid and uid not in self.static:
                continue
            try:
                status = self.pod_status(pod)
            except (DockerError, OSError):
                continue
            # Keep conditions set by others (the node controller's NodeNotReady) out of the comparison.
            digest = json.dumps({k: v for k, v in status.items() if k != "conditions"}, sort_keys=True) + str(
                [(c["type"], c["status"]) for c in status["conditions"]])
            current = target.get("status") or {}
            cur_digest = json.dumps({k: v for k, v in current.items() if k in status and k != "conditions"},
                                    sort_keys=True) + str([(c.get("type"), c.get("status"))
                                                           for c in current.get("conditions") or []])
            if digest == cur_digest and self.last_status.get(uid) == digest:
                continue
            new = copy.deepcopy(target)
            new["status"] = {**current, **status}
            code, _ = self.kube.request("PUT", pod_path(target, "status"), new)
            if code == 200:
                self.last_status[uid] = digest

    def container_logs(self, path: str) -> tuple[int, Any] | None:
        """GET /containerLogs/<ns>/<pod>/<container>[?tailLines=N] (what the apiserver proxies)."""
        from urllib.parse import parse_qs, urlsplit
        u = urlsplit(path)
        parts = u.path.strip("/").split("/")
        if len(parts) != 4:
            return 404, b"expected /containerLogs/<namespace>/<pod>/<container>\n"
        _, ns, pod, cname = parts
        matches = [c for c in self.docker.containers(f"{L_NAME}={pod}")
                   if c["Labels"].get(L_NS) == ns and c["Labels"].get(L_CNAME) == cname]
        if not matches:
            return 404, f"container {cname} of pod {ns}/{pod} not found on this node\n".encode()
        ctr = max(matches, key=lambda c: int(c["Labels"].get(L_RESTARTS, 0)))
        query = {"stdout": "1", "stderr": "1"}
        tail = parse_qs(u.query).get("tailLines")
        if tail:
            query["tail"] = tail[0]
        status, raw = self.docker._request("GET", f"/containers/{ctr['Id']}/logs", query=query)
        if status != 200:
            return 500, raw
        return 200, demux_docker_stream(raw)

    def serve_kubelet_port(self, path: str) -> tuple[int, Any] | None:
        if path.startswith("/containerLogs/"):
            return self.container_logs(path)
        return self.pods_endpoint(path)

    def pods_endpoint(self, path: str) -> tuple[int, Any] | None:
        if path.split("?")[0] != "/pods":
            return None
        with self.lock:
            items = list(self.static.values()) + list(self.api_pods.values())
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}


def api_port_tls(opts: dict[str, Any], k: Kubelet) -> tuple[ssl.SSLContext, Any]:
    """The 10250 server's TLS and who it lets in. Its certificate: --tls-cert-file/-key, else
    a self-signed pair made once in --cert-dir (1.1 InitializeTLS, 1.18 the same). 1.1 only
    requests client certificates and checks none (tls.RequestClientCert): everyone is let
    in. 1.18: a client certificate from --client-ca-file authenticates; without one the
    request is anonymous, refused (401) under --anonymous-auth=false; the authorizer is
    AlwaysAllow (the flag's default)."""
    cert, key = opts["tls-cert-file"], opts["tls-private-key-file"]
    if not cert or not key:
        from . import selfsign
        cert, key = selfsign.ensure(opts["cert-dir"], k.node_name, [k.node_ip])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if not k.rel.modern:
        return ctx, None
    if opts["client-ca-file"]:
        ctx.load_verify_locations(cafile=opts["client-ca-file"])
        ctx.verify_mode = ssl.CERT_OPTIONAL
    if opts["anonymous-auth"]:
        return ctx, None
    return ctx, lambda conn: bool(opts["client-ca-file"] and conn.getpeercert())


def serve_ports(opts: dict[str, Any], k: Kubelet, docker_ok: Any) -> list[tuple[str, int]]:
    """The kubelet's listeners: healthz (plain, loopback), its API port (TLS) and, unless
    --read-only-port=0, the read-only one (plain, no authentication)."""
    tls, authenticated = api_port_tls(opts, k)
    serve_healthz(opts["healthz-bind-address"], opts["healthz-port"], docker_ok)
    serve_healthz(opts["address"], opts["port"], docker_ok, k.serve_kubelet_port, tls, authenticated)
    ports = [(opts["healthz-bind-address"], opts["healthz-port"]), (opts["address"], opts["port"])]
    if opts["read-only-port"]:  # 0: no read-only listener (startKubelet, 1.1 and 1.18)
        serve_healthz(opts["address"], opts["read-only-port"], docker_ok, k.pods_endpoint)
        ports.append((opts["address"], opts["read-only-port"]))
    return ports


def main(argv: list[str]) -> None:
    setup_logging("kubelet")
    rel = release.current()
    opts = parse_flags("kubelet", argv, flags_for("kubelet", rel, LAB_DEFAULTS))
    if version_requested(opts, rel):
        return
    docker = Docker(opts["docker-endpoint"])
    k = Kubelet(opts, docker, rel)
    log.info("kubelet stand-in: node %s (%s), api %s, manifests %s", k.node_name, k.node_ip,
             k.api_url or "none", k.opts["config"] or "none")

    def docker_ok() -> bool:
        try:
            docker.version()
            return True
        except (OSError, DockerError):
            return False

    serve_ports(opts, k, docker_ok)
    if k.kube is not None:
        threading.Thread(target=k.heartbeat_loop, daemon=True).start()
    while True:
        try:
            k.sync()
        except (DockerError, OSError, HTTPError) as exc:
            log.warning("sync failed: %s", exc)
        time.sleep(1.0)


if __name__ == "__main__":
    main(sys.argv[1:])
