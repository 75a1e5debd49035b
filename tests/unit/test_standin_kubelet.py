"""The kubelet stand-in's sync logic with an in-memory docker and the apiserver stand-in on loopback.

No root and no docker daemon: FakeDocker keeps containers in a dict and
answers the calls the kubelet makes of the Docker Engine API.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from piprov_lab.images import testsupport

testsupport.standins_on_path()
from standins import apiserver, kubelet  # noqa: E402
from standins.common import KubeClient  # noqa: E402
from standins.docker_api import DockerError  # noqa: E402

PAUSE = "reg:5000/google_containers/pause-amd64:2.0"

pytestmark = pytest.mark.skipif(testsupport.etcd_binary() is None, reason="etcd not installed (scripts/setup.sh)")


class FakeDocker:
    def __init__(self) -> None:
        self.containers_by_id: dict[str, dict[str, Any]] = {}
        self.images: set[str] = set()
        self.pulls: list[str] = []
        self.ids = itertools.count(1)
        self.ips = itertools.count(2)

    def info(self) -> dict[str, Any]:
        return {"OperatingSystem": "Debian GNU/Linux 12 (bookworm)", "KernelVersion": "6.1", "ServerVersion": "20.10.24"}

    def version(self) -> dict[str, Any]:
        return {"Version": "20.10.24"}

    def containers(self, label: str) -> list[dict[str, Any]]:
        key, _, value = label.partition("=")
        return [c for c in self.containers_by_id.values()
                if key in c["Labels"] and (not value or c["Labels"][key] == value)]

    def inspect(self, cid: str) -> dict[str, Any] | None:
        c = self.containers_by_id.get(cid)
        if c is None:
            return None
        running = c["State"] == "running"
        return {"State": {"Running": running, "ExitCode": c.get("exit", 0), "StartedAt": "2016-01-01T00:00:00.1Z",
                          "FinishedAt": "2016-01-01T00:00:01.1Z"},
                "NetworkSettings": {"IPAddress": c.get("ip", "")}}

    def has_image(self, image: str) -> bool:
        return image in self.images

    def pull(self, image: str) -> None:
        self.pulls.append(image)
        self.images.add(image)

    def create(self, name: str, config: dict[str, Any]) -> str:
        if any(c["Names"] == ["/" + name] for c in self.containers_by_id.values()):
            raise DockerError(409, f"name {name} in use")
        cid = f"c{next(self.ids)}"
        self.containers_by_id[cid] = {"Id": cid, "Names": ["/" + name], "Image": config["Image"],
                                      "Labels": dict(config["Labels"]), "State": "created", "Status": "Created",
                                      "config": config}
        return cid

    def start(self, cid: str) -> None:
        c = self.containers_by_id[cid]
        c["State"], c["Status"] = "running", "Up 1 second"
        if c["config"]["HostConfig"]["NetworkMode"] == "bridge":
            c["ip"] = f"10.0.5.{next(self.ips)}"

    def remove(self, cid: str) -> None:
        self.containers_by_id.pop(cid, None)

    def exit(self, cid: str, code: int) -> None:
        c = self.containers_by_id[cid]
        c["State"], c["Status"], c["exit"] = "exited", f"Exited ({code}) 1 second ago", code

    def by_cname(self, cname: str) -> list[dict[str, Any]]:
        return [c for c in self.containers_by_id.values() if c["Labels"].get(kubelet.L_CNAME) == cname]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("kubelet")
    etcd = testsupport.start_etcd(tmp / "etcd")
    opts = apiserver.parse_flags("apiserver", [f"--etcd-servers={etcd.url}", "--insecure-port=0"], apiserver.FLAGS)
    server = apiserver.serve(opts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    etcd.stop()


def make_kubelet(api: str, name: str, manifests: Path, docker: FakeDocker) -> kubelet.Kubelet:
    opts = kubelet.parse_flags("kubelet", [f"--api-servers={api}", f"--hostname-override={name}",
                                           f"--config={manifests}", f"--pod-infra-container-image={PAUSE}",
                                           "--allow-privileged=true", f"--root-dir={manifests.parent / 'root'}"],
                               kubelet.FLAGS)
    return kubelet.Kubelet(opts, docker)  # type: ignore[arg-type]


def test_static_pods_run_and_show_as_mirror_pods(api: str, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.json").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "kube-system"},
        "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "img:1", "command": ["/bin/x", "-a"]}]}}))
    (manifests / "side.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: side\nspec:\n"
                                         "  containers:\n  - name: s\n    image: img:2\n    args: [serve]\n")
    (manifests / "broken.yaml").write_text("kind: [unclosed\n")
    docker = FakeDocker()
    k = make_kubelet(api, "192.0.2.1", manifests, docker)
    assert k.node_ip == "192.0.2.1"
    k.sync()
    web = docker.by_cname("c")[0]
    assert web["config"]["HostConfig"]["NetworkMode"] == "host" and web["config"]["Entrypoint"] == ["/bin/x", "-a"]
    assert web["Labels"][kubelet.L_SOURCE] == "file"
    side = docker.by_cname("s")[0]
    infra = [c for c in docker.by_cname("POD") if c["Labels"][kubelet.L_NAME] == "side-192.0.2.1"][0]
    assert side["config"]["HostConfig"]["NetworkMode"] == f"container:{infra['Id']}"
    assert side["config"]["Cmd"] == ["serve"] and "Entrypoint" not in side["config"]
    assert PAUSE in docker.pulls
    assert k.register()
    k.sync()
    kube = KubeClient(api)
    mirror = kube.call("GET", "/api/v1/namespaces/kube-system/pods/web-192.0.2.1")
    assert mirror["metadata"]["annotations"][kubelet.MIRROR] and mirror["spec"]["nodeName"] == "192.0.2.1"
    assert mirror["status"]["phase"] == "Running" and mirror["status"]["podIP"] == "192.0.2.1"
    node = kube.call("GET", "/api/v1/nodes/192.0.2.1")
    assert {"type": "InternalIP", "address": "192.0.2.1"} in node["status"]["addresses"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.1.2"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "192.0.2.1"
    # The manifest goes away: its containers and its mirror pod follow.
    (manifests / "web.json").unlink()
    k.sync()
    assert docker.by_cname("c") == []
    assert kube.request("GET", "/api/v1/namespaces/kube-system/pods/web-192.0.2.1")[0] == 404


def test_api_pods_run_report_status_restart_and_go(api: str, tmp_path: Path) -> None:
    docker = FakeDocker()
    k = make_kubelet(api, "node-b", tmp_path / "none", docker)
    assert k.register()
    kube = KubeClient(api)
    kube.call("POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": "app"},
        "spec": {"nodeName": "node-b", "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/srv"}}],
                 "containers": [{"name": "main", "image": "busybox:1", "env": [{"name": "A", "value": "1"}],
                                 "volumeMounts": [{"name": "scratch", "mountPath": "/tmp/s"},
                                                  {"name": "h", "mountPath": "/srv", "readOnly": True}]}]}})
    k.sync()
    main = docker.by_cname("main")[0]
    assert main["config"]["Env"] == ["A=1"]
    binds = main["config"]["HostConfig"]["Binds"]
    assert binds[1] == "/srv:/srv:ro" and binds[0].endswith(":/tmp/s") and Path(binds[0].split(":")[0]).is_dir()
    pod = kube.call("GET", "/api/v1/namespaces/default/pods/app")
    assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"].startswith("10.0.5.")
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
    assert pod["status"]["containerStatuses"][0]["containerID"] == f"docker://{main['Id']}"
    # The container dies: restartPolicy Always replaces it, counting the restart.
    docker.exit(main["Id"], 1)
    k.sync()
    again = docker.by_cname("main")
    assert len(again) == 1 and again[0]["Labels"][kubelet.L_RESTARTS] == "1"
    k.sync()
    pod = kube.call("GET", "/api/v1/namespaces/default/pods/app")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 1
    # Deleted in the API (evicted, drained): its containers are removed.
    kube.call("DELETE", "/api/v1/namespaces/default/pods/app")
    k.sync()
    assert docker.by_cname("main") == [] and docker.by_cname("POD") == []


def test_pods_survive_until_the_apiserver_has_answered_once(tmp_path: Path) -> None:
    """A worker powering up before its master must not kill the pods it ran."""
    docker = FakeDocker()
    survivor = docker.create("k8s_main_app_default_u1_0", {"Image": "i", "Labels": {
        kubelet.L_UID: "u1", kubelet.L_NAME: "app", kubelet.L_NS: "default", kubelet.L_CNAME: "main",
        kubelet.L_RESTARTS: "0", kubelet.L_SOURCE: "api"}, "HostConfig": {"NetworkMode": "bridge"}})
    stale_static = docker.create("k8s_x_old_default_u2_0", {"Image": "i", "Labels": {
        kubelet.L_UID: "u2", kubelet.L_NAME: "old", kubelet.L_NS: "default", kubelet.L_CNAME: "x",
        kubelet.L_RESTARTS: "0", kubelet.L_SOURCE: "file"}, "HostConfig": {"NetworkMode": "host"}})
    k = make_kubelet(f"http://127.0.0.1:{testsupport.free_port()}", "node-c", tmp_path / "none", docker)
    k.sync()
    assert survivor in docker.containers_by_id, "kept while the apiserver is unknown"
    assert stale_static not in docker.containers_by_id, "a static pod whose manifest is gone goes at once"


def test_privileged_needs_allow_privileged(api: str, tmp_path: Path) -> None:
    docker = FakeDocker()
    opts = kubelet.parse_flags("kubelet", ["--hostname-override=n-d", f"--root-dir={tmp_path}"], kubelet.FLAGS)
    k = kubelet.Kubelet(opts, docker)  # type: ignore[arg-type]
    pod = {"metadata": {"name": "p", "uid": "u", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": True}}]}}
    with pytest.raises(DockerError, match="allow-privileged"):
        k.start_container(pod, pod["spec"]["containers"][0], "infra", 0)


def test_docker_log_stream_is_demultiplexed() -> None:
    frames = b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n" + b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    assert kubelet.demux_docker_stream(frames) == b"hello\nerr\n"
    assert kubelet.demux_docker_stream(b"plain tty output\n") == b"plain tty output\n"
