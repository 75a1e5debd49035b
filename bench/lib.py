"""Shared bench plumbing: fresh labs with sshd counting, the three tools, readiness from outside.

SSH connections and commands are counted on the NODE side, the same way for
every tool: sshd runs at LogLevel VERBOSE, and after a run the node's journal
since a cursor taken just before it is searched for "Accepted publickey"
(one per TCP connection that logged in) and "Starting session:" (one per
command/shell/subsystem channel, also those multiplexed over ControlMaster).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from piprov_lab.lab import Lab  # noqa: E402
from piprov_lab.system import ssh_banner  # noqa: E402

PY = str(ROOT / ".venv/bin/python")
BENCH_VENV = Path(os.environ.get("PIPROV_BENCH_VENV", "/var/cache/piprov-bench/venv"))
PYDEBS = Path("/var/cache/piprov-bench/pydebs")
WORK = Path("/var/tmp/piprov-bench")

VERBOSE_CONF = "LogLevel VERBOSE\n"


def pmap(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    with ThreadPoolExecutor(max(1, len(items))) as pool:
        return list(pool.map(fn, items))


def fresh_lab(name: str, nodes: int, rtt_ms: float, cpu_quota_pct: int = 0) -> tuple[Lab, Path]:
    """Down + up: fresh nodes (the fastest reset), sshd logging every session."""
    lab = Lab(name)
    lab.down()
    lab.up(nodes=nodes, rtt_ms=rtt_ms, cpu_quota_pct=cpu_quota_pct)

    def verbose(n: str) -> None:
        # Lab flake seen under load: systemd-user-sessions fails (219/CGROUP) at boot, leaving
        # /run/nologin so PAM refuses every login. Retry it rather than bench a broken node.
        lab.exec(n, "systemctl is-active -q systemd-user-sessions || systemctl restart systemd-user-sessions")
        lab.put_file(n, "/etc/ssh/sshd_config.d/00-bench-verbose.conf", VERBOSE_CONF)
        lab.exec(n, "systemctl reload ssh", check=True)
        # sshd re-executes itself on the reload: on a capped node its port is closed for a
        # while after systemctl returns (the peers' spec read once found all three refusing).
        ip = next(x.ip for x in lab.nodes if x.name == n)
        deadline = time.monotonic() + 60
        while not ssh_banner(ip) and time.monotonic() < deadline:
            time.sleep(0.2)

    pmap(verbose, [n.name for n in lab.nodes])
    WORK.mkdir(parents=True, exist_ok=True)
    inv = WORK / f"{name}-inventory.yaml"
    inv.write_text(lab.inventory_yaml())
    return lab, inv


def cursors(lab: Lab) -> dict[str, str]:
    def one(n: str) -> str:
        out = lab.exec(n, "journalctl -u ssh -n 0 --show-cursor --no-pager", check=True).stdout
        return out.strip().rsplit("cursor: ", 1)[-1].strip()

    names = [n.name for n in lab.nodes]
    return dict(zip(names, pmap(one, names)))


def ssh_counts(lab: Lab, since: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per node: {"connections": n, "commands": n} since the cursors."""

    def one(n: str) -> dict[str, int]:
        time.sleep(0.3)  # let journald take the last lines
        out = lab.exec(n, f"journalctl -u ssh --after-cursor='{since[n]}' -o cat --no-pager").stdout
        return {"connections": out.count("Accepted publickey"), "commands": out.count("Starting session:")}

    names = list(since)
    return dict(zip(names, pmap(one, names)))


def all_ready(lab: Lab) -> bool:
    """Every lab node Ready, asked of the secure port with piprov's own client certificate."""
    from piprov import http
    from piprov.inventory import load
    from piprov.kube.client import apiserver_url, client_tls

    # A path of its own per lab instance: piprov's client_tls keeps one TLS context per inventory
    # path for the process, and a fresh lab has a new CA (the same path kept the first lab's CA,
    # so every later lab of one bench process looked never Ready).
    stamp = hashlib.sha256(lab.nodes[0].host_key.encode()).hexdigest()[:12]
    inv = WORK / f"{lab.name}-{stamp}-ready-inventory.yaml"
    if not inv.exists():
        inv.write_text(lab.inventory_yaml())  # its cluster.pki_dir is the lab's one CA
    inventory = load(inv)
    try:
        resp = http.request("GET", apiserver_url(inventory) + "/api/v1/nodes", timeout=2, tls=client_tls(inventory))
        items = json.loads(resp.body)["items"]
    except Exception:  # noqa: BLE001 - not ready, whatever the reason
        return False
    ready = {i["metadata"]["name"] for i in items
             if any(c["type"] == "Ready" and c["status"] == "True" for c in i["status"].get("conditions", []))}
    return ready >= {n.ip for n in lab.nodes}


def wait_ready(lab: Lab, timeout: float = 300) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if all_ready(lab):
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def install_python(lab: Lab) -> float:
    """python3 into every node, from .debs fetched on the host (the nodes have no route out)."""
    debs = sorted(PYDEBS.glob("*.deb"))
    if not debs:
        raise SystemExit(f"no .debs in {PYDEBS}: run bench/run.py --prepare first")

    def one(n: str) -> None:
        have = set(lab.exec(n, "dpkg-query -W -f='${Package}\\n'", check=True).stdout.split())
        skip = ("perl", "libperl", "mailcap", "mime-support", "install-info", "libgdbm")
        need = [d for d in debs if d.name.split("_", 1)[0] not in have and not d.name.startswith(skip)]
        lab.exec(n, "mkdir -p /tmp/pydebs", check=True)
        for d in need:
            lab.put_file(n, f"/tmp/pydebs/{d.name}", d.read_bytes())
        # Pre-depends first; the rest with --force-depends (perl and mailcap are left out: python runs without).
        lab.exec(n, "cd /tmp/pydebs && dpkg -i *python3.11-minimal_*.deb >/dev/null && rm -f *python3.11-minimal_*.deb "
                 "&& dpkg -i --force-depends *.deb >/dev/null 2>&1; cd / && rm -rf /tmp/pydebs && python3 -c 'import json'",
                 check=True, timeout=300)

    t0 = time.monotonic()
    pmap(one, [n.name for n in lab.nodes])
    return time.monotonic() - t0


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def prepare(debs: bool = True) -> None:
    """The bench venv (ansible-core, pyinfra, matplotlib from PyPI) and python3 .debs for Ansible's nodes
    (``debs=False``: not them; bench/scale.py runs no Ansible)."""
    # A benchmark killed with SIGTERM (timeout(1), a CI's cancel) runs its
    # `finally` like one stopped with ^C: its lab goes down, not left on the bridge.
    signal.signal(signal.SIGTERM, _exit_on_term)
    # pip byte-compiles the peers when it installs them; piprov is installed
    # editable, so compile it too, or a shell with PYTHONDONTWRITEBYTECODE=1
    # would charge piprov ~75 ms of compiling per run that no user pays.
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "piprov")], check=True, capture_output=True)
    if not (BENCH_VENV / "bin/pyinfra").exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin/pip"), "install", "-q", "ansible-core", "pyinfra", "matplotlib"],
                       check=True)
    if debs and not list(PYDEBS.glob("*.deb")):
        PYDEBS.mkdir(parents=True, exist_ok=True)
        deps = subprocess.run(
            "apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks "
            "--no-replaces --no-enhances python3 | grep '^\\w' | sort -u",
            shell=True, capture_output=True, text=True, check=True).stdout.split()
        subprocess.run(["apt-get", "download", *deps], cwd=PYDEBS, check=True, capture_output=True)


def versions() -> dict[str, str]:
    out = subprocess.run([str(BENCH_VENV / "bin/pip"), "list", "--format=json"], capture_output=True, text=True)
    pkgs = {p["name"].lower(): p["version"] for p in json.loads(out.stdout or "[]")}
    return {k: pkgs.get(k, "?") for k in ("ansible-core", "pyinfra", "matplotlib")}


def summary(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3)} if xs else {}


# -- the tools ------------------------------------------------------------------------------------


def run_tool(tool: str, lab: Lab, inv: Path, spec_path: Path | None) -> dict[str, Any]:
    """One run of ``tool`` against the lab; wall time and the tool's own report."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out: dict[str, Any] = {}
    if tool == "piprov":
        cmd = [PY, "-m", "piprov", "up", "--json", "-i", str(inv)]
    elif tool == "pyinfra":
        assert spec_path is not None
        env["PIPROV_BENCH_SPEC"] = str(spec_path)
        cmd = [str(BENCH_VENV / "bin/pyinfra"), "-y", str(WORK / f"{lab.name}-pyinfra_inventory.py"),
               str(ROOT / "bench/peers/pyinfra_deploy.py")]
    else:
        mode = tool.split("-", 1)[1]
        d = WORK / f"{lab.name}-ansible-{mode}"
        env["ANSIBLE_CONFIG"] = str(d / "ansible.cfg")
        cmd = [str(BENCH_VENV / "bin/ansible-playbook"), str(d / "site.yml")]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    out["wall"] = time.monotonic() - t0
    out["ok"] = p.returncode == 0
    if not out["ok"]:
        # The tail alone lost Ansible's failure (its recap comes last): keep
        # the lines that say what failed, then the tail.
        said = [ln for ln in p.stdout.splitlines() if any(w in ln for w in ("fatal:", "FAILED", "UNREACHABLE", "✗"))]
        out["error"] = "\n".join(said)[-3000:] + "\n---\n" + p.stdout[-1500:] + p.stderr[-1500:]
    if tool == "piprov" and p.stdout.strip():
        try:
            rep = json.loads(p.stdout)
            out["changed"] = rep.get("changed", True)
            if "critical_path_seconds" in rep:
                out["critical_path"] = rep["critical_path_seconds"]
                out["apply_wall"] = rep["wall_seconds"]
                out["critical_chain"] = rep["critical_path"]
                waits = sum(s["wait_seconds"] for s in rep["steps"])
                out["wait_total"] = round(waits, 3)
                # Per step, to see what grew between two runs (the critical path names only the chain).
                out["steps"] = [{k: s[k] for k in ("node", "component", "status", "apply_seconds", "wait_seconds")}
                                for s in rep["steps"]]
            out["round_trips"] = rep.get("round_trips")
        except json.JSONDecodeError:
            pass
    return out


def write_peer_files(lab: Lab, inv: Path, tools: list[str]) -> Path | None:
    """The peers' deploy from piprov's rendering (reads facts: before the counted runs)."""
    if tools == ["piprov"]:
        return None
    sys.path.insert(0, str(ROOT / "bench/peers"))
    from spec import build_spec  # type: ignore[import-not-found]

    spec = build_spec(inv)
    spec_path = WORK / f"{lab.name}-spec.json"
    spec_path.write_text(json.dumps(spec))
    hosts = [(name, {"ssh_hostname": n["address"], "ssh_user": n["user"], "ssh_port": n["port"],
                     "ssh_key": spec["ssh"]["identity_file"], "ssh_known_hosts_file": spec["ssh"]["known_hosts"],
                     "ssh_strict_host_key_checking": "yes"}) for name, n in spec["nodes"].items()]
    (WORK / f"{lab.name}-pyinfra_inventory.py").write_text(f"hosts = {hosts!r}\n")
    from ansible_gen import generate  # type: ignore[import-not-found]

    for mode in ("default", "tuned"):
        generate(spec, WORK / f"{lab.name}-ansible-{mode}", mode)
    return spec_path
