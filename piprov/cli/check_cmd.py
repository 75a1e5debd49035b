"""`piprov check`: the read-only preflight of every node (or the ones named), as a table or --json."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import click
from rich.markup import escape
from rich.table import Table

from piprov.check import CheckFacts, NodeCheck, check_fleet, load_book
from piprov.cli.app import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK, ExitWith, err, error_line, inventory_option, out, \
    trust_option
from piprov.fleet import Fleet
from piprov.graph import load_graph
from piprov.inventory import load
from piprov.inventory.model import HostKeyPolicy, Inventory

if TYPE_CHECKING:
    from piprov.fix import FixReport

_STATUS = {"ok": "[green]✓ ok[/]", "warn": "[yellow]! warn[/]", "fail": "[bold red]✗ fail[/]"}


@click.command("check")
@click.argument("nodes", nargs=-1, metavar="[NODE]...")
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="Print every node's facts and findings as JSON on stdout.")
@click.option("--fix", is_flag=True, help="Then make the fixes that are file edits (cmdline.txt, with a backup; swap "
              "off; the iptables backend) and reboot the nodes that need it one at a time, the rolling way.")
@click.option("--yes", "-y", is_flag=True, help="With --fix: do not ask for confirmation (for scripts).")
@trust_option
def check_cmd(nodes: tuple[str, ...], inventory_path: Path, as_json: bool, fix: bool, yes: bool,
              policy: HostKeyPolicy | None) -> None:
    """Preflight: what on each node would break the cluster, and how to fix it. Changes nothing.

    One SSH command per node (all at once) looks at: the OS and its flavour
    (HypriotOS, Raspberry Pi OS, Debian), the kernel's and the userland's
    architecture (a 64-bit kernel under a 32-bit userland is common on Pis),
    the cgroup hierarchy and the memory controller (in the running kernel and
    as cmdline.txt configures it), swap, iptables (legacy or nf_tables),
    docker's and systemd's versions against the support matrix, the clock
    against this machine's, free space on / and the boot filesystem,
    under-voltage and throttling (where vcgencmd exists), and how long the SD
    card takes for a synchronous write: a few small fsync'd writes to a temp
    file next to etcd's data (removed at once). etcd waits for every one: when
    they are slow the finding says so and gives --heartbeat-interval and
    --election-timeout tuned to the measure.

    Every warning or failure says what it breaks and how to fix it. The
    thresholds and the words are data: playbooks/check/checks.yaml.

    \b
      piprov check                     every node of the inventory
      piprov check rpi-master          only these nodes
      piprov check --json | jq '.nodes[].findings[] | select(.severity != "ok")'

    With --fix, piprov then mends what is a file edit or a switch, on every
    node at once, and reboots the nodes whose kernel must read it again one at a
    time (drain, reboot, back with a new boot, Ready, uncordon): the memory
    cgroup (cmdline.txt gets cgroup_enable=memory cgroup_memory=1; a backup
    cmdline.txt.piprov-bak is kept beside it), cgroup v2 under an old docker
    (systemd.unified_cgroup_hierarchy=0), swap (off now and at boot), iptables
    on nf_tables (the legacy backend). Everything else is said and left to you.
    Then it checks again and reports as without --fix.

    \b
    Exit code: 0 every finding ok or warn, 3 a finding fails,
    1 a node could not be checked (unreachable, no sudo), 64 an unknown node.
    """
    inventory = load(inventory_path)
    known = [n.name for n in inventory.nodes]
    unknown = [n for n in nodes if n not in known]
    if unknown:
        raise click.UsageError(f"no node {', '.join(unknown)} in {inventory_path} (it has: {', '.join(known)})")
    graph, book = load_graph(), load_book()
    with Fleet.connect(inventory, list(dict.fromkeys(nodes)) or None, policy=policy) as fleet:
        with err.status("checking every node (one SSH command each)…"):
            checks = check_fleet(inventory, graph, book, fleet)
        fixed = _fix(inventory, checks, fleet, yes=yes) if fix else None
        if fixed is not None:
            with err.status("checking again…"):
                checks = check_fleet(inventory, graph, book, fleet)
    if as_json:
        out.print_doc({"ok": not any(c.worst == "fail" for c in checks) and not (fixed and fixed.errors),
                                   "nodes": [check_json(c) for c in checks],
                                   **({"fix": fix_json(fixed)} if fixed is not None else {})})
    else:
        print_checks(checks)
    code = EXIT_ERROR if fixed is not None and fixed.errors else exit_code(checks)
    if code != EXIT_OK:
        raise ExitWith(code)


def _fix(inventory: Inventory, checks: Sequence[NodeCheck], fleet: Fleet, *, yes: bool) -> FixReport | None:
    """Say what --fix would do, ask, do it under the run lock; None when there was nothing to do."""
    from piprov.fix import fix_fleet, plan_fix
    from piprov.provision import run_lock

    fixes = [f for f in (plan_fix(c) for c in checks) if f.changed]
    for f in fixes:
        err.print(f"[bold]{escape(f.node)}[/]: " + "; ".join(escape(d) for d in f.done))
    if not fixes:
        err.print("--fix: nothing piprov can mend (what is left is said below)")
        return None
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("--fix changes nodes and reboots some: pass --yes to confirm without a terminal")
        reboots = sum(f.reboot for f in fixes)
        click.confirm(f"Fix {len(fixes)} node(s), {reboots} of them rebooted one at a time?", abort=True, err=True)
    with run_lock(inventory):
        report = fix_fleet(inventory, checks, fleet, say=lambda s: err.print(f"[dim]{escape(s)}[/]"))
    for name, e in report.errors.items():
        err.print(f"[bold red]✗ {escape(name)}[/]: {escape(error_line(e))}")
    err.print(f"--fix: {len(report.applied)} node(s) fixed, {len(report.rebooted)} rebooted"
              + (f", {len(report.errors)} failed" if report.errors else ""))
    return report


def exit_code(checks: Sequence[NodeCheck]) -> int:
    """1 when a node could not be checked (the answer is incomplete), else 3 when a finding fails, else 0."""
    if any(c.error is not None for c in checks):
        return EXIT_ERROR
    return EXIT_CHECK_FAILED if any(c.failed for c in checks) else EXIT_OK


def fix_json(r: FixReport) -> dict[str, Any]:
    return {"fixed": r.applied, "rebooted": r.rebooted, "errors": {n: error_line(e) for n, e in r.errors.items()},
            "done": {n: list(f.done) for n, f in r.fixes.items() if f.changed}}


def check_json(c: NodeCheck) -> dict[str, Any]:
    return {"node": c.node, "worst": c.worst, "error": error_line(c.error) if c.error else None,
            "facts": facts_json(c.facts) if c.facts else None,
            "findings": [dataclasses.asdict(f) for f in c.findings]}


def facts_json(f: CheckFacts) -> dict[str, Any]:
    """What the node said, as plain values (no file contents: cmdline.txt is read for its cgroup words only)."""
    plain = {k.name: getattr(f, k.name) for k in dataclasses.fields(f) if k.name not in ("node", "os_values")}
    plain = json.loads(json.dumps(plain, default=lambda o: dataclasses.asdict(o)))
    n = f.node
    return {"hostname": n.hostname, "machine": n.machine, "os_id": n.os_id, "os_version": n.os_version,
            "os_pretty": f.os_values.get("PRETTY_NAME"), "flavour": f.flavour, "uptime": n.uptime,
            "versions": dict(n.versions), **plain}


def print_checks(checks: Sequence[NodeCheck]) -> None:
    """The table (node, check, status, detail), then what breaks and the fix of every warn and fail."""
    t = Table(show_edge=False)
    for col in ("node", "check", "status", "detail"):
        t.add_column(col, no_wrap=col != "detail")
    for c in checks:
        if c.error is not None:
            t.add_row(escape(c.node), "-", "[bold red]✗ error[/]", f"[red]{escape(error_line(c.error))}[/]")
            continue
        for i, f in enumerate(c.findings):
            t.add_row(escape(c.node) if i == 0 else "", escape(f.title), _STATUS[f.severity], escape(f.detail))
        t.add_section()
    out.print(t)
    for c in checks:
        for f in c.findings:
            if f.severity == "ok":
                continue
            out.print(f"\n{_STATUS[f.severity]} [bold]{escape(c.node)}[/]: {escape(f.title)} [dim]({f.code})[/]")
            out.print(f"  [bold]breaks:[/] {escape(f.breaks)}")
            out.print(f"  [bold]fix:[/]    {escape(f.fix)}")
    counts = {s: sum(1 for c in checks for f in c.findings if f.severity == s) for s in ("warn", "fail")}
    errors = sum(1 for c in checks if c.error is not None)
    err.print(f"{len(checks)} node(s) checked: {counts['fail']} failed, {counts['warn']} warnings"
              + (f", {errors} could not be checked" if errors else ""))
