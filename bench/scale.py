#!/usr/bin/env python3
"""Controller scale, side by side: piprov, pyinfra and the SSH floor on 50, 100 and 250 light lab nodes.

    sudo .venv/bin/python bench/scale.py [--nodes 50,100,250] [--runs 3] [--tools piprov,pyinfra,floor]
    sudo .venv/bin/python bench/scale.py --report-only     # the docs section from the newest scale-*.json

Light nodes: lab nodes as booted (systemd + sshd, no docker daemon running),
with avahi stopped once they are up: 250 avahi daemons answering each other on
one bridge keep ~0.7 of the host's 2 cores busy, noise for every tool (each Pi
has its own CPU for that). For each N, on one fresh lab, each run times the
three tools one after the other (their order rotated from run to run):

- piprov: `piprov plan --json`: every node's facts (one SSH command each, in
  parallel) and the plan of the whole seed stack for all of them; checked:
  every node planned.
- pyinfra: `pyinfra --dry` of the same deploy (bench/peers/pyinfra_deploy.py,
  the spec bench/peers/spec.py takes from piprov's own rendering). Without
  `-y`, pyinfra runs its change detection: it connects, executes the deploy
  file for every host, gathers every fact its operations need (files.put: the
  remote file, its directory and checksum; systemd.service: the units' state)
  and computes what each operation would change; `--dry` then exits before the
  prompt, applying nothing. (With `-y` it skips change detection and reads no
  facts at all, which would compare nothing.) On light nodes every file is
  missing, so pyinfra reads one File fact per file and no checksum, and the
  shell waits count as changes without running; piprov likewise plans every
  file as new. Checked: exit 0 and every host connected.
- floor: bench/ssh_floor.py: paramiko connect + strict host key + login + one
  `true` on every node, in parallel, nothing else (see its docstring).

Each with wall time, the controller's peak RSS and its CPU time (user + sys),
from GNU time (%M %U %S) around the process. Also timed: interpreter start-up
(`python -c pass`, `import paramiko`, piprov's CLI imports). Per tool, the
marginal cost per node is the least-squares slope of wall (and CPU) time over
N, every run a point. Writes bench/results/scale-<UTC time>.json; `--docs`
(default on) regenerates docs/benchmarks.md and the plot docs/scale-*.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lib  # noqa: E402
from piprov_lab.lab import Lab  # noqa: E402

TOOLS = ["piprov", "pyinfra", "floor"]
BENCH = Path(__file__).resolve().parent
FLOOR_WORKERS = 16


def timed(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> dict[str, Any]:
    """Run ``cmd`` under GNU time: wall, peak RSS (MB), CPU (user + sys, s), exit code, output."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-o", tf.name, "-f", "%M %U %S", *cmd], capture_output=True, text=True,
                           env=env, timeout=timeout)
        wall = time.monotonic() - t0
        # GNU time writes "Command exited with non-zero status N" first when it did.
        rss_kb, user, sys_ = tf.read().strip().splitlines()[-1].split()
    return {"wall": round(wall, 3), "rss_mb": round(int(rss_kb) / 1024, 1), "cpu": round(float(user) + float(sys_), 2),
            "user": float(user), "sys": float(sys_), "rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


def clean_env() -> dict[str, str]:
    # As bench/lib.py: no tool inherits PYTHONDONTWRITEBYTECODE (piprov is byte-compiled by lib.prepare()).
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_piprov(inv: Path, n: int) -> dict[str, Any]:
    r = timed([lib.PY, "-m", "piprov", "plan", "--json", "-i", str(inv)], clean_env())
    try:
        doc = json.loads(r["stdout"])
        planned = len(doc["nodes"])
        errors = len(doc.get("errors") or {})
    except (json.JSONDecodeError, KeyError, TypeError):
        planned, errors = 0, n
    r.update(planned=planned, node_errors=errors, ok=planned == n and errors == 0 and r["rc"] in (0, 2))
    return r


def run_pyinfra(lab_name: str, spec: Path, n: int) -> dict[str, Any]:
    env = dict(clean_env(), PIPROV_BENCH_SPEC=str(spec))
    r = timed([str(lib.BENCH_VENV / "bin/pyinfra"), "--dry", str(lib.WORK / f"{lab_name}-pyinfra_inventory.py"),
               str(BENCH / "peers/pyinfra_deploy.py")], env)
    out = r["stdout"] + r["stderr"]
    connected = sum(1 for line in out.splitlines() if re.search(r"^\s*\[[^]]+\]\s+Connected\s*$", line))
    r.update(connected=connected, ok=r["rc"] == 0 and connected == n)
    return r


def run_floor(hosts: Path, n: int, workers: int) -> dict[str, Any]:
    r = timed([lib.PY, str(BENCH / "ssh_floor.py"), str(hosts), "--workers", str(workers)], clean_env())
    try:
        res = json.loads(r["stdout"].strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        res = {"ok": 0, "failed": {"?": r["stderr"][-500:]}}
    r.update(nodes_ok=res["ok"], failed=res.get("failed"), ok=res["ok"] == n)
    return r


def startup() -> dict[str, Any]:
    """Interpreter start-up and imports, the fixed cost under every tool's wall time."""
    out: dict[str, Any] = {}
    for label, code in (("python -c pass", "pass"), ("import paramiko", "import paramiko"),
                        ("piprov CLI imports", "import piprov.cli.app, piprov.cli.cluster")):
        walls = [timed([lib.PY, "-c", code], clean_env())["wall"] for _ in range(5)]
        out[label] = statistics.median(walls)
    return out


def fit(points: list[tuple[float, float]]) -> dict[str, float] | None:
    """Least squares y = a + b N over the points: b is the marginal cost per node."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return {"per_node_ms": round(1000 * b, 2), "fixed_s": round(my - b * mx, 3)}


def fits(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        runs = [(rec["nodes"], r) for rec in doc["records"] for r in rec["runs"].get(tool, []) if r["ok"]]
        if runs:
            out[tool] = {"wall": fit([(n, r["wall"]) for n, r in runs]), "cpu": fit([(n, r["cpu"]) for n, r in runs]),
                         "rss": fit([(n, r["rss_mb"] / 1000) for n, r in runs])}
    return out


def med(rec: dict[str, Any], tool: str, key: str) -> float | None:
    xs = [r[key] for r in rec["runs"].get(tool, []) if r["ok"]]
    return statistics.median(xs) if xs else None


def write_floor_hosts(lab: Lab, path: Path) -> None:
    path.write_text(json.dumps({"identity_file": str(lab.identity_file), "known_hosts": str(lab.known_hosts),
                                "nodes": [[n.ip, 22, "pirate"] for n in lab.nodes]}))


def bench_n(a: argparse.Namespace, n: int, tools: list[str]) -> dict[str, Any]:
    t0 = time.monotonic()
    lab, inv = lib.fresh_lab(a.lab, n, 0)
    boot = time.monotonic() - t0
    # 250 avahi daemons on one bridge answer each other's announcements without end:
    # ~0.7 of the host's 2 cores at 250 nodes, idle. Real Pis each have a CPU of their
    # own for that; here it would only add noise to every tool's figures. No tool needs mDNS.
    lib.pmap(lambda name: lab.exec(name, "systemctl stop avahi-daemon.socket avahi-daemon.service"),
             [x.name for x in lab.nodes])
    # The peers' deploy, from piprov's rendering; it also issues the nodes' leaves in the
    # controller's PKI, so no timed piprov run pays for making certificates.
    t0 = time.monotonic()
    spec = lib.write_peer_files(lab, inv, ["piprov", "pyinfra"])
    spec_s = time.monotonic() - t0
    assert spec is not None
    hosts = lib.WORK / f"{a.lab}-floor-hosts.json"
    write_floor_hosts(lab, hosts)
    rec: dict[str, Any] = {"nodes": n, "lab_boot_seconds": round(boot, 1), "spec_seconds": round(spec_s, 1),
                           "spec_mb": round(spec.stat().st_size / 1e6, 1), "runs": {t: [] for t in tools},
                           "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    for i in range(a.runs):
        order = tools[i % len(tools):] + tools[:i % len(tools)]
        for tool in order:
            if tool == "pyinfra" and i >= a.peer_runs:
                continue
            if tool == "piprov":
                r = run_piprov(inv, n)
            elif tool == "pyinfra":
                r = run_pyinfra(a.lab, spec, n)
            else:
                r = run_floor(hosts, n, a.floor_workers)
            keep = {k: v for k, v in r.items() if k not in ("stdout", "stderr")}
            if not r["ok"]:
                keep["tail"] = (r["stdout"][-800:] + "\n---\n" + r["stderr"][-1500:])
            rec["runs"][tool].append(keep)
            print(f"  N={n} run {i + 1} {tool:8}: wall {r['wall']:7.2f} s, RSS {r['rss_mb']:6.1f} MB, "
                  f"CPU {r['cpu']:6.2f} s{'' if r['ok'] else '  FAILED: ' + keep['tail'][-600:]}", flush=True)
    return rec


def table(doc: dict[str, Any]) -> str:
    rows = ["| N | tool | wall (s), median (min–max) | controller peak RSS (MB) | controller CPU (s) | "
            "piprov faster by | runs ok |",
            "|---|---|---|---|---|---|---|"]
    for rec in doc["records"]:
        p = med(rec, "piprov", "wall")
        for tool in TOOLS:
            runs = rec["runs"].get(tool)
            if not runs:
                continue
            ok = [r for r in runs if r["ok"]]
            walls = [r["wall"] for r in ok]
            rng = f"{statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f})" if walls else "-"
            w = med(rec, tool, "wall")
            vs = "" if tool == "piprov" or not (p and w) else f"{w / p:.1f}×" if tool != "floor" else \
                f"(piprov / floor {p / w:.2f})"
            rss, cpu = med(rec, tool, "rss_mb"), med(rec, tool, "cpu")
            rows.append(f"| {rec['nodes']} | {tool} | {rng} | {'-' if rss is None else f'{rss:.0f}'} | "
                        f"{'-' if cpu is None else f'{cpu:.2f}'} | {vs} | {len(ok)}/{len(runs)} |")
    return "\n".join(rows)


def verdicts(doc: dict[str, Any]) -> list[str]:
    lines = []
    for rec in doc["records"]:
        n, p, y, f = rec["nodes"], med(rec, "piprov", "wall"), med(rec, "pyinfra", "wall"), med(rec, "floor", "wall")
        if n < 100 or p is None:
            continue
        if y is not None:
            lines.append(f"N={n}: pyinfra / piprov = {y / p:.1f}× (target ≥ 5×: {'met' if y / p >= 5 else 'MISSED'})")
        if f is not None:
            lines.append(f"N={n}: piprov / floor = {p / f:.2f} (the floor's wall includes its interpreter start-up "
                         f"and `import paramiko`; target ≤ 2: {'met' if p / f <= 2 else 'MISSED'})")
            su = doc.get("startup", {})
            extra = max(0.0, su.get("piprov CLI imports", 0.0) - su.get("import paramiko", 0.0))
            if extra:
                lines.append(f"N={n}: piprov / (floor + piprov's own imports beyond paramiko, {extra:.2f} s) = "
                             f"{p / (f + extra):.2f}")
        rss = med(rec, "piprov", "rss_mb")
        if n >= 250 and rss is not None:
            lines.append(f"N={n}: piprov peak RSS {rss:.0f} MB (target ≤ 150 MB: {'met' if rss <= 150 else 'MISSED'})")
    return lines


def section(path: Path, doc: dict[str, Any]) -> str:
    f = fits(doc)
    su = doc.get("startup", {})
    body = [f"## Controller scale, side by side: facts + plan on light lab nodes (`bench/scale.py`, {path.name}, "
            f"{doc['started']}; pyinfra {doc.get('versions', {}).get('pyinfra', '?')})", "",
            "One fresh lab per N; every run times piprov (`piprov plan --json`: facts + plan of the whole seed "
            "stack), pyinfra (`pyinfra --dry` of the same deploy: its change detection, i.e. every fact its "
            "operations need and what each would change, nothing applied) and the SSH floor "
            "(bench/ssh_floor.py: paramiko connect, strict host key, login, one `true` per node, "
            f"{doc.get('floor_workers', FLOOR_WORKERS)} threads), in rotated order. RSS and CPU are the "
            "controller process's (GNU time). Light nodes run systemd and sshd only (avahi stopped after boot: 250 of "
            "them on one bridge kept ~0.7 of the 2 cores busy), no docker daemon, so every file is planned as new "
            "by both tools. The nodes share the controller's 2 cores: every figure here is CPU-bound, the nodes' "
            "sshd, sudo and commands included.", ""]
    body += [f"- {note}" for note in doc.get("notes", [])] + ([""] if doc.get("notes") else [])
    body += [table(doc), ""]
    if su:
        body += ["Interpreter start-up (median of 5): " + ", ".join(f"{k} {v:.3f} s" for k, v in su.items()) + ".", ""]
    body += ["Marginal cost per node (least squares over every run, wall and CPU against N):", ""]
    for tool, x in f.items():
        w, c, r = x["wall"], x["cpu"], x["rss"]
        if w and c and r:
            body.append(f"- {tool}: wall {w['per_node_ms']:.1f} ms/node (+ {w['fixed_s']:.2f} s fixed), controller "
                        f"CPU {c['per_node_ms']:.1f} ms/node, peak RSS {r['per_node_ms']:.2f} MB/node")
    body += [""] + [f"- {v}" for v in verdicts(doc)] + [""]
    png = DOCS / f"{path.stem}.png"
    if png.exists():
        body += [f"![{path.stem}]({png.name})", ""]
    return "\n".join(body)


DOCS = BENCH.parent / "docs"
SCALE_MARK = "<!-- bench/scale.py: the newest scale-*.json -->"
OLD_SCALE = "## Controller scale: facts + plan ("


def write_docs() -> None:
    """The scale section (extra.md's marked block) from the newest scale results with peers, and its plot."""
    import report

    newest = [p for p in sorted((BENCH / "results").glob("scale-*.json"))
              if "runs" in (json.loads(p.read_text()).get("records") or [{}])[0]]
    if not newest:
        return
    path = newest[-1]
    doc = json.loads(path.read_text())
    res = subprocess.run([report.VENV_PY, str(BENCH / "plot.py"), "--scale", str(path), str(DOCS / f"{path.stem}.png")],
                         capture_output=True, text=True)
    if res.returncode:
        print("plot failed:", res.stderr[-800:])
    extra = BENCH / "results" / "extra.md"
    text = extra.read_text()
    block = f"{SCALE_MARK}\n{section(path, doc)}{SCALE_MARK}\n"
    if SCALE_MARK in text:
        head, _, rest = text.partition(SCALE_MARK)
        _, _, tail = rest.partition(SCALE_MARK + "\n")
        text = head + block + tail
    elif OLD_SCALE in text:  # above the piprov-only figures of 26 Nov, kept as history
        head, _, tail = text.partition(OLD_SCALE)
        text = head + block + "\n" + OLD_SCALE + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    extra.write_text(text)
    report.write_docs()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="50,100,250")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peer-runs", type=int, default=None, help="pyinfra runs per N (default: --runs)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--floor-workers", type=int, default=FLOOR_WORKERS)
    ap.add_argument("--lab", default=os.environ.get("PIPROV_LAB", "bench-scale"))
    ap.add_argument("--note", action="append", default=[], help="a line for the docs (what else ran meanwhile)")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    if a.report_only:
        write_docs()
        return
    a.peer_runs = a.runs if a.peer_runs is None else a.peer_runs
    tools = [t for t in a.tools.split(",") if t]
    lib.prepare(debs=False)
    started = dt.datetime.now(dt.timezone.utc)
    out = BENCH / "results" / f"scale-{started:%Y%m%dT%H%M%SZ}.json"
    doc: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "versions": lib.versions(),
                           "floor_workers": a.floor_workers, "notes": a.note, "startup": startup(), "records": []}
    print("start-up:", doc["startup"], flush=True)
    try:
        for n in (int(x) for x in a.nodes.split(",")):
            doc["records"].append(bench_n(a, n, tools))
            doc["fits"] = fits(doc)
            out.write_text(json.dumps(doc, indent=1))
    finally:
        Lab(a.lab).down()
    print(f"results: {out}")
    print(table(doc))
    for tool, x in fits(doc).items():
        print(f"marginal cost per node, {tool}: wall {x['wall']}, CPU {x['cpu']}")
    for v in verdicts(doc):
        print(v)
    if not a.no_docs:
        write_docs()


if __name__ == "__main__":
    main()
