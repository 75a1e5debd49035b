"""Planner: facts in, changes out, from the data files in data/plan/ (see its README)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from piprov.errors import FactsError, PlanError
from piprov.facts import EtcdKeyFacts, FileFacts, NodeFacts, UnitFacts, parse_facts
from piprov.graph import ComponentGraph, load_graph
from piprov.graph.dag import Vertex, node_dag
from piprov.inventory.model import (
    ImageSettings,
    ImageSpec,
    Inventory,
    NetworkSettings,
    Node,
    SshSettings,
)
from piprov.cli.app import error_line
from piprov.cli.views import file_json, node_json, plan_json
from piprov.plan import NodePlan, plan_hostname, plan_node
from piprov.pki import ClusterPki
from piprov.provision import plan_cluster
from piprov.plan.desired import DesiredNode
from piprov.plan.model import RECORD
from piprov.plan.owned import record_file
from piprov.render import desired_state, node_image_arch
from piprov.shell.script import commands

CASES = sorted((Path(__file__).parent / "data" / "plan").glob("*.yaml"))


def make_inventory(overrides: dict[str, Any] | None = None) -> Inventory:
    """The test fleet: one master, an armv7l worker, an aarch64-overridden worker."""
    o = overrides or {}
    ssh = SshSettings()
    specs = load_graph().image_defaults()
    for name, tag in o.get("image_tags", {}).items():
        specs[name] = ImageSpec(specs[name].repository, tag)
    images = ImageSettings(
        insecure_registries=tuple(o.get("insecure_registries", ())),
        specs=specs,
        arch_overrides={"arm64": {"hyperkube": ImageSpec("hyperkube", "v1.1.3")}},
    )
    return Inventory(
        path=Path("inventory.yaml"),
        cluster_name="pi-cluster",
        ssh=ssh,
        images=images,
        network=NetworkSettings(**o.get("network", {})),
        nodes=(
            Node("rpi-master", o.get("master_address", "192.168.1.100"), "master", ssh),
            Node("rpi-node-1", "192.168.1.101", "worker", ssh),
            Node("rpi-node-2", "192.168.1.102", "worker", ssh, arch="aarch64"),
        ),
        known_hosts=Path("known_hosts"),
    )


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _file(path: str, content: bytes, mode: int = 0o644, owner: str = "root", group: str = "root") -> FileFacts:
    return FileFacts(path, True, _sha(content), mode, owner, group, len(content), content)


def build_facts(spec: dict[str, Any], node_name: str, graph: ComponentGraph) -> NodeFacts:
    """NodeFacts from a case's symbolic description."""
    inv = make_inventory(spec.get("converged_with"))
    node = inv.node(node_name)
    converged = desired_state(inv, graph, node, node_image_arch(node, spec["machine"]))
    fspec = spec.get("files", {})
    default = fspec.get("default", "converged")
    files: dict[str, FileFacts] = {}
    for df in converged.files:
        o = fspec.get(df.path, default)
        if o == "missing":
            files[df.path] = FileFacts(df.path, exists=False)
        elif o == "converged":
            files[df.path] = _file(df.path, df.content, df.mode, df.owner, df.group)
        else:
            content = o["content"].encode() if "content" in o else df.content
            owner, _, group = o.get("owner", f"{df.owner}:{df.group}").partition(":")
            files[df.path] = _file(df.path, content, int(o.get("mode", f"{df.mode:o}"), 8), owner, group)
    hostname = spec["hostname"]
    files["/etc/hostname"] = _file("/etc/hostname", (hostname + "\n").encode())
    files["/etc/hosts"] = _file("/etc/hosts", spec["hosts"].encode())
    if "occidentalis" in spec:
        files["/boot/occidentalis.txt"] = _file("/boot/occidentalis.txt", spec["occidentalis"].encode(), 0o755)
    else:
        files["/boot/occidentalis.txt"] = FileFacts("/boot/occidentalis.txt", exists=False)
    if "device_init" in spec:
        files["/boot/device-init.yaml"] = _file("/boot/device-init.yaml", spec["device_init"].encode(), 0o755)
    else:
        files["/boot/device-init.yaml"] = FileFacts("/boot/device-init.yaml", exists=False)

    uspec = spec.get("units", {})
    udefault = {"active": "active", "enabled": "enabled", **uspec.get("default", {})}
    units = {}
    for u in converged.all_units:
        st = {**udefault, **uspec.get(u, {})}
        units[u] = UnitFacts(u, st["active"], st["enabled"])

    kspec = spec.get("etcd_keys", {})
    keys = {}
    for key, value in converged.etcd_keys.items():
        o = kspec.get(key, kspec.get("default", "converged"))
        if o == "converged":
            keys[key] = EtcdKeyFacts(key, "ok", value)
        elif o in ("missing", "unavailable"):
            keys[key] = EtcdKeyFacts(key, o)
        else:
            keys[key] = EtcdKeyFacts(key, "ok", o["value"])
    # piprov's record of what it manages: as the converged run wrote it, absent, or with extra lines.
    ospec = spec.get("owned", "converged")
    record = record_file(converged).content
    if ospec == "missing":
        files[RECORD] = FileFacts(RECORD, exists=False)
    elif ospec == "converged":
        files[RECORD] = _file(RECORD, record)
    else:
        text = ospec["content"].encode() if "content" in ospec else record + "".join(
            line + "\n" for line in ospec.get("extra", [])).encode()
        owner, _, group = ospec.get("owner", "root:root").partition(":")
        files[RECORD] = _file(RECORD, text, int(ospec.get("mode", "644"), 8), owner, group)
    for path, content in spec.get("other_files", {}).items():  # files piprov reads but does not write
        files[path] = _file(path, content.encode())
    dropins: dict[str, tuple[str | None, ...]] = {}
    for unit, found in spec.get("dropins", {}).items():
        for path, content in found.items():
            if path == "!odd":
                dropins[unit] = (*dropins.get(unit, ()), None)
                continue
            dropins[unit] = (*dropins.get(unit, ()), path)
            files[path] = _file(path, content.encode()) if content is not None else FileFacts(path, True, "0" * 64,
                                                                                            0o644, "root", "root", 1 << 20)
    return NodeFacts(
        host=node.address,
        machine=spec["machine"],
        hostname=hostname,
        os_id="raspbian" if "occidentalis" in spec or "device_init" in spec else "debian",
        os_version="8",
        files=files,
        units=units,
        etcd_keys=keys,
        dropins=dropins,
    )


def run_case(path: Path, graph: ComponentGraph, pki: ClusterPki | None = None) -> tuple[dict[str, Any], NodePlan]:
    case = yaml.safe_load(path.read_text())
    inv = make_inventory(case.get("inventory"))
    node = inv.node(case["node"])
    facts = build_facts(case["facts"], case["node"], graph)
    desired = desired_state(inv, graph, node, node_image_arch(node, facts.machine), pki=pki)
    return case, plan_node(desired, facts)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_planner_case(path: Path, graph: ComponentGraph) -> None:
    expect = yaml.safe_load(path.read_text())["expect"]
    if "error" in expect:
        with pytest.raises((PlanError, FactsError)) as ei:
            run_case(path, graph)
        assert ei.value.host == yaml.safe_load(path.read_text())["node"] and ei.value.hint
        for text in expect["error"]:
            assert text in str(ei.value)
        return
    case, plan = run_case(path, graph)
    assert plan.changed == expect["changed"], plan.reasons
    owned = expect.get("owned")
    if owned is None:
        assert plan.owned is None, plan.owned and plan.owned.reasons
    else:
        assert plan.owned is not None
        assert {"units": plan.owned.units, "files": plan.owned.files, "record": plan.owned.record is not None} == {
            "units": [], "files": [], "record": True, **owned}

    hc = plan.hostname_change
    if expect["hostname"] is None:
        assert hc is None, hc and hc.reason
    else:
        assert hc is not None
        for key, value in expect["hostname"].items():
            if key == "files":
                assert [f.path for f in hc.files] == value
            elif key == "commands":
                assert commands(hc.actions) == value
            else:
                assert getattr(hc, key) == value, key

    want = expect.get("components", {})
    for cp in plan.components:
        exp = want.get(cp.component)
        if exp is None:
            assert not cp.changed, f"{cp.component} should not change: {cp.reasons}"
            assert cp.reasons and cp.reasons[0].startswith("no change")
            continue
        got = {
            "files": [f.path for f in cp.files],
            "removed": [r.path for r in cp.remove],
            "daemon_reload": cp.daemon_reload,
            "unmask": cp.unmask,
            "enable": cp.enable,
            "restart": cp.restart,
            "start": cp.start,
            "etcd_keys": [k.key for k in cp.etcd_keys],
        }
        full = {"files": [], "removed": [], "daemon_reload": False, "unmask": [], "enable": [], "restart": [], "start": [], "etcd_keys": [], **exp}
        assert got == full, cp.component
    assert set(want) <= {cp.component for cp in plan.components}

    diffs = {f.path: f.diff for cp in plan.components for f in cp.files}
    if hc is not None:
        diffs.update({f.path: f.diff for f in hc.files})
    for path_, lines in expect.get("diff_contains", {}).items():
        diff_lines = diffs[path_].splitlines()
        for line in lines:
            assert line in diff_lines, f"{line!r} not in diff of {path_}:\n{diffs[path_]}"

    reasons = "\n".join(plan.reasons)
    for text in expect.get("reasons_contain", []):
        assert text in reasons

    # Whatever the case, the plan serialises to JSON.
    json.dumps(node_json(plan))


def test_no_change_says_why(graph: ComponentGraph) -> None:
    _, plan = run_case(Path(__file__).parent / "data/plan/converged-master.yaml", graph)
    assert plan.reasons == ["no change: every file, unit and key is as desired"]
    assert all(not c.unit_actions() and not c.etcd_actions() for c in plan.components)


def test_restarts_are_history_not_drift(graph: ComponentGraph) -> None:
    # Units systemd restarted (and one that died a minute ago and is back) plan
    # nothing: `status` shows them, the plan of a converged node stays a no-op.
    case = yaml.safe_load((Path(__file__).parent / "data/plan/converged-master.yaml").read_text())
    inv = make_inventory(case.get("inventory"))
    node = inv.node(case["node"])
    facts = build_facts(case["facts"], case["node"], graph)
    flapped = {name: replace(u, restarts=7, failed_ago=60.0) for name, u in facts.units.items()}
    facts = replace(facts, units=flapped, uptime=3600.0)
    plan = plan_node(desired_state(inv, graph, node, node_image_arch(node, facts.machine)), facts)
    assert not plan.changed, plan.reasons
    assert plan.reasons == ["no change: every file, unit and key is as desired"]


def test_commands_of_a_fresh_node(graph: ComponentGraph, test_pki: ClusterPki) -> None:
    _, plan = run_case(Path(__file__).parent / "data/plan/fresh-debian-master.yaml", graph, test_pki)
    paths = [f.path for f in plan.all_files]
    assert paths[:2] == ["/etc/hosts", "/etc/hostname"]
    assert sorted(paths[2:]) == sorted(graph.managed_paths("master"))
    # A component's certificates are written before the unit that names them.
    assert [f.path for f in plan.component("etcd").files] == [
        "/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/etcd-server.crt", "/etc/kubernetes/pki/etcd-server.key",
        "/etc/kubernetes/pki/apiserver-etcd-client.crt", "/etc/kubernetes/pki/apiserver-etcd-client.key",
        "/etc/systemd/system/k8s-etcd.service"]
    etcd = plan.component("etcd")
    assert commands(etcd.unit_actions()) == [
        "systemctl enable --quiet --no-reload k8s-etcd.service",
        "systemctl daemon-reload",
        "systemctl start --no-block k8s-etcd.service",
    ]
    assert commands(etcd.unit_actions(no_block=False))[-1] == "systemctl start k8s-etcd.service"
    (cmd,) = commands(etcd.etcd_actions())
    # The seed's etcd 2.1.1: its etcdctl has one API and names the endpoints --peers.
    assert cmd.startswith("docker -H unix:///var/run/docker-bootstrap.sock exec k8s-etcd etcdctl --no-sync --peers=")
    assert "set /coreos.com/network/config '{\"Backend\": {\"Type\": \"host-gw\"}" in cmd


def test_masked_unit_commands(graph: ComponentGraph) -> None:
    _, plan = run_case(Path(__file__).parent / "data/plan/unit-masked.yaml", graph)
    assert commands(plan.component("docker").unit_actions()) == [
        "systemctl unmask --quiet --no-reload docker.service",
        "systemctl enable --quiet --no-reload docker.service",
        "systemctl daemon-reload",
        "systemctl start --no-block docker.service",
    ]


def test_restart_of_socket_is_one_transaction(graph: ComponentGraph) -> None:
    _, plan = run_case(Path(__file__).parent / "data/plan/socket-file-changed.yaml", graph)
    # The whole node stack hangs off the bootstrap daemon: the plan restarts it
    # in graph order, each with its reason (systemd does not, along Wants=).
    assert plan.component("flannel").reasons == [
        "k8s-flannel.service: restart, docker-bootstrap.service restarts "
        "(its container runs on that daemon and stops with it)"
    ]
    assert commands(plan.component("kube-worker").unit_actions()) == [
        "systemctl restart --no-block k8s-worker.service k8s-proxy.service",
    ]
    assert commands(plan.component("docker-bootstrap").unit_actions()) == [
        "systemctl daemon-reload",
        "systemctl restart --no-block docker-bootstrap.socket docker-bootstrap.service",
    ]


def test_to_json_has_no_file_contents(graph: ComponentGraph) -> None:
    _, plan = run_case(Path(__file__).parent / "data/plan/fresh-hypriot-worker.yaml", graph)
    doc = node_json(plan)

    def keys(o: Any) -> set[str]:
        if isinstance(o, dict):
            return set(o) | {k for v in o.values() for k in keys(v)}
        if isinstance(o, list):
            return {k for v in o for k in keys(v)}
        return set()

    assert "content" not in keys(doc)
    f = doc["components"][0]["files"][0]
    assert set(f) == {"path", "mode", "owner", "old_sha256", "new_sha256", "reason", "diff"}
    assert f["mode"] == "0644" and f["old_sha256"] is None


def test_secret_files_have_no_diff_in_json(graph: ComponentGraph) -> None:
    _, plan = run_case(Path(__file__).parent / "data/plan/fresh-hypriot-worker.yaml", graph)
    change = plan.components[0].files[0]
    secret = replace(change, mode=0o600)
    assert secret.secret and file_json(secret)["diff"] is None


def test_plan_cluster_keeps_going_past_a_bad_node(graph: ComponentGraph) -> None:
    inv = make_inventory()
    good = build_facts(
        yaml.safe_load((Path(__file__).parent / "data/plan/converged-master.yaml").read_text())["facts"],
        "rpi-master",
        graph,
    )
    try:
        parse_facts("192.168.1.102", "Permission denied\n")
    except FactsError as e:
        bad: FactsError = e
    weird = replace(good, host="192.168.1.101", machine="mips")
    plan = plan_cluster(inv, graph, {"rpi-master": good, "rpi-node-1": weird, "rpi-node-2": bad})
    assert [n.node for n in plan.nodes] == ["rpi-master"]
    assert not plan.changed
    assert "192.168.1.102" in error_line(plan.errors["rpi-node-2"])
    assert "rpi-node-1: unsupported architecture 'mips'" in error_line(plan.errors["rpi-node-1"])
    assert plan_json(plan)["errors"].keys() == {"rpi-node-1", "rpi-node-2"}


def test_plan_cluster_missing_facts(graph: ComponentGraph) -> None:
    plan = plan_cluster(make_inventory(), graph, {})
    assert plan.nodes == [] and set(plan.errors) == {"rpi-master", "rpi-node-1", "rpi-node-2"}


def _facts_with(files: dict[str, str], hostname: str) -> NodeFacts:
    return NodeFacts(
        host="h",
        machine="armv7l",
        hostname=hostname,
        os_id="raspbian",
        os_version="8",
        files={p: _file(p, t.encode()) for p, t in files.items()},
    )


def test_hostname_keeps_other_occidentalis_lines() -> None:
    facts = _facts_with(
        {
            "/boot/occidentalis.txt": "# comment\nwifi_ssid=lab\nhostname = old\n",
            "/etc/hosts": "127.0.0.1 localhost\n127.0.1.1 old\n::1 ip6-localhost\n",
            "/etc/hostname": "old\n",
        },
        "old",
    )
    hc = plan_hostname("rpi-node-1", facts)
    assert hc is not None and hc.method == "occidentalis"
    new = {f.path: f.content.decode() for f in hc.files}
    assert new["/boot/occidentalis.txt"] == "# comment\nwifi_ssid=lab\nhostname=rpi-node-1\n"
    assert new["/etc/hosts"] == "127.0.0.1 localhost\n127.0.1.1\trpi-node-1\n::1 ip6-localhost\n"
    assert new["/etc/hostname"] == "rpi-node-1\n"
    # FAT /boot: the file's own mode is kept, never forced to 0644.
    occ = next(f for f in hc.files if f.path == "/boot/occidentalis.txt")
    assert occ.mode == 0o644  # as reported by _file above
    assert commands(hc.actions)[0] == "hostname rpi-node-1"


@pytest.mark.parametrize("before, after", [
    ('hostname: "old"\nwifi:\n  interfaces: {}\n', 'hostname: "rpi-node-1"\nwifi:\n  interfaces: {}\n'),
    ("hostname: old   # the name\n", 'hostname: "rpi-node-1"  # the name\n'),
    ("hostname:'old'\n", 'hostname: "rpi-node-1"\n'),
    ("wifi:\n  hostname: nested\n", 'wifi:\n  hostname: nested\nhostname: "rpi-node-1"\n'),  # device-init reads the top level
    ("", 'hostname: "rpi-node-1"\n'),
])
def test_hostname_in_device_init_yaml_keeps_the_users_lines(before: str, after: str) -> None:
    facts = _facts_with({"/boot/device-init.yaml": before, "/etc/hosts": "127.0.1.1 old\n", "/etc/hostname": "old\n"},
                        "old")
    hc = plan_hostname("rpi-node-1", facts)
    assert hc is not None and hc.method == "device-init"
    assert {f.path: f.content.decode() for f in hc.files}["/boot/device-init.yaml"] == after
    assert commands(hc.actions)[0] == "hostname rpi-node-1"  # as device-init itself sets it


HYPRIOT_USER_DATA = "#cloud-config\n# vim: syntax=yaml\nhostname: black-pearl\nmanage_etc_hosts: true\nusers:\n  - name: pirate\n"


@pytest.mark.parametrize("path", ["/boot/user-data", "/boot/firmware/user-data"])
def test_a_cloud_init_card_gets_the_name_in_user_data_and_from_hostnamectl(path: str) -> None:
    """cloud-init renders /etc/hosts from user-data's hostname at every boot (manage_etc_hosts): the key
    is edited, its other lines kept; the running name is hostnamectl's (cloud-init then leaves it)."""
    facts = _facts_with({path: HYPRIOT_USER_DATA, "/etc/hosts": "127.0.1.1 black-pearl\n",
                         "/etc/hostname": "black-pearl\n"}, "black-pearl")
    hc = plan_hostname("rpi-node-1", facts)
    assert hc is not None and hc.method == "cloud-init" and path in hc.reason
    new = {f.path: f.content.decode() for f in hc.files}
    assert new[path] == HYPRIOT_USER_DATA.replace("hostname: black-pearl", "hostname: rpi-node-1")
    # cloud-init would boot on the user-data it cached: the cache goes, then the running name.
    assert commands(hc.actions)[:2] == ["rm -f /var/lib/cloud/instance/obj.pkl", "hostnamectl set-hostname rpi-node-1"]


@pytest.mark.parametrize("user_data", [
    "#cloud-config\nusers: []\n",  # no hostname: key, nothing of the name to edit
    "hostname: black-pearl\n",  # not a cloud-config (a script, a MIME part...): cloud-init reads no key of it
    "#cloud-config\nwrite_files:\n  - path: /x\n    hostname: nested\n",
])
def test_user_data_naming_no_host_is_left_alone(user_data: str) -> None:
    facts = _facts_with({"/boot/user-data": user_data, "/etc/hosts": "127.0.1.1 old\n", "/etc/hostname": "old\n"},
                        "old")
    hc = plan_hostname("rpi-node-1", facts)
    assert hc is not None and hc.method == "hostnamectl" and not hc.stale_caches
    assert "/boot/user-data" not in {f.path for f in hc.files}


def test_user_data_already_naming_the_node_changes_nothing() -> None:
    ud = HYPRIOT_USER_DATA.replace("black-pearl", "rpi-node-1")
    facts = _facts_with({"/boot/user-data": ud, "/etc/hosts": "127.0.1.1 rpi-node-1.localdomain rpi-node-1\n",
                         "/etc/hostname": "rpi-node-1\n"}, "rpi-node-1")
    assert plan_hostname("rpi-node-1", facts) is None


def test_a_card_with_both_boot_files_gets_the_name_in_both() -> None:
    facts = _facts_with({"/boot/device-init.yaml": 'hostname: "rpi-node-1"\n', "/boot/occidentalis.txt": "hostname=old\n",
                         "/etc/hosts": "127.0.1.1 rpi-node-1\n", "/etc/hostname": "rpi-node-1\n"}, "rpi-node-1")
    hc = plan_hostname("rpi-node-1", facts)
    assert hc is not None and [f.path for f in hc.files] == ["/boot/occidentalis.txt"]
    assert not hc.set_running and "out of date: /boot/occidentalis.txt" in hc.reason


def test_device_init_yaml_already_naming_the_node_changes_nothing() -> None:
    facts = _facts_with({"/boot/device-init.yaml": "hostname: rpi-node-1 # ok\n", "/etc/hosts": "127.0.1.1 rpi-node-1\n",
                         "/etc/hostname": "rpi-node-1\n"}, "rpi-node-1")
    assert plan_hostname("rpi-node-1", facts) is None


def test_hostname_appends_to_occidentalis_without_hostname_line() -> None:
    facts = _facts_with(
        {"/boot/occidentalis.txt": "wifi_ssid=lab", "/etc/hosts": "127.0.1.1 n1\n", "/etc/hostname": "n1\n"},
        "n1",
    )
    hc = plan_hostname("n1", facts)
    assert hc is not None and commands(hc.actions) == []
    assert [f.content.decode() for f in hc.files] == ["wifi_ssid=lab\nhostname=n1\n"]


def test_hostname_too_big_hosts_file_is_an_error_naming_the_host() -> None:
    facts = NodeFacts(
        host="192.168.1.7",
        machine="armv7l",
        hostname="x",
        os_id="",
        os_version="",
        files={"/etc/hosts": FileFacts("/etc/hosts", True, "0" * 64, 0o644, "root", "root", 10**6, None)},
    )
    with pytest.raises(FactsError, match="/etc/hosts") as e:
        plan_hostname("y", facts)
    assert e.value.host == "192.168.1.7"


def test_desired_node_is_reused_by_plan(graph: ComponentGraph) -> None:
    _, plan = run_case(Path(__file__).parent / "data/plan/converged-master.yaml", graph)
    assert isinstance(plan.desired, DesiredNode)
    checks = node_dag(graph, make_inventory()).health[Vertex("rpi-master", "etcd")]
    assert checks[1].target == "https://192.168.1.100:4001/health"


def test_plan_cluster_names_a_node_without_docker(graph: ComponentGraph) -> None:
    spec = yaml.safe_load((Path(__file__).parent / "data/plan/converged-master.yaml").read_text())["facts"]
    facts = replace(build_facts(spec, "rpi-master", graph), binaries={"docker": None, "dockerd": None})
    plan = plan_cluster(make_inventory(), graph, {"rpi-master": facts})
    assert str(plan.errors["rpi-master"]) == "192.168.1.100: docker is not installed: no docker or dockerd in sudo's PATH"


def test_plan_cluster_uses_the_nodes_dockerd(graph: ComponentGraph) -> None:
    spec = yaml.safe_load((Path(__file__).parent / "data/plan/converged-master.yaml").read_text())["facts"]
    facts = replace(build_facts(spec, "rpi-master", graph), binaries={"docker": "/usr/bin/docker", "dockerd": "/usr/sbin/dockerd"})
    plan = plan_cluster(make_inventory(), graph, {"rpi-master": facts})
    docker = plan.node("rpi-master").component("docker")
    assert [f.path for f in docker.files] == ["/etc/systemd/system/docker.service"]
    assert "+ExecStart=/usr/sbin/dockerd -H fd:// --bridge=cbr0 --mtu=${FLANNEL_MTU} --ip-masq=false" in docker.files[0].diff
    assert docker.restart == ["docker.service"]


def test_facts_and_plan_plans_each_node_as_its_facts_come_in(
    graph: ComponentGraph, monkeypatch: pytest.MonkeyPatch, test_pki: ClusterPki
) -> None:
    # The pipelined path (each node planned in its SSH worker) must plan exactly
    # as plan_cluster does, keep the inventory's order and keep failures as data.
    from piprov import provision
    from piprov.fleet import Fleet

    inv = make_inventory()
    case = yaml.safe_load((Path(__file__).parent / "data/plan/converged-master.yaml").read_text())
    facts = {n.name: build_facts(dict(case["facts"], node=n.name), n.name, graph) for n in inv.nodes}

    def read(inventory: Inventory, graph_: ComponentGraph, fleet: object, name: str) -> NodeFacts:
        if name == "rpi-node-2":
            raise FactsError("the facts command failed (exit 1): sudo: a password is required")
        return facts[name]

    monkeypatch.setattr(provision, "read_facts", read)
    fleet = Fleet(inv, dict.fromkeys([n.name for n in inv.nodes]))  # type: ignore[arg-type]
    got_facts, plan = provision.facts_and_plan(inv, graph, fleet, pki=test_pki)
    assert isinstance(got_facts["rpi-node-2"], FactsError)
    expected = plan_cluster(inv, graph, got_facts, pki=test_pki)
    assert [n.node for n in plan.nodes] == [n.node for n in expected.nodes] == ["rpi-master", "rpi-node-1"]
    assert [node_json(n) for n in plan.nodes] == [node_json(n) for n in expected.nodes]
    assert plan.errors == expected.errors and "password is required" in error_line(plan.errors["rpi-node-2"])


def test_apply_leaves_an_unplannable_node_outside_the_scope_alone(graph: ComponentGraph) -> None:
    # `node add` and a rolling batch apply to some nodes only: a node outside
    # them that could not be planned must not fail the run.
    from piprov.errors import PiprovError
    from piprov.fleet import Fleet
    from piprov.plan.model import Plan
    from piprov.provision import apply_plan

    inv = make_inventory()
    plan = Plan(nodes=[], errors={"rpi-node-2": PiprovError("no route to host", host="rpi-node-2", hint="check it")})
    scoped = apply_plan(inv, graph, plan, Fleet(inv, {}), only_nodes=["rpi-master"])
    assert scoped.run.ok and not scoped.run.failed
    everyone = apply_plan(inv, graph, plan, Fleet(inv, {}))
    failed = everyone.run.failed
    assert failed and {s.node for s in failed} == {"rpi-node-2"}
    assert all(s.error is plan.errors["rpi-node-2"] for s in failed)
    assert error_line(failed[0].error) == "rpi-node-2: no route to host (hint: check it)"


def test_node_add_also_applies_the_fleet_wide_components_of_the_others(graph: ComponentGraph) -> None:
    # The firewall lists every member: a joining node must be let in on the others too,
    # and nothing else of theirs is applied (an unplannable member's firewall is its error).
    from piprov.errors import PiprovError
    from piprov.fleet import Fleet
    from piprov.plan.model import Plan
    from piprov.provision import apply_plan

    assert graph.fleet_wide_components() == ("firewall",)
    inv = make_inventory()
    plan = Plan(nodes=[], errors={"rpi-node-2": PiprovError("no route to host", host="rpi-node-2")})
    also = [("rpi-node-2", "firewall")]
    report = apply_plan(inv, graph, plan, Fleet(inv, {}), only_nodes=["rpi-master"], also=also)
    assert [(s.node, s.component) for s in report.run.failed] == also
    assert not [s for s in report.run.skipped if s.node == "rpi-master"]


def test_other_changes_leave_out_what_node_add_applies(graph: ComponentGraph) -> None:
    from piprov.kube.procedures import other_changes
    from piprov.plan.model import ComponentPlan, NodePlan, Plan

    def node(name: str, *changed: str) -> NodePlan:
        return NodePlan(name, "192.0.2.1", None, [ComponentPlan(c, restart=[f"{c}.service"], reasons=[f"{c} differs"])
                                                  for c in changed])

    plan = Plan(nodes=[node("new", "flannel"), node("a", "firewall"), node("b", "firewall", "docker")])
    assert other_changes(plan, "new", ("firewall",)) == {"b": ["docker differs"]}
    assert other_changes(plan, "new") == {"a": ["firewall differs"], "b": ["firewall differs", "docker differs"]}


def test_etc_hostname_without_its_newline_is_no_change() -> None:
    """HypriotOS 1.x's device-init writes /etc/hostname with no newline at every boot: not drift."""
    facts = _facts_with({"/boot/device-init.yaml": 'hostname: "rpi-node-1"\n', "/etc/hosts": "127.0.1.1 rpi-node-1\n",
                         "/etc/hostname": "rpi-node-1"}, "rpi-node-1")
    assert plan_hostname("rpi-node-1", facts) is None
