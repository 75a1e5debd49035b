"""Both lab profiles end to end (issue #13 "Done when"): `piprov up` -> every node Ready,
the seed's workload running, then `piprov node drain` of a worker as kubectl drain of
that release would; first, the images of the profile behave as their versions.

One 3-node lab per profile (`piprov lab up --profile`), tests in file order. The
first two tests need only the lab's images; the rest need the whole of #13 (version-
aware units, stand-ins of the version, drain per version).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from labkit import LabCluster, create_workload, wait_for

from piprov.backup import verify_backup
from piprov_lab.images import profile_images
from piprov_lab.images.testsupport import free_port
from piprov_lab.lab import Lab

# Before `piprov up` a fresh node runs no docker daemon: the image checks use one of their own.
SOCK = "/var/run/docker-prof.sock"
DOCKER = f"docker -H unix://{SOCK}"


class Cluster(LabCluster):
    profile: str = "seed"

    def json(self, *args: str) -> Any:
        p = self.kubectl(*args, "-o", "json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def image(self, component: str) -> str:
        repo, tag = profile_images(self.profile)[component]
        return f"{self.lab.registry}/{repo}:{tag}"

    def sh(self, node: str, cmd: str, check: bool = True) -> Any:
        return self.lab.exec(node, cmd, check=check)

    def ready(self) -> bool:
        p = self.kubectl("get", "nodes", "-o", "json")
        if p.returncode != 0:
            return False
        ready = {n["metadata"]["name"] for n in json.loads(p.stdout)["items"]
                 if {c["type"]: c["status"] for c in n["status"].get("conditions", [])}.get("Ready") == "True"}
        return ready == {n.ip for n in self.lab.nodes}


@pytest.fixture(scope="module", params=["seed", "last-hyperkube"])
def cluster(request: pytest.FixtureRequest, lab_factory: Callable[..., Lab],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    profile = str(request.param)
    lab = lab_factory(f"prof-{profile[:4]}", nodes=3, profile=profile)
    inv = tmp_path_factory.mktemp(profile) / "inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    c = Cluster(lab, inv)
    c.profile = profile
    yield c
    lab.down()


# -- what only the lab's images decide ---------------------------------------------------------

def test_inventory_and_registry_carry_the_profile_tags(cluster: Cluster) -> None:
    inv = cluster.inventory.read_text()
    for comp, (repo, tag) in profile_images(cluster.profile).items():
        short = repo.removesuffix("-amd64")  # google_containers/etcd: the node adds -<arch>
        assert f'{comp + ":":<10} {{repository: {short}, tag: "{tag}"}}' in inv, inv
        req = urllib.request.Request(f"http://{cluster.lab.registry}/v2/{repo}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as r:
            assert r.status == 200


def test_etcd_and_flanneld_of_the_profile_behave_as_their_versions(cluster: Cluster) -> None:
    """On the master's main daemon, before piprov: etcd of the profile, a v2 key, flanneld's lease."""
    m, ip = cluster.lab.nodes[0].name, cluster.lab.nodes[0].ip
    etcd, flannel = cluster.image("etcd"), cluster.image("flannel")
    cluster.sh(m, f"systemd-run --unit=prof-docker --collect dockerd -H unix://{SOCK} -p /var/run/docker-prof.pid "
                  "--data-root=/var/lib/docker-prof --exec-root=/var/run/docker-prof --iptables=false "
                  f"--ip-masq=false --bridge=none --insecure-registry={cluster.lab.registry}")
    wait_for("a docker daemon", lambda: cluster.sh(m, f"{DOCKER} version", check=False).returncode == 0 or None, 30, 0.2)
    args = (f"--name=etcd --data-dir=/var/etcd/data --listen-client-urls=http://0.0.0.0:14001 "
            f"--advertise-client-urls=http://{ip}:14001 --listen-peer-urls=http://127.0.0.1:17001 "
            "--initial-advertise-peer-urls=http://127.0.0.1:17001 --initial-cluster=etcd=http://127.0.0.1:17001")
    if cluster.profile == "seed":
        p = cluster.sh(m, f"{DOCKER} run --rm {etcd} /usr/local/bin/etcd {args} --enable-v2=true", check=False)
        assert p.returncode == 2 and "flag provided but not defined: -enable-v2" in p.stderr, p.stderr
    extra = "" if cluster.profile == "seed" else " --enable-v2=true"
    cluster.sh(m, f"{DOCKER} run -d --name prof-etcd --net=host {etcd} /usr/local/bin/etcd {args}{extra}")
    try:
        version = wait_for("etcd /version", lambda: _get_json(f"http://{ip}:14001/version"), 60, 0.5)
        want = "2.1.1" if cluster.profile == "seed" else "3.4.23"
        assert version["etcdserver"] == want
        cfg = '{"Network": "10.0.0.0/16", "SubnetLen": 24, "Backend": {"Type": "host-gw"}}'
        ctl = ("etcdctl --peers=http://127.0.0.1:14001" if cluster.profile == "seed"
               else "env ETCDCTL_API=2 etcdctl --endpoints=http://127.0.0.1:14001")
        cluster.sh(m, f"{DOCKER} exec prof-etcd {ctl} set /coreos.com/network/config '{cfg}'")
        got = cluster.sh(m, f"{DOCKER} exec prof-etcd {ctl} get /coreos.com/network/config").stdout
        assert json.loads(got)["Network"] == "10.0.0.0/16"
        fl = (f"{DOCKER} run --rm --net=host --privileged -v /tmp/prof-flannel:/run/flannel {flannel} "
              f"/opt/bin/flanneld --etcd-endpoints=http://{ip}:14001")
        if cluster.profile == "last-hyperkube":  # v0.12.0 exits 1 when --iface is not an address
            p = cluster.sh(m, f"timeout 20 {fl} --iface=198.51.100.77", check=False)
            assert p.returncode == 1 and "Failed to find interface to use" in p.stderr, p.stderr
        cluster.sh(m, f"{DOCKER} run -d --name prof-flannel --net=host --privileged -v /tmp/prof-flannel:/run/flannel "
                      f"{flannel} /opt/bin/flanneld --etcd-endpoints=http://{ip}:14001 --iface={ip} --ip-masq")
        env = wait_for("subnet.env", lambda: cluster.sh(m, "cat /tmp/prof-flannel/subnet.env", check=False).stdout
                       or None, 30, 0.5)
        assert "FLANNEL_NETWORK=10.0.0.0/16" in env and "FLANNEL_IPMASQ=true" in env, env
    finally:
        cluster.sh(m, f"{DOCKER} rm -f prof-flannel prof-etcd; systemctl stop prof-docker; "
                      "rm -rf /tmp/prof-flannel /var/lib/docker-prof /var/run/docker-prof", check=False)


def _get_json(url: str) -> Any:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


# -- the whole of #13 --------------------------------------------------------------------------

def test_up_makes_every_node_ready_and_runs_the_workload(cluster: Cluster) -> None:
    p = cluster.piprov("up", timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    wait_for("every node Ready", cluster.ready, 180, 2)
    create_workload(cluster, 2, budget=None)
    wait_for("2 httpd pods running", lambda: len(_running(cluster, "app=httpd")) == 2 or None, 180)


def _etcd_on(data_dir: Path, *extra: str) -> tuple[str, "subprocess.Popen[bytes]"]:
    """The controller's etcd (3.4) started on ``data_dir``: what a restore would start from."""
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    proc = subprocess.Popen(
        ["etcd", "--name=restore", f"--data-dir={data_dir}", "--enable-v2=true", *extra,
         f"--listen-client-urls={url}", f"--advertise-client-urls={url}", f"--listen-peer-urls=http://127.0.0.1:{peer}",
         f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}", f"--initial-cluster=restore=http://127.0.0.1:{peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("etcd on the backup", lambda: _get_json(url + "/v2/keys/"), 30, 0.2)
    return url, proc


def test_backup_holds_the_v2_keys_and_the_apiservers_objects(cluster: Cluster, tmp_path: Path) -> None:
    """`piprov backup`: a 0600 file whose manifest verifies; etcd started on its v2 part (--force-new-cluster)
    serves flannel's config and leases and the apiserver's /registry (the lab's stand-in apiserver keeps
    v2 keys for 1.18 too: piprov_lab/images/standins/apistore.py); on 3.x its v3 snapshot restores
    to a v3 key put just before (a real 1.18 apiserver's objects live there)."""
    out = tmp_path / "cluster.tar.gz"
    master = cluster.lab.nodes[0]
    v3ctl = (f"docker -H unix:///var/run/docker-bootstrap.sock exec k8s-etcd env ETCDCTL_API=3 etcdctl "
             f"--endpoints=https://{master.ip}:4001 --cacert=/etc/kubernetes/pki/ca.crt "
             "--cert=/etc/kubernetes/pki/apiserver-etcd-client.crt --key=/etc/kubernetes/pki/apiserver-etcd-client.key")
    if cluster.profile != "seed":
        cluster.sh(master.name, f"{v3ctl} put /piprov-lab/v3-key kept")
    p = cluster.piprov("backup", "-o", str(out), "--json", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout)
    assert report["file"] == str(out) and out.stat().st_mode & 0o777 == 0o600
    assert cluster.piprov("backup", "--verify", str(out)).returncode == 0
    m = report["manifest"]
    assert m["etcd"]["version"] == ("2.1.1" if cluster.profile == "seed" else "3.4.23")
    assert m["etcd"]["stores"] == (["v2"] if m["etcd"]["line"] == "2.x" else ["v2", "v3"])
    assert m["checksum"] == verify_backup(out.read_bytes()).checksum
    # Nothing left on the master: the temp dir under etcd's data dir is gone.
    left = cluster.sh(master.name, "ls /var/lib/kubernetes/etcd").stdout.split()
    assert not [x for x in left if x.startswith("piprov-backup")], left
    if cluster.profile != "seed":
        cluster.sh(master.name, f"{v3ctl} del /piprov-lab/v3-key")
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "x")
    url, proc = _etcd_on(tmp_path / "x" / "etcd" / "v2", "--force-new-cluster")
    try:
        net = _get_json(url + "/v2/keys/coreos.com/network/config")
        assert net and json.loads(net["node"]["value"])["Network"], net
        leases = _get_json(url + "/v2/keys/coreos.com/network/subnets")
        assert len(leases["node"]["nodes"]) == 3, leases
        rcs = _get_json(url + "/v2/keys/registry/controllers/default")
        assert rcs and any(n["key"].endswith("/httpd") for n in rcs["node"]["nodes"]), rcs
    finally:
        proc.kill()
        proc.wait()
    if "v3" in m["etcd"]["stores"]:
        restored = tmp_path / "v3"
        env = dict(os.environ, ETCDCTL_API="3")
        subprocess.run(["etcdctl", "snapshot", "restore", str(tmp_path / "x" / "etcd" / "v3.db"),
                        f"--data-dir={restored}"], env=env, check=True, capture_output=True, timeout=60)
        url, proc = _etcd_on(restored)
        try:
            got = subprocess.run(["etcdctl", f"--endpoints={url}", "get", "/piprov-lab/v3-key", "--print-value-only"],
                                 env=env, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
            assert got == "kept", got
        finally:
            proc.kill()
            proc.wait()


KEPT = "/var/lib/piprov/backups"
TIMER_FILES = ("/etc/systemd/system/k8s-etcd-backup.timer", "/etc/systemd/system/k8s-etcd-backup.service",
               "/var/lib/piprov/etcd-backup.sh", "/var/lib/piprov/etcd-backup-take.sh")


def test_the_backup_timer_keeps_the_newest_and_goes_with_its_setting(cluster: Cluster, tmp_path: Path) -> None:
    """`backup: {every, keep: 2}`: `up` installs the master's timer; three runs of its service keep two
    whole backups; `piprov backup --fetch` copies the newest as a file `--verify` accepts; without
    `backup:`, `plan` lists the timer's units and files as removals, `up` removes them, `plan` is then
    a no-op. The seed lab only: the script per etcd line is `piprov backup`'s, tested above and in
    tests/unit/test_backup_timer.py."""
    if cluster.profile != "seed":
        pytest.skip("the seed lab runs it (CI time); the per-line script is piprov backup's")
    master = cluster.lab.nodes[0].name
    plain = cluster.inventory.read_text()
    cluster.inventory.write_text(plain + "\nbackup:\n  every: 6h\n  keep: 2\n")
    try:
        p = cluster.piprov("up", timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        assert cluster.sh(master, "systemctl is-active k8s-etcd-backup.timer").stdout.strip() == "active"
        for _ in range(3):
            cluster.sh(master, "sleep 1; systemctl start k8s-etcd-backup.service")
        kept = sorted(cluster.sh(master, f"ls {KEPT}").stdout.split())
        assert len(kept) == 2 and all(len(k) == 16 and k.endswith("Z") for k in kept), kept
        out = tmp_path / "fetched.tar.gz"
        p = cluster.piprov("backup", "--fetch", "-o", str(out), "--json", timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        m = json.loads(p.stdout)["manifest"]
        assert out.stat().st_mode & 0o777 == 0o600
        assert m["created"].replace("-", "").replace(":", "") == kept[-1]
        assert cluster.piprov("backup", "--verify", str(out)).returncode == 0
    finally:
        cluster.inventory.write_text(plain)
    p = cluster.piprov("plan", "--json")
    assert p.returncode == 2, p.stderr[-2000:]
    assert "k8s-etcd-backup.timer" in p.stdout and "switched off" in p.stdout
    p = cluster.piprov("up", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    left = cluster.sh(master, f"ls -d {' '.join(TIMER_FILES)} 2>/dev/null; true").stdout.split()
    assert left == [], left
    assert cluster.sh(master, "systemctl is-active k8s-etcd-backup.timer", check=False).stdout.strip() != "active"
    # The kept backups stay, as etcd's data does (reset --wipe-data removes them).
    assert sorted(cluster.sh(master, f"ls {KEPT}").stdout.split()) == kept
    p = cluster.piprov("plan")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]


def _subnet(c: Cluster, node: str) -> str:
    env = c.sh(node, "cat /run/flannel/subnet.env").stdout
    return next(ln.split("=", 1)[1] for ln in env.splitlines() if ln.startswith("FLANNEL_SUBNET="))


def _httpd_back(c: Cluster, by_ip: dict[str, str]) -> list[dict[str, Any]] | None:
    """2 httpd pods Running whose containers really run on their nodes (a status restored from the
    backup alone would read Running too)."""
    pods = _running(c, "app=httpd")
    if len(pods) != 2:
        return None
    for pod in pods:
        names = c.sh(by_ip[pod["spec"]["nodeName"]], "docker ps --format '{{.Names}}'", check=False).stdout
        if not any(n.startswith("k8s_httpd") and pod["metadata"]["name"] in n for n in names.split()):
            return None
    return pods


def test_restore_onto_a_reflashed_master_brings_the_cluster_and_workload_back(cluster: Cluster,
                                                                             tmp_path: Path) -> None:
    """Issue 17: the workload runs, `piprov backup`, the master's card re-flashed (`lab replace`),
    `node forget-key` + `piprov restore FILE --yes --trust-new-hosts`: every node Ready, the RC and its
    pods back, the workers (never re-flashed) on their flannel subnets; then `piprov up` changes nothing."""
    if cluster.profile != "seed":
        pytest.skip("piprov restore restores etcd 2.x's v2 store only (a 3.x backup is refused)")
    master, workers = cluster.lab.nodes[0], cluster.lab.nodes[1:]
    by_ip = {n.ip: n.name for n in cluster.lab.nodes}
    wait_for("the workload", lambda: _httpd_back(cluster, by_ip), 180, 2)
    subnets = {w.name: _subnet(cluster, w.name) for w in workers}
    out = tmp_path / "before-reflash.tar.gz"
    p = cluster.piprov("backup", "-o", str(out), timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    t0 = time.monotonic()
    cluster.lab.replace(master.name)
    assert "k8s-etcd" not in cluster.sh(master.name, "ls /etc/systemd/system").stdout
    p = cluster.piprov("node", "forget-key", master.inventory_name)
    assert p.returncode == 0, p.stderr
    p = cluster.piprov("restore", str(out), "--yes", "--trust-new-hosts", "--json", timeout=1200)
    assert p.returncode == 0, p.stderr[-4000:]
    report = json.loads(p.stdout)
    assert [s["step"] for s in report["steps"]] == ["verify", "bootstrap", "etcd", "up"] and report["ok"]
    wait_for("every node Ready", cluster.ready, 300, 2)
    rc = cluster.json("get", "rc", "httpd")
    assert rc["spec"]["replicas"] == 2
    wait_for("2 httpd pods back, their containers running", lambda: _httpd_back(cluster, by_ip), 300, 2)
    took = time.monotonic() - t0
    steps = ", ".join(f"{s['step']} {s['seconds']} s" for s in report["steps"])
    print(f"life: {cluster.profile}: master re-flashed -> every node Ready, workload back: {took:.1f} s ({steps})")
    assert {w.name: _subnet(cluster, w.name) for w in workers} == subnets
    assert cluster.piprov("plan").returncode == 0, "piprov up would change something after the restore"
    again = cluster.piprov("up", timeout=300)
    assert again.returncode == 0 and "nothing" in again.stderr, again.stderr[-3000:]


def test_seed_has_no_eviction_and_no_policy_group(cluster: Cluster) -> None:
    if cluster.profile != "seed":
        pytest.skip("Kubernetes 1.1 only")
    pod = _running(cluster, "app=httpd")[0]["metadata"]["name"]
    body = json.dumps({"apiVersion": "policy/v1beta1", "kind": "Eviction",
                       "metadata": {"name": pod, "namespace": "default"}}).encode()
    for method, path, data in (("POST", f"/api/v1/namespaces/default/pods/{pod}/eviction", body),
                               ("GET", "/apis/policy", None)):
        req = urllib.request.Request(cluster.api + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            cluster.urlopen(req, timeout=10)
        assert e.value.code == 404, f"{method} {path}"


def _running(c: Cluster, selector: str) -> list[dict[str, Any]]:
    pods = c.json("get", "pods", "-l", selector)["items"]
    return [x for x in pods if x["status"].get("phase") == "Running" and x["status"].get("podIP")]


def _manifest(c: Cluster, kind: str, node: str) -> str:
    img = f"{c.lab.registry}/google_containers/busybox-amd64:1.35"
    spec = {"containers": [{"name": "sleep", "image": img, "command": ["/bin/sh", "-c", "sleep 100000"]}]}
    if kind == "pod":
        return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "loner", "labels": {"app": "loner"}},
                           "spec": {**spec, "nodeName": node}})
    if kind == "rc":
        return json.dumps({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "pair"},
                           "spec": {"replicas": 2, "selector": {"app": "pair"},
                                    "template": {"metadata": {"labels": {"app": "pair"}}, "spec": spec}}})
    return json.dumps({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "everywhere"},
                       "spec": {"selector": {"matchLabels": {"app": "ds"}},
                                "template": {"metadata": {"labels": {"app": "ds"}}, "spec": spec}}})


def test_drain_moves_managed_pods_and_stops_on_an_unmanaged_one(cluster: Cluster) -> None:
    target = cluster.lab.nodes[1]
    others = [n.ip for n in cluster.lab.nodes if n.ip != target.ip]
    for ip in others:  # so that both replicas land on the target
        assert cluster.kubectl("cordon", ip).returncode == 0
    for kind in ["rc", "pod"] + (["ds"] if cluster.profile == "last-hyperkube" else []):
        p = cluster.kubectl("create", "-f", "-", input=_manifest(cluster, kind, target.ip))
        assert p.returncode == 0, p.stderr
    wait_for("2 pair replicas on the target", lambda: [x["spec"]["nodeName"] for x in _running(cluster, "app=pair")]
             == [target.ip] * 2 or None, 120)
    wait_for("the unmanaged pod", lambda: _running(cluster, "app=loner") or None, 120)
    for ip in others:
        assert cluster.kubectl("uncordon", ip).returncode == 0
    refused = cluster.piprov("node", "drain", target.inventory_name, "--timeout", "60")
    assert refused.returncode != 0 and "loner" in refused.stdout + refused.stderr, refused.stderr
    t0 = time.monotonic()
    p = cluster.piprov("node", "drain", target.inventory_name, "--force", "--timeout", "60")
    took = time.monotonic() - t0
    print(f"{cluster.profile}: drain --force of {target.inventory_name} took {took:.1f} s")
    assert p.returncode == 0, p.stderr[-3000:]
    node = cluster.json("get", "node", target.ip)
    assert node["spec"].get("unschedulable") is True
    pair = wait_for("2 pair replicas elsewhere", lambda: (lambda r: r if len(r) == 2 else None)(
        [x for x in _running(cluster, "app=pair") if x["spec"]["nodeName"] != target.ip]), 120)
    assert {x["spec"]["nodeName"] for x in pair} <= set(others)
    assert not cluster.json("get", "pods", "-l", "app=loner")["items"], "the unmanaged pod is deleted"
    if cluster.profile == "last-hyperkube":
        ds = [x for x in cluster.json("get", "pods", "-l", "app=ds")["items"] if x["spec"].get("nodeName") == target.ip]
        assert ds, "the DaemonSet pod stays on the drained node"
        assert ds[0]["metadata"]["name"] in p.stdout + p.stderr, "and the drain lists it"


def test_the_master_moves_to_a_former_worker_with_its_store(cluster: Cluster) -> None:
    """Issue 17: the roles swapped in the inventory, `piprov plan` shows the move, `piprov up` backs up the
    old master's etcd, restores it on the new master and prunes the old one's master components: every
    node Ready, the RC and its pods back, the flannel subnets kept; then `piprov up` changes nothing.
    Last in the file: the cluster's master is another node afterwards."""
    if cluster.profile != "seed":
        pytest.skip("piprov restore restores etcd 2.x's v2 store only (a 3.x backup is refused)")
    old, new = cluster.lab.nodes[0], cluster.lab.nodes[1]
    by_ip = {n.ip: n.name for n in cluster.lab.nodes}
    assert cluster.kubectl("uncordon", new.ip).returncode == 0  # the drain test left it cordoned
    wait_for("the workload", lambda: _httpd_back(cluster, by_ip), 180, 2)
    subnets = {n.name: _subnet(cluster, n.name) for n in cluster.lab.nodes}
    text = cluster.inventory.read_text()
    swapped = text.replace(f"name: {old.inventory_name}\n    address: {old.ip}\n    role: master",
                           f"name: {old.inventory_name}\n    address: {old.ip}\n    role: worker").replace(
        f"name: {new.inventory_name}\n    address: {new.ip}\n    role: worker",
        f"name: {new.inventory_name}\n    address: {new.ip}\n    role: master")
    assert swapped.count("role: master") == 1 and swapped != text
    cluster.inventory.write_text(swapped)
    p = cluster.piprov("plan", "--json", "--no-diff")
    assert p.returncode == 2, p.stderr[-3000:]
    move = json.loads(p.stdout)["master_move"]
    assert (move["old"], move["new"]) == (old.inventory_name, new.inventory_name)
    old_plan = next(n for n in json.loads(p.stdout)["nodes"] if n["node"] == old.inventory_name)
    assert "k8s-etcd.service" in json.dumps(old_plan["owned"]) and "role changed" in json.dumps(old_plan["owned"])
    t0 = time.monotonic()
    p = cluster.piprov("up", "--json", timeout=1200)
    assert p.returncode == 0, p.stderr[-4000:]
    assert [s["step"] for s in json.loads(p.stdout)["master_move"]] == ["backup", "bootstrap", "etcd"]
    cluster.inventory.with_name("kubeconfig").unlink()  # the apiserver moved: `piprov kubeconfig` again
    wait_for("every node Ready", cluster.ready, 300, 2)
    assert cluster.json("get", "rc", "httpd")["spec"]["replicas"] == 2
    wait_for("2 httpd pods back, their containers running", lambda: _httpd_back(cluster, by_ip), 300, 2)
    print(f"life: {cluster.profile}: master moved {old.name} -> {new.name}, every node Ready, workload back: "
          f"{time.monotonic() - t0:.1f} s")
    assert {n.name: _subnet(cluster, n.name) for n in cluster.lab.nodes} == subnets
    units = cluster.sh(old.name, "ls /etc/systemd/system; docker ps --format '{{.Names}}'").stdout
    assert "k8s-etcd" not in units and "k8s-master" not in units and "kube-apiserver" not in units, units
    assert "k8s-worker.service" in units
    assert "k8s-etcd.service" in cluster.sh(new.name, "ls /etc/systemd/system").stdout
    assert cluster.piprov("plan").returncode == 0, "piprov up would change something after the move"
