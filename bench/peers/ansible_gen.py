"""Write an Ansible project (inventory, playbook, ansible.cfg) for the seed stack from a peers spec.

    python bench/peers/ansible_gen.py SPEC.json OUTDIR --mode default|tuned

Idiomatic ansible-core: ``copy`` (content = piprov's exact bytes) for every
file, ``systemd`` daemon_reload when a file changed, ``systemd`` enabled +
started per unit, and the shell waits + etcd key (spec.py) only when the
component changed. The linear strategy runs each task on every host before
the next, which keeps the graph's cross-node order (the master's etcd before
the workers' flannel, its apiserver before the workers' kubelets).

Modes: ``default`` = ansible-core as installed (fact gathering on, 5 forks,
no pipelining; its stock ssh_args already carry ControlPersist=60s);
``tuned`` = the documented speed-ups: pipelining, ControlPersist=600s,
forks = node count, no fact gathering.

Ansible needs Python on the managed node: bench/run.py installs python3 into
each lab node before the Ansible runs (not counted in its times, reported as
a cost of the design; piprov and pyinfra need none).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def generate(spec: dict[str, Any], out: Path, mode: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    hosts: dict[str, Any] = {}
    for name, n in spec["nodes"].items():
        empty = {"files": [], "start": [], "waits": [], "etcd": []}
        comp = {c["name"]: {**c["nodes"].get(name, empty), "present": name in c["nodes"]} for c in spec["components"]}
        for v in comp.values():
            v["dirs"] = sorted({f["path"].rsplit("/", 1)[0] for f in v["files"]})
        hosts[name] = {
            "ansible_host": n["address"], "ansible_user": n["user"], "ansible_port": n["port"],
            "ansible_ssh_private_key_file": spec["ssh"]["identity_file"],
            "ansible_python_interpreter": "/usr/bin/python3",
            "hostname_files": n["hostname"]["files"], "hostname_commands": n["hostname"]["commands"],
            "comp": comp,
        }
    (out / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}, width=1 << 20))
    tuned = mode == "tuned"
    cp = "ControlPersist=600s" if tuned else "ControlPersist=60s"
    (out / "ansible.cfg").write_text(
        "[defaults]\n"
        f"inventory = {out / 'inventory.yml'}\n"
        "host_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\n"
        "stdout_callback = default\n"
        "retry_files_enabled = False\n"
        + (f"forks = {max(5, len(hosts))}\n" if tuned else "")
        + "[ssh_connection]\n"
        f"ssh_args = -C -o ControlMaster=auto -o {cp} -o UserKnownHostsFile={spec['ssh']['known_hosts']} "
        "-o StrictHostKeyChecking=yes\n"
        f"control_path_dir = {out / 'cp'}\n"
        + ("pipelining = True\n" if tuned else "")
    )

    def copy_task(var: str, when: str | None, reg: str) -> dict[str, Any]:
        t: dict[str, Any] = {
            "name": f"files {var}",
            "ansible.builtin.copy": {"dest": "{{ item.path }}", "content": "{{ item.content_b64 | b64decode }}",
                                     "mode": "{{ item.mode }}", "owner": "{{ item.owner }}", "group": "{{ item.group }}"},
            "loop": "{{ " + var + " }}", "loop_control": {"label": "{{ item.path }}"}, "register": reg,
        }
        if when:
            t["when"] = when
        return t

    tasks: list[dict[str, Any]] = [
        copy_task("hostname_files", None, "hn"),
        {"name": "set the hostname", "ansible.builtin.shell": "{{ item }}", "loop": "{{ hostname_commands }}",
         "when": "hn is changed"},
    ]
    for c in spec["components"]:
        name = c["name"]
        key = name.replace("-", "_")
        has = f"comp['{name}'].present"
        tasks += [
            {"name": f"{name}: directories", "ansible.builtin.file": {"path": "{{ item }}", "state": "directory"},
             "loop": f"{{{{ comp['{name}'].dirs }}}}", "when": has},
            copy_task(f"comp['{name}'].files", has, f"f_{key}"),
            {"name": f"{name}: daemon-reload", "ansible.builtin.systemd": {"daemon_reload": True},
             "when": f"{has} and f_{key} is changed"},
            {"name": f"{name}: units enabled and started",
             "ansible.builtin.systemd": {"name": "{{ item }}", "enabled": True, "state": "started"},
             "loop": f"{{{{ comp['{name}'].start }}}}", "when": has, "register": f"u_{key}"},
            {"name": f"{name}: wait healthy (shell poll, no health gates)", "ansible.builtin.shell": "{{ item }}",
             "loop": f"{{{{ comp['{name}'].waits + comp['{name}'].etcd }}}}", "changed_when": False,
             "when": f"{has} and (f_{key} is changed or u_{key} is changed)"},
        ]
    play = [{"name": "seed stack", "hosts": "all", "become": True, "gather_facts": not tuned, "tasks": tasks}]
    (out / "site.yml").write_text(yaml.safe_dump(play, sort_keys=False, width=1 << 20))


if __name__ == "__main__":
    args = sys.argv[1:]
    generate(json.loads(Path(args[0]).read_text()), Path(args[1]), args[3] if len(args) > 3 else "default")
