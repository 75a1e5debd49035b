"""Tables, ratios and the docs page from bench/results/*.json (plots via bench/plot.py in the bench venv)."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DOCS = BENCH.parent / "docs"
VENV_PY = "/var/cache/piprov-bench/venv/bin/python"


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def rng(xs: list[float], fmt: str = "{:.2f}") -> str:
    if not xs:
        return "-"
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def per_node(ssh: dict[str, dict[str, int]], key: str) -> str:
    vals = sorted(v[key] for v in ssh.values())
    return f"{vals[0]}" if vals[0] == vals[-1] else f"{vals[0]}–{vals[-1]}"


def table(doc: dict[str, Any]) -> str:
    rows = ["| tool | N | RTT | cold run (s) | cold → all Ready (s) | no-op re-run (s), median (min–max) "
            "| SSH conns/node cold · no-op | commands/node cold · no-op |",
            "|---|---|---|---|---|---|---|---|"]
    for r in doc["records"]:
        c, noop = r["cold"], r["noop"]
        nw = [x["wall"] for x in noop if x["ok"]]
        flag = "" if c["ok"] and len(nw) == len(noop) else " ⚠ failed"
        rows.append(
            f"| {r['tool']}{flag} | {r['nodes']} | {r['rtt_ms']:g} ms | {c['wall']:.1f} | "
            f"{c['ready_seconds'] if c.get('ready_seconds') is not None else '-'} | {rng(nw)} | "
            f"{per_node(c['ssh'], 'connections')} · {per_node(noop[-1]['ssh'], 'connections') if noop else '-'} | "
            f"{per_node(c['ssh'], 'commands')} · {per_node(noop[-1]['ssh'], 'commands') if noop else '-'} |"
        )
    return "\n".join(rows)


def ratios(doc: dict[str, Any]) -> str:
    lines = []
    groups: dict[tuple[int, float], dict[str, dict[str, Any]]] = {}
    for r in doc["records"]:
        groups.setdefault((r["nodes"], r["rtt_ms"]), {})[r["tool"]] = r
    for (n, rtt), g in sorted(groups.items()):
        if "piprov" not in g:
            continue
        p = g["piprov"]
        pn = med([x["wall"] for x in p["noop"]])
        parts = []
        for peer, target in (("pyinfra", 5), ("ansible-default", 30), ("ansible-tuned", 30)):
            if peer in g:
                x = med([y["wall"] for y in g[peer]["noop"]])
                ratio = x / pn
                parts.append(f"{peer} {ratio:.1f}× (target ≥ {target}×: {'met' if ratio >= target else 'MISSED'})")
        c = p["cold"]
        if c.get("critical_path"):
            parts.append(
                f"cold wall / critical path = {c['wall']:.1f} / {c['critical_path']:.1f} s = "
                f"{c['wall'] / c['critical_path']:.2f} (apply phase alone {c['apply_wall'] / c['critical_path']:.2f}; "
                f"goal ≤ 1.15)"
            )
        lines.append(f"- N={n}, RTT {rtt:g} ms: piprov no-op {pn:.2f} s; no-op speed-up vs " + "; ".join(parts))
    return "\n".join(lines)


def latest() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for p in sorted(RESULTS.glob("run-*.json")):
        out.append((p, json.loads(p.read_text())))
    return out


def write_docs() -> None:
    runs = latest()
    DOCS.mkdir(exist_ok=True)
    plots: dict[Path, list[str]] = {}
    for path, _ in runs[-3:]:
        res = subprocess.run([VENV_PY, str(BENCH / "plot.py"), str(path), str(DOCS), path.stem + "-"],
                             capture_output=True, text=True)
        plots[path] = [line for line in res.stdout.splitlines() if line.endswith(".png")]
        if res.returncode:
            print("plots failed:", res.stderr[-800:])
    body = [
        "# Benchmarks: piprov, pyinfra and ansible-core on the virtual Pi lab",
        "",
        "Regenerate: `sudo .venv/bin/python bench/run.py --quick` (3 nodes, < 15 min), "
        "`bench/run.py --nodes 3,6,12` (the full matrix, 0 and +20 ms RTT; Ansible takes most of its ~2 h) or "
        "`bench/run.py --report-only` (this page from bench/results/). `--tools` and `--into` redo single cells.",
        "",
        "Method (bench/run.py, bench/lib.py, bench/peers/):",
        "- Same deploy for every tool: the seed stack's files exactly as piprov renders them (bench/peers/spec.py "
        "reads one node's facts and takes piprov's plan: byte-identical files, checked by `piprov plan` exiting 0 "
        "after an Ansible run), hostname the HypriotOS way, daemon-reload, units enabled and started in the "
        "graph's component order. piprov gates each step on its health checks; the peers have none, so they poll "
        "the same conditions with shell `until` loops (0.1 s) and skip the node-Ready gate: for every tool, "
        "\"cold → all Ready\" is polled from outside after the tool returns.",
        "- Fresh lab nodes for every cold run (lab down + up). ansible-core: python3 installed into each node "
        "first (not in its times; Ansible's design needs Python on the Pi, piprov and pyinfra do not). "
        "Ansible default = as installed (fact gathering, 5 forks, no pipelining; its stock ssh_args already use "
        "ControlPersist=60s); tuned = pipelining, ControlPersist=600s, forks = N, no fact gathering.",
        "- SSH connections and commands are counted on the node, from sshd's journal at LogLevel VERBOSE "
        "(`Accepted publickey` per connection, `Starting session:` per command/channel), the same for all tools. "
        "Ansible's 0 connections on a no-op: it reused the ControlPersist master connection of the run before.",
        "- A 2-core machine, sometimes shared (each run says with what): figures are medians with ranges; "
        "compare tools only within one run. piprov is byte-compiled like the pip-installed peers, and no tool "
        "inherits PYTHONDONTWRITEBYTECODE from the shell.",
        "",
    ]
    for path, doc in reversed(runs[-3:]):
        v = doc.get("versions", {})
        tools = sorted({r["tool"] for r in doc["records"]})
        kind = "--quick" if doc.get("quick") else ("full" if len(tools) == 4 else "partial: " + ", ".join(tools))
        body += [f"## Run {doc['started']} ({kind}; {path.name}; "
                 f"ansible-core {v.get('ansible-core')}, pyinfra {v.get('pyinfra')}, {doc.get('seconds', '?')} s)",
                 ""]
        sittings = doc.get("sittings", [])
        if len(sittings) > 1:
            body += ["Measured in " + str(len(sittings)) + " sittings on the same machine and lab image "
                     "(`bench/run.py --into`): " + "; ".join(
                         f"{st['started']}: {', '.join(st.get('tools', ['?']))} at N = "
                         f"{', '.join(map(str, st.get('nodes', ['?'])))}, RTT {', '.join(f'{x:g}' for x in st.get('rtt_ms', []))} ms"
                         for st in sittings) + ". A later sitting's record replaces an earlier one of the same cell.", ""]
        body += [f"- {note}" for note in doc.get("notes", [])] + ([""] if doc.get("notes") else [])
        body += [table(doc), "", ratios(doc), ""]
        for png in plots.get(path, []):
            body += [f"![{Path(png).stem}]({Path(png).name})", ""]
    extra = BENCH / "results" / "extra.md"
    if extra.exists():
        body += [extra.read_text()]
    (DOCS / "benchmarks.md").write_text("\n".join(body) + "\n")
    print(f"wrote {DOCS / 'benchmarks.md'}")
