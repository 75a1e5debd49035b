"""End to end on the lab: `piprov up` turns fresh HypriotOS-like nodes into the seed's cluster.

One 3-node lab for the module (pi1 = rpi-master), a mixed fleet: pi2 (rpi-node-1) holds a
HypriotOS 1.x card (/boot/device-init.yaml), the others 2016 ones (occidentalis.txt). The tests run in file
order and build on each other: cold up, workload, idempotent re-run, a one
value edit, then power events that the cluster must survive without piprov.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

from labkit import TESTDATA, LabCluster, wait_for

from piprov_lab.lab import Lab


class Cluster(LabCluster):
    fresh: dict[str, str]  # node -> node_state() as booted, before any piprov run
    fresh_names: dict[str, str]  # node -> its hostname where the OS keeps it (NAMES_SH), as booted

    def nodes_ready(self) -> dict[str, bool] | None:
        p = self.kubectl("get", "nodes", "-o", "json")
        if p.returncode != 0:
            return None
        out: dict[str, bool] = {}
        for n in json.loads(p.stdout)["items"]:
            conds = {c["type"]: c["status"] for c in n["status"].get("conditions", [])}
            out[n["metadata"]["name"]] = conds.get("Ready") == "True"
        return out

    def diagnose(self) -> str:
        """What each node runs, for a failure message."""
        lines = [f"kubernetes: {self.nodes_ready()}"]
        units = "docker-bootstrap k8s-etcd k8s-flannel docker k8s-master k8s-worker k8s-proxy"
        for n in self.lab.nodes:
            p = self.lab.exec(n.name, f"systemctl is-active {units} | tr '\\n' ' '; "
                              "systemctl list-jobs --no-legend | head -5; "
                              "journalctl -b --no-pager -o cat -n 8 -u k8s-worker -u k8s-master -u k8s-flannel",
                              check=False)
            lines.append(f"{n.name}: {p.stdout.strip()} {p.stderr.strip()}")
        return "\n".join(lines)

    def wait_all_ready(self, timeout: float) -> None:
        try:
            wait_for("every node Ready", self.all_ready, timeout, 2)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnose()}") from None

    def all_ready(self) -> bool:
        ready = self.nodes_ready() or {}
        return sorted(k for k, v in ready.items() if v) == sorted(n.ip for n in self.lab.nodes)


# What a reset must take a node back to, by kind: piprov's and the stack's units, files under the
# paths they use, interfaces, routes, iptables rules (counters left out), both daemons' containers.
STATE_SH = r"""
echo '# units'; systemctl list-unit-files --no-legend 2>/dev/null | awk '{print $1, $2}' \
  | grep -E 'docker|k8s|kube|flannel|etcd|piprov' | sort
systemctl list-units --all --no-legend --plain 2>/dev/null | awk '{print $1, $3, $4}' \
  | grep -E 'docker|k8s|kube|flannel|etcd|piprov' | sort
echo '# files'; find /etc/kubernetes /var/lib/kubelet /var/lib/kubernetes /var/lib/piprov /run/flannel \
  /var/run/docker /var/run/docker.sock /var/run/docker-bootstrap /var/run/docker-bootstrap.sock \
  /var/run/kubernetes /etc/systemd/system 2>/dev/null | sort
echo '# interfaces'; ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
echo '# routes'; ip -4 route show | sort
echo '# iptables'; for t in filter nat; do iptables-save -t $t | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//'; done
echo '# containers'; for d in /var/lib/docker/containers /var/lib/docker-bootstrap/containers; do ls -A $d 2>/dev/null; done
true
"""


# The running name and where HypriotOS keeps it: `reset --hostname` puts back what was booted.
NAMES_SH = ("hostname; cat /etc/hostname; echo; grep '^hostname=' /boot/occidentalis.txt; "
            "grep '^hostname' /boot/device-init.yaml; grep '^127.0.1.1' /etc/hosts")


def node_state(lab: Lab, node: str) -> str:
    return lab.exec(node, STATE_SH).stdout


@pytest.fixture(scope="module")
def cluster(lab_factory: Callable[..., Lab], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    lab = lab_factory("up", nodes=3, flavours=["hypriot-2016", "hypriot-1x", "hypriot-2016"])
    inv = tmp_path_factory.mktemp("up") / "inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    c = Cluster(lab, inv)
    c.fresh = {n.name: node_state(lab, n.name) for n in lab.nodes}
    c.fresh_names = {n.name: lab.exec(n.name, NAMES_SH).stdout for n in lab.nodes}
    yield c
    lab.down()


def _json(p: subprocess.CompletedProcess[str]) -> Any:
    assert p.stdout.strip(), p.stderr
    return json.loads(p.stdout)


def test_cold_up_builds_a_ready_cluster(cluster: Cluster) -> None:
    p = cluster.piprov("up", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    report = _json(p)
    assert report["ok"]
    assert {s["status"] for s in report["steps"]} == {"changed"}
    # It wrote every node's private keys, and said nothing of them.
    assert "PRIVATE" not in p.stdout + p.stderr and "BEGIN" not in p.stdout + p.stderr
    assert cluster.all_ready(), cluster.nodes_ready()
    # The hostnames were set the HypriotOS way, at once: each card's own file (pi2: 1.x's device-init.yaml).
    for node, name in zip(cluster.lab.nodes, ["rpi-master", "rpi-node-1", "rpi-node-2"]):
        occ = cluster.lab.exec(node.name, "cat /boot/occidentalis.txt /boot/device-init.yaml 2>/dev/null; hostname",
                               check=False).stdout
        kept = f'hostname: "{name}"' if node.name == "pi2" else f"hostname={name}"
        assert kept in occ and occ.strip().endswith(name), occ


def test_certificates_are_on_the_nodes_and_keys_are_private(cluster: Cluster) -> None:
    # The cluster PKI next to the inventory issued every node its certificates;
    # `up` put them in place: keys 0600 root, certificates 0644.
    for node, worker in zip(cluster.lab.nodes, [False, True, True]):
        p = cluster.lab.exec(node.name, "cd /etc/kubernetes/pki && stat -c '%n %a %U %G' *")
        got = dict(line.split(" ", 1) for line in p.stdout.splitlines())
        leaves = ["kubelet", "kubelet-serving", "kube-proxy", "flannel"]
        if not worker:
            leaves += ["etcd-server", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client"]
        assert got == {"ca.crt": "644 root root", **{f"{n}.crt": "644 root root" for n in leaves},
                       **{f"{n}.key": "600 root root" for n in leaves}}, p.stdout
    plan = cluster.piprov("plan", "--json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "PRIVATE" not in plan.stdout + plan.stderr and "BEGIN" not in plan.stdout + plan.stderr
    certs = cluster.piprov("certs", "--json")
    assert certs.returncode == 0, certs.stderr
    listed = {(c["node"], c["name"]) for c in _json(certs)["certificates"]}
    assert (None, "ca") in listed and ("rpi-master", "apiserver") in listed and ("rpi-node-2", "kubelet") in listed


def test_workload_runs_on_the_workers(cluster: Cluster) -> None:
    rc = (TESTDATA / "rc.yaml").read_text()
    rc = rc.replace("{{REGISTRY}}", cluster.lab.registry).replace("replicas: 3", "replicas: 2")
    p = cluster.kubectl("create", "-f", "-", input=rc)
    assert p.returncode == 0, p.stderr

    def running() -> list[dict[str, Any]] | None:
        pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=httpd", "-o", "json").stdout)["items"]
        up = [x for x in pods if x["status"].get("phase") == "Running" and x["status"].get("podIP")]
        return up if len(up) == 2 else None

    pods = wait_for("2 httpd pods running", running, 120)
    workers = {n.ip for n in cluster.lab.nodes[1:]}
    assert {x["spec"]["nodeName"] for x in pods} <= workers


def test_rerun_changes_nothing_with_one_round_trip_per_node(cluster: Cluster) -> None:
    before = {n.name: cluster.lab.exec(n.name, "systemctl show -p ActiveEnterTimestampMonotonic "
                                       "k8s-flannel.service docker.service k8s-proxy.service").stdout
              for n in cluster.lab.nodes}
    p = cluster.piprov("up", "--json")
    assert p.returncode == 0, p.stderr
    report = _json(p)
    assert report["changed"] is False
    assert report["round_trips"] == {"rpi-master": 1, "rpi-node-1": 1, "rpi-node-2": 1}
    after = {n.name: cluster.lab.exec(n.name, "systemctl show -p ActiveEnterTimestampMonotonic "
                                      "k8s-flannel.service docker.service k8s-proxy.service").stdout
             for n in cluster.lab.nodes}
    assert before == after  # nothing restarted
    assert cluster.piprov("plan").returncode == 0


def test_one_edited_value_changes_exactly_what_depends_on_it(cluster: Cluster) -> None:
    edit = cluster.piprov("inventory", "set", "images.hyperkube.tag", "v1.1.3")
    assert edit.returncode == 0, edit.stderr
    p = cluster.piprov("plan", "--json")
    assert p.returncode == 2, p.stderr
    plan = _json(p)
    touched = {(n["node"], c["component"]) for n in plan["nodes"] for c in n["components"] if c["changed"]}
    # The workers' images step pulls the new tag ahead of their kubelets (playbooks/: images).
    assert touched == {("rpi-master", "kube-master"), ("rpi-node-1", "kube-worker"), ("rpi-node-2", "kube-worker"),
                       ("rpi-node-1", "images"), ("rpi-node-2", "images")}
    restarts = {u for n in plan["nodes"] for c in n["components"] for u in c["restart"]}
    assert restarts == {"k8s-master.service", "k8s-worker.service", "k8s-proxy.service", "k8s-images.service"}
    for n in plan["nodes"]:
        for c in n["components"]:
            for f in c["files"]:
                diff = [ln for ln in f["diff"].splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
                assert diff and all("v1.1.2" in ln or "v1.1.3" in ln for ln in diff), f["diff"]
    etcd_pid = cluster.lab.exec("pi1", "systemctl show -p MainPID k8s-etcd.service").stdout
    up = cluster.piprov("up", "--json")
    assert up.returncode == 0, up.stderr[-3000:]
    changed = {(s["node"], s["component"]) for s in _json(up)["steps"] if s["status"] == "changed"}
    assert changed == touched
    assert cluster.lab.exec("pi1", "systemctl show -p MainPID k8s-etcd.service").stdout == etcd_pid
    assert cluster.all_ready()
    images = cluster.lab.exec("pi2", "docker ps --format '{{.Image}}'").stdout
    assert "hyperkube-amd64:v1.1.3" in images and "hyperkube-amd64:v1.1.2" not in images


def test_dockers_stock_dropin_is_drift_and_up_removes_it(cluster: Cluster) -> None:
    """Docker's install script on Raspbian writes docker.service.d/overlay.conf (ExecStart= and its
    own): the main daemon then runs without --bridge=cbr0 and every health gate passes. `plan` shows
    it, `up` removes it and restarts docker; a drop-in of the user's own (a proxy) stays. A daemon.json
    key that is one of piprov's flags stops the node's plan, naming file and key (issue 14)."""
    w = cluster.lab.nodes[2].name
    d = "/etc/systemd/system/docker.service.d"
    dockerd = cluster.lab.exec(w, "command -v dockerd").stdout.strip()
    # First a drop-in whose daemon cannot start: docker.socket still accepts, and
    # docker 20.10's `docker --version` pings the daemon behind it and waits for
    # ever; the facts read must not (it hung for piprov's 60 s limit once).
    cluster.lab.exec(w, f"mkdir -p {d} && printf '[Service]\\nExecStart=\\nExecStart=/nonexistent/dockerd\\n' "
                        f"> {d}/overlay.conf && systemctl daemon-reload && {{ systemctl restart docker.service || true; }}")
    p = cluster.piprov("plan", "--json")
    assert p.returncode == 2, p.stderr[-2000:]
    node = next(n for n in _json(p)["nodes"] if n["node"] == "rpi-node-2")
    assert any(c["component"] == "docker" and c["removed"] for c in node["components"]), node
    cluster.lab.exec(w, "systemctl reset-failed docker.service docker.socket; systemctl start docker.socket")
    cluster.lab.exec(w, f"mkdir -p {d} && printf '[Service]\\nExecStart=\\nExecStart={dockerd} -H fd://\\n' "
                        f"> {d}/overlay.conf && printf '[Service]\\nEnvironment=HTTP_PROXY=http://proxy:3128\\n' "
                        f"> {d}/http-proxy.conf && systemctl daemon-reload && systemctl restart docker.service")
    assert "--bridge=cbr0" not in cluster.lab.exec(w, "ps -o args= -C dockerd").stdout
    p = cluster.piprov("plan", "--json")
    assert p.returncode == 2, p.stderr[-2000:]
    node = next(n for n in _json(p)["nodes"] if n["node"] == "rpi-node-2")
    docker = next(c for c in node["components"] if c["component"] == "docker")
    assert [r["path"] for r in docker["removed"]] == [f"{d}/overlay.conf"], docker
    assert "docker.service" in docker["restart"]
    up = cluster.piprov("up")
    assert up.returncode == 0, up.stderr[-3000:]
    assert cluster.lab.exec(w, f"ls {d}").stdout.split() == ["http-proxy.conf"]
    args = cluster.lab.exec(w, "ps -o args= -C dockerd").stdout
    assert "--bridge=cbr0" in args, args
    env = cluster.lab.exec(w, "systemctl show -p Environment docker.service").stdout
    assert "HTTP_PROXY=http://proxy:3128" in env, env
    cluster.wait_all_ready(120)
    assert cluster.piprov("plan").returncode == 0
    # A daemon.json key that is also one of piprov's flags: named with file and key, nothing changed.
    # The lab's own daemon.json (its runc wrapper) stays: the key is added, then the file restored.
    original = cluster.lab.exec(w, "cat /etc/docker/daemon.json").stdout
    clash = dict(json.loads(original), bridge="docker0")
    cluster.lab.exec(w, "cat > /etc/docker/daemon.json", input=json.dumps(clash))
    try:
        p = cluster.piprov("up")
        text = " ".join(p.stderr.split())
        assert p.returncode == 1 and "rpi-node-2: /etc/docker/daemon.json: key 'bridge'" in text, p.stderr[-2000:]
        assert "docker.service --bridge=cbr0" in text
        assert cluster.lab.exec(w, "ps -o args= -C dockerd").stdout == args  # nothing restarted
    finally:
        cluster.lab.exec(w, "cat > /etc/docker/daemon.json", input=original)
    assert cluster.piprov("plan").returncode == 0


def test_what_piprov_no_longer_needs_is_removed_and_nothing_else(cluster: Cluster) -> None:
    """Each node keeps a record of what piprov manages there (/var/lib/piprov/owned). A unit and file
    the record names but no component wants any more (a component dropped from playbooks/) are listed
    by `plan` with the reason, then stopped, disabled and removed by `up`; a unit of the user's own,
    running next to them, is left alone; a second `up` changes nothing (issue 17)."""
    w = cluster.lab.nodes[1].name
    record = "/var/lib/piprov/owned"
    head = cluster.lab.exec(w, f"stat -c '%a %U %G' {record}; grep -c . {record}").stdout.split()
    assert head[:3] == ["644", "root", "root"] and int(head[3]) > 10, head
    unit = "[Unit]\nDescription=%s\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
    cluster.lab.exec(w, f"printf '{unit % 'old'}' > /etc/systemd/system/k8s-old.service && "
                        f"printf '{unit % 'mine'}' > /etc/systemd/system/users-own.service && "
                        "printf 'unit old-comp k8s-old.service\nfile old-comp /etc/systemd/system/k8s-old.service\n' "
                        f">> {record} && systemctl daemon-reload && "
                        "systemctl enable --now k8s-old.service users-own.service")
    p = cluster.piprov("plan", "--json")
    assert p.returncode == 2, p.stderr[-2000:]
    node = next(n for n in _json(p)["nodes"] if n["node"] == "rpi-node-1")
    removed = [(r["kind"], r["name"], r["reason"]) for r in node["owned"]["removed"]]
    why = "component removed: old-comp is no longer in playbooks/"
    assert removed == [("file", "/etc/systemd/system/k8s-old.service", why), ("unit", "k8s-old.service", why)]
    assert all(not n["owned"] for n in _json(p)["nodes"] if n["node"] != "rpi-node-1")
    up = cluster.piprov("up")
    assert up.returncode == 0, up.stderr[-3000:]
    state = cluster.lab.exec(w, "systemctl is-active k8s-old.service users-own.service; "
                                "ls /etc/systemd/system/k8s-old.service; "
                                f"grep -c old-comp {record}", check=False).stdout.split()
    assert state[:2] == ["inactive", "active"] and state[-1] == "0", state
    assert "k8s-old" not in cluster.lab.exec(w, "systemctl list-units --all --no-legend").stdout
    assert cluster.piprov("plan").returncode == 0
    cluster.lab.exec(w, "systemctl disable --now users-own.service && rm /etc/systemd/system/users-own.service "
                        "&& systemctl daemon-reload")


def test_inventory_labels_reach_the_node_and_go_when_removed(cluster: Cluster) -> None:
    """`up` PATCHes the inventory's labels onto the Node; a label it set and the inventory dropped
    goes; a label someone else set stays (issue 15)."""
    node = cluster.lab.nodes[1]
    before = cluster.inventory.read_text()
    assert cluster.kubectl("label", "node", node.ip, "team=ops").returncode == 0
    assert cluster.piprov("inventory", "set", "nodes.rpi-node-1.labels.shelf", "top").returncode == 0
    p = cluster.piprov("plan", "--json")
    assert p.returncode == 2, p.stderr
    assert _json(p)["labels"]["rpi-node-1"]["set"] == {"shelf": "top"}

    def labels() -> dict[str, str]:
        obj = json.loads(cluster.kubectl("get", "node", node.ip, "-o", "json").stdout)
        return dict(obj["metadata"].get("labels") or {})

    up = cluster.piprov("up")
    assert up.returncode == 0, up.stderr[-3000:]
    shown = cluster.kubectl("get", "nodes", "--show-labels").stdout
    assert "shelf=top" in next(ln for ln in shown.splitlines() if ln.startswith(node.ip)), shown
    assert cluster.piprov("plan").returncode == 0  # converged, labels included

    cluster.inventory.write_text(before)
    assert _json(cluster.piprov("plan", "--json"))["labels"]["rpi-node-1"]["remove"] == ["shelf"]
    up = cluster.piprov("up")
    assert up.returncode == 0, up.stderr[-3000:]
    got = labels()
    assert "shelf" not in got and got.get("team") == "ops", got
    shown = cluster.kubectl("get", "nodes", "--show-labels").stdout
    assert "shelf=top" not in shown and "team=ops" in shown, shown


def test_a_node_object_of_no_inventory_node_is_shown_and_left_alone(cluster: Cluster) -> None:
    """An orphan (a Node no inventory node registers as: a Pi dropped from the inventory by hand) is
    named by `plan` and `status` with the command that removes it; `up` does not remove it (issue 17)."""
    stray = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "10.9.9.9"}}
    assert cluster.kubectl("create", "-f", "-", input=json.dumps(stray)).returncode == 0
    try:
        p = cluster.piprov("plan", "--json")
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        assert [o["node"] for o in _json(p)["orphans"]] == ["10.9.9.9"]
        assert "kubectl delete node 10.9.9.9" in _json(p)["orphans"][0]["fix"]
        assert "orphan: Node 10.9.9.9" in " ".join(cluster.piprov("status").stderr.split())
        assert cluster.piprov("up").returncode == 0
        assert cluster.kubectl("get", "node", "10.9.9.9").returncode == 0
    finally:
        cluster.kubectl("delete", "node", "10.9.9.9")


def test_worker_power_cut_comes_back_without_piprov(cluster: Cluster) -> None:
    cluster.lab.kill("pi3")
    wait_for("pi3 NotReady", lambda: (cluster.nodes_ready() or {}).get(cluster.lab.nodes[2].ip) is False, 90)
    cluster.lab.start("pi3")
    cluster.wait_all_ready(180)


def test_every_node_rebooted_comes_back_without_piprov(cluster: Cluster) -> None:
    # All at once, as after a power failure of the whole shelf (but clean).
    with ThreadPoolExecutor() as pool:
        list(pool.map(cluster.lab.reboot, [n.name for n in cluster.lab.nodes]))
    cluster.wait_all_ready(240)
    # etcd kept its data: flannel's network config survived.
    got = cluster.lab.exec("pi1", cluster.lab.etcdctl + "get /coreos.com/network/config").stdout
    assert "10.0.0.0/16" in got
    # Ready comes from the kubelet; the rest of the units may still be settling
    # (systemd restarts what raced at boot). They converge without piprov.
    wait_for("every unit as planned", lambda: cluster.piprov("plan").returncode == 0, 120, 3)
    # Each card's boot put the inventory's name back, device-init.yaml's as occidentalis.txt's.
    names = {n.name: cluster.lab.exec(n.name, "hostname").stdout.strip() for n in cluster.lab.nodes}
    assert names == {"pi1": "rpi-master", "pi2": "rpi-node-1", "pi3": "rpi-node-2"}
    assert 'hostname: "rpi-node-1"' in cluster.lab.exec("pi2", "cat /boot/device-init.yaml").stdout


def test_unreachable_etcd_is_named_with_the_worker_and_flannel(cluster: Cluster) -> None:
    """A worker that cannot reach the master's etcd fails naming itself, flannel and the endpoint."""
    worker = cluster.lab.nodes[1]
    block = f"iptables -I OUTPUT -d {cluster.master_ip} -p tcp --dport 4001 -j REJECT"
    cluster.lab.exec(worker.name, block)
    try:
        # Make flannel restart on that worker: its config file is replaced.
        cluster.lab.exec(worker.name, "echo '# changed by hand' >> /etc/kubernetes/k8s.conf")
        p = cluster.piprov("up", "--health-timeout", "15", timeout=300)
        assert p.returncode == 1
        text = " ".join(p.stderr.split())
        assert "rpi-node-1 / flannel" in text, p.stderr
        assert f"https://{cluster.master_ip}:4001" in text, p.stderr
        assert "rpi-node-1 / docker" in text and "not started" in text
    finally:
        cluster.lab.exec(worker.name, block.replace("-I OUTPUT", "-D OUTPUT"))
    p = cluster.piprov("up")
    assert p.returncode == 0, p.stderr[-3000:]
    cluster.wait_all_ready(120)


def _same_as_fresh(cluster: Cluster, node: str, kept: tuple[str, ...] = ()) -> None:
    """``kept``: paths reset leaves by design (etcd's store without --wipe-data, the user's own drop-in),
    each with what is under it."""
    import difflib

    fresh = cluster.fresh[node]
    now = "\n".join(ln for ln in node_state(cluster.lab, node).splitlines()
                    if not any(ln == k or ln.startswith(k + "/") for k in kept))
    diff = "\n".join(difflib.unified_diff(fresh.splitlines(), now.splitlines(), "fresh", "reset", lineterm=""))
    assert not diff, f"{node} differs from its freshly booted self:\n{diff}"


def test_reset_a_worker_then_the_whole_cluster_leaves_fresh_nodes_and_up_rebuilds(cluster: Cluster) -> None:
    """`piprov reset rpi-node-2` drains it, resets it and deletes its Node while the rest runs; its
    audit finds nothing left, and the node is as it was freshly booted (units, files under the stack's
    paths, interfaces, routes, iptables, containers). `up` brings it back. Then the whole cluster:
    the same on every node; `up` rebuilds it, and the workload (kept in etcd) returns (issue 17)."""
    import time

    w = cluster.lab.nodes[2]
    t0 = time.monotonic()
    p = cluster.piprov("reset", "rpi-node-2", "--hostname", "--yes", "--json", timeout=600)
    took = {"reset of a worker (drain included)": time.monotonic() - t0}
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    got = _json(p)
    assert got["nodes"]["rpi-node-2"]["clean"] and not got["errors"], got
    assert got["nodes"]["rpi-node-2"]["hostname"] == "black-pearl"
    assert cluster.lab.exec(w.name, NAMES_SH).stdout == cluster.fresh_names[w.name]
    assert "black-pearl" in cluster.fresh_names[w.name]
    assert got["nodes"]["rpi-node-2"]["removed"].get("unit", 0) >= 8, got
    # The proxy drop-in of the drop-in test above is the user's own: piprov never wrote it, reset keeps it.
    user_dropin = "/etc/systemd/system/docker.service.d"
    assert cluster.lab.exec(w.name, f"ls {user_dropin}", check=False).stdout.split() in ([], ["http-proxy.conf"])
    _same_as_fresh(cluster, w.name, kept=(user_dropin,))
    ready = cluster.nodes_ready() or {}
    assert w.ip not in ready and sum(ready.values()) == 2, ready
    assert cluster.piprov("plan").returncode == 2
    t0 = time.monotonic()
    up = cluster.piprov("up")
    assert up.returncode == 0, up.stderr[-3000:]
    cluster.wait_all_ready(180)
    took["the worker back (up, Ready)"] = time.monotonic() - t0

    t0 = time.monotonic()
    p = cluster.piprov("reset", "--yes", "--json", timeout=600)
    took["reset of the whole cluster"] = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    got = _json(p)
    assert got["whole"] and all(n["clean"] for n in got["nodes"].values()) and len(got["nodes"]) == 3, got
    for n in cluster.lab.nodes:  # the master keeps etcd's store (and so the workload): no --wipe-data
        _same_as_fresh(cluster, n.name, kept=("/var/lib/kubernetes",) if n.name == "pi1" else (user_dropin,))
    t0 = time.monotonic()
    up = cluster.piprov("up")
    assert up.returncode == 0, up.stderr[-3000:]
    cluster.wait_all_ready(180)
    wait_for("the workload's pods back", lambda: "Running" in cluster.kubectl("get", "pods").stdout, 180, 3)
    took["the cluster rebuilt (up, every node Ready, a pod Running)"] = time.monotonic() - t0
    assert cluster.piprov("plan").returncode == 0
    for what, s in took.items():  # bench/faults.py --life collects these lines
        print(f"life: {what}: {s:.1f} s")


def test_check_fix_switches_a_worker_to_legacy_iptables_and_reboots_it_the_rolling_way(cluster: Cluster) -> None:
    """The lab's nodes run iptables on nf_tables (a warning of `check`): --fix picks the legacy backend and
    reboots the worker, drained first and uncordoned once Ready; the rest of the cluster keeps running."""
    before = cluster.lab.exec("pi3", "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    p = cluster.piprov("check", "--fix", "--yes", "--json", "rpi-node-2", timeout=400)
    report = _json(p)
    assert p.returncode == 0, p.stderr[-3000:]
    assert report["fix"]["rebooted"] == ["rpi-node-2"] and not report["fix"]["errors"], report["fix"]
    assert cluster.lab.exec("pi3", "cat /proc/sys/kernel/random/boot_id").stdout.strip() != before
    assert "legacy" in cluster.lab.exec("pi3", "iptables -V").stdout
    iptables = next(f for f in report["nodes"][0]["findings"] if f["code"] == "iptables")
    assert iptables["severity"] == "ok", iptables
    assert "draining" in p.stderr and "booted again" in p.stderr
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert not any(n["spec"].get("unschedulable") for n in nodes)  # uncordoned
    cluster.wait_all_ready(120)
    wait_for("every unit as planned", lambda: cluster.piprov("plan").returncode == 0, 120, 3)


def test_status_shows_a_daemon_that_systemd_revived(cluster: Cluster) -> None:
    """kill -9 of a worker's dockerd: systemd brings it back, `status` counts the restart.

    Last in the module: on units that do not heal their dependents, the kubelet
    may stay down after docker died; this test asserts only on docker.service.
    """
    worker = cluster.lab.nodes[1]
    props = "-p ActiveState -p MainPID -p NRestarts -p Result -p InactiveEnterTimestampMonotonic"

    def show() -> dict[str, str]:
        text = cluster.lab.exec(worker.name, f"systemctl show {props} docker.service").stdout
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    pid = show()["MainPID"]
    assert pid not in ("", "0")
    cluster.lab.exec(worker.name, f"kill -9 {pid}")
    try:
        wait_for("docker.service active again",
                 lambda: (lambda u: u["ActiveState"] == "active" and u["MainPID"] != pid)(show()), 120, 1)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{show()}\n{cluster.diagnose()}") from None
    p = cluster.piprov("status", "--json", timeout=120)
    row = next(n for n in _json(p)["nodes"] if n["node"] == "rpi-node-1")
    assert "units" in row, (row, show())
    docker = row["units"]["docker.service"]
    assert docker["active"] == "active", (docker, show())
    assert docker["restarts"] >= 1, (row["units"], show())
    ago = docker["last_failure_seconds_ago"]
    assert ago is not None and 0 <= ago < 150, (docker, show())
