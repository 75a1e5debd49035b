"""Plots of one bench/run.py results file (runs in the bench venv, which has matplotlib).

    /var/cache/piprov-bench/venv/bin/python bench/plot.py RESULTS.json OUTDIR
    /var/cache/piprov-bench/venv/bin/python bench/plot.py --scale SCALE.json OUT.png   (bench/scale.py's)
"""

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def scale_plot(results: Path, png: Path) -> None:
    """bench/scale.py's results: wall time and controller peak RSS against N, per tool."""
    doc = json.loads(results.read_text())
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2))
    for tool in ("piprov", "pyinfra", "floor"):
        ns, walls, lo, hi, rss = [], [], [], [], []
        for rec in doc["records"]:
            ok = [r for r in rec["runs"].get(tool, []) if r["ok"]]
            if not ok:
                continue
            w = [r["wall"] for r in ok]
            m = statistics.median(w)
            ns.append(rec["nodes"])
            walls.append(m)
            lo.append(m - min(w))
            hi.append(max(w) - m)
            rss.append(statistics.median(r["rss_mb"] for r in ok))
        if ns:
            ax.errorbar(ns, walls, yerr=[lo, hi], marker="o", capsize=3, label=tool)
            bx.plot(ns, rss, marker="o", label=tool)
    ax.set_xlabel("light lab nodes")
    ax.set_ylabel("wall time (s), median, min–max")
    ax.set_yscale("log")
    ax.set_title("facts + plan (pyinfra: --dry)")
    bx.set_xlabel("light lab nodes")
    bx.set_ylabel("controller peak RSS (MB)")
    bx.axhline(150, color="grey", linestyle=":", linewidth=1)
    bx.set_title("controller memory (dotted: 150 MB)")
    for x in (ax, bx):
        x.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(png)


if sys.argv[1] == "--scale":
    scale_plot(Path(sys.argv[2]), Path(sys.argv[3]))
    sys.exit(0)

doc = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
tag = sys.argv[3] if len(sys.argv) > 3 else ""
recs = doc["records"]
tools = list(dict.fromkeys(r["tool"] for r in recs))
cases = list(dict.fromkeys((r["nodes"], r["rtt_ms"]) for r in recs))
by = {(r["tool"], r["nodes"], r["rtt_ms"]): r for r in recs}
width = 0.8 / len(tools)

for kind, title, fname in (("noop", "no-op re-run (median, min–max)", "bench-noop.png"),
                           ("cold", "cold converge: tool run, and until every node Ready", "bench-cold.png")):
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, t in enumerate(tools):
        xs, ys, lo, hi = [], [], [], []
        for j, (n, rtt) in enumerate(cases):
            r = by.get((t, n, rtt))
            if not r:
                continue
            vals = [x["wall"] for x in r["noop"]] if kind == "noop" else [r["cold"]["wall"]]
            m = statistics.median(vals)
            xs.append(j + i * width)
            ys.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
        ax.bar(xs, ys, width, yerr=[lo, hi] if kind == "noop" else None, label=t, capsize=3)
        if kind == "cold":
            ready = [by[(t, n, rtt)]["cold"].get("ready_seconds") or 0 for (n, rtt) in cases if (t, n, rtt) in by]
            ax.scatter(xs, ready, marker="_", s=300, color="black", zorder=3)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
    ax.set_xticklabels([f"N={n}, +{rtt:g} ms" for n, rtt in cases])
    ax.set_ylabel("seconds")
    if kind == "noop":
        ax.set_yscale("log")
    ax.set_title(title + (" (black: all Ready)" if kind == "cold" else ", log scale"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / (tag + fname), dpi=110)
    print(out / (tag + fname))

fig, ax = plt.subplots(figsize=(10, 4.2))
for i, t in enumerate(tools):
    xs, cold, noop = [], [], []
    for j, (n, rtt) in enumerate(cases):
        r = by.get((t, n, rtt))
        if not r:
            continue
        xs.append(j + i * width)
        cold.append(statistics.median(v["commands"] for v in r["cold"]["ssh"].values()))
        noop.append(statistics.median(v["commands"] for v in r["noop"][-1]["ssh"].values()) if r["noop"] else 0)
    ax.bar(xs, cold, width, label=f"{t} cold", alpha=0.45)
    ax.bar(xs, noop, width * 0.6, label=f"{t} no-op")
ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
ax.set_xticklabels([f"N={n}, +{rtt:g} ms" for n, rtt in cases])
ax.set_yscale("log")
ax.set_ylabel("SSH commands per node (sshd sessions, median node)")
ax.set_title("round trips per node, counted by the node's sshd")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, not over them
fig.tight_layout()
fig.savefig(out / (tag + "bench-ssh.png"), dpi=110)
print(out / (tag + "bench-ssh.png"))
