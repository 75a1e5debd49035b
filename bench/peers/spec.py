"""The deploy the peers run, taken from piprov's own rendering (byte-identical files).

``build_spec(inventory_path)`` reads every node's facts once (piprov's facts
command, read-only), plans it with piprov, and returns plain data:

- per node: the hostname files (HypriotOS ``/boot/occidentalis.txt`` and
  ``/etc/hosts`` exactly as piprov would edit them) and commands;
- per component, in the graph's order: per node the files (content, mode,
  owner), the units to enable and start, the shell waits that stand in for
  piprov's health gates, and the etcd key commands.

Waits: peers have no health gates, so each of piprov's on-node probes becomes a
shell ``until`` loop polling every 0.1 s (as piprov's own on-node probes do);
http probes poll from the node with bash's /dev/tcp (the node has no curl), https ones
wait for the port to accept (no TLS client on the node);
``node_ready`` probes are left out: bench/run.py waits for every node Ready
from outside, the same way for all three tools.
"""

from __future__ import annotations

import base64
import json
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from piprov.graph import HealthCheck, Vertex, load_graph, node_dag  # noqa: E402
from piprov.inventory import check_images, load  # noqa: E402
from piprov.plan import FileChange  # noqa: E402
from piprov.fleet import Fleet  # noqa: E402
from piprov.provision import facts_and_plan  # noqa: E402
from piprov.shell.script import commands  # noqa: E402

POLL = "0.1"


def _file(f: FileChange) -> dict[str, Any]:
    return {"path": f.path, "content_b64": base64.b64encode(f.content).decode(), "mode": f"{f.mode:04o}",
            "owner": f.owner, "group": f.group}


def _until(test: str, timeout: float) -> str:
    return f"timeout {timeout:g} sh -c {shlex.quote(f'until {test}; do sleep {POLL}; done')}"


def wait_command(check: HealthCheck) -> str | None:
    """A shell loop on the node standing in for one of piprov's health probes (None: left out)."""
    t, q = check.target, shlex.quote(check.target)
    if check.probe == "unit":
        return _until(f"systemctl is-active -q {q}", check.timeout)
    if check.probe == "docker_socket":
        return _until(f"docker -H {q} version >/dev/null 2>&1", check.timeout)
    if check.probe == "file":
        return _until(f"test -s {q}", check.timeout)
    if check.probe == "http":
        u = urlparse(t)
        tcp = f"exec 3<>/dev/tcp/{u.hostname}/{u.port or (443 if u.scheme == 'https' else 80)}"
        # https (etcd and the apiserver once TLS is on): the node has no TLS client (no curl,
        # openssl or python3 on the card), so the peers wait for the port to accept instead of
        # piprov's 200 with a client certificate: a weaker gate, which can only favour them.
        get = tcp if u.scheme == "https" else (
            f"{tcp} && printf 'GET {u.path or '/'} HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200'")
        return f"timeout {check.timeout:g} bash -c {shlex.quote(f'until ({get}) 2>/dev/null; do sleep {POLL}; done')}"
    return None  # node_ready: waited for from outside, the same for every tool


def build_spec(inventory_path: Path) -> dict[str, Any]:
    inventory, graph = load(inventory_path), load_graph()
    check_images(inventory, graph.image_names())
    with Fleet.connect(inventory) as fleet:
        _, plan = facts_and_plan(inventory, graph, fleet)
    if plan.errors:
        raise SystemExit(f"cannot plan the peers' deploy: {plan.errors}")
    dag = node_dag(graph, inventory)
    nodes: dict[str, Any] = {}
    for n in inventory.nodes:
        np = plan.node(n.name)
        hc = np.hostname_change
        nodes[n.name] = {
            "address": n.address, "user": n.ssh.user, "port": n.ssh.port,
            "hostname": {"files": [_file(f) for f in hc.files] if hc else [],
                         "commands": commands(hc.actions) if hc else []},
        }
    components: list[dict[str, Any]] = []
    for c in graph.components:
        per: dict[str, Any] = {}
        for n in inventory.nodes:
            try:
                cp = plan.node(n.name).component(c.name)
            except KeyError:
                continue
            waits = [w for h in dag.health.get(Vertex(n.name, c.name), ()) if (w := wait_command(h))]
            per[n.name] = {
                "files": [_file(f) for f in cp.files],
                "units": list(c.units),
                "enable": list(cp.enable) or list(c.units),
                "start": list(cp.start) or list(cp.restart) or list(c.units),
                "waits": waits,
                "etcd": [_until(cmd + " >/dev/null 2>&1", 60) for cmd in commands(cp.etcd_actions())],
            }
        if per:
            components.append({"name": c.name, "nodes": per})
    return {"nodes": nodes, "components": components,
            "ssh": {"identity_file": inventory.nodes[0].ssh.identity_file,
                    "known_hosts": str(inventory.known_hosts)}}


def main() -> None:
    spec = build_spec(Path(sys.argv[1]))
    json.dump(spec, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
