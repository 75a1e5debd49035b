"""pyinfra deploy of the seed stack, from the spec bench/peers/spec.py wrote (env PIPROV_BENCH_SPEC).

    pyinfra -y bench/peers/pyinfra_inventory.py bench/peers/pyinfra_deploy.py

Idiomatic pyinfra 3: files.put for each file (piprov's exact bytes, mode,
owner), systemd.daemon_reload only when a file changed, systemd.service
(running, enabled) per unit, and the shell waits + etcd key only when the
component changed (pyinfra has no health gates: see spec.py).
Operations run host by host in lockstep, in the graph's component order.
"""

import base64
import io
import json
import os
import sys
import types

from pyinfra import host
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

# pyinfra executes this file once per host: read the spec (every node's files, ~MBs at
# 250 nodes) once per process, as a deploy would import its data, not once per host.
_cache = sys.modules.setdefault("_piprov_bench_spec", types.ModuleType("_piprov_bench_spec"))
if not hasattr(_cache, "SPEC"):
    with open(os.environ["PIPROV_BENCH_SPEC"]) as fh:
        _cache.SPEC = json.load(fh)
SPEC = _cache.SPEC
ME = SPEC["nodes"][host.name]


def put(f):
    return files.put(
        name=f"file {f['path']}", src=io.BytesIO(base64.b64decode(f["content_b64"])), dest=f["path"],
        mode=f["mode"], user=f["owner"], group=f["group"], _sudo=True,
    )


hostname_ops = [put(f) for f in host.loop(ME["hostname"]["files"])]
for cmd in host.loop(ME["hostname"]["commands"]):
    server.shell(name="set the hostname", commands=[cmd], _sudo=True, _if=any_changed(*hostname_ops))

for comp in host.loop(SPEC["components"]):
    c = comp["nodes"].get(host.name)
    if c is None:
        continue
    file_ops = [put(f) for f in host.loop(c["files"])]
    systemd.daemon_reload(name=f"{comp['name']}: daemon-reload", _sudo=True, _if=any_changed(*file_ops))
    unit_ops = [systemd.service(name=f"{comp['name']}: {u}", service=u, running=True, enabled=True, _sudo=True)
                for u in host.loop(c["start"])]
    if c["waits"] or c["etcd"]:
        server.shell(name=f"{comp['name']}: wait healthy", commands=c["waits"] + c["etcd"], _sudo=True,
                     _if=any_changed(*file_ops, *unit_ops))
