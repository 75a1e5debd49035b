"""The house rules of docs/architecture.md, checked: data flows one way.

Modelled on python-zeroconf's tests/test_circular_imports.py: every module
imports on its own in a fresh interpreter (an import cycle hidden by the
order the test suite happens to import things in shows up there). On top of
that, a static import graph of piprov/ and piprov_lab/ (imports inside
functions and under TYPE_CHECKING count too: a lazy import is still a
dependency) must have no cycle, and some rooms may not reach others at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("piprov", "piprov_lab")
# Stand-in components are baked into lab images and run there, not imported.
EXCLUDED = ("piprov_lab/images/",)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if any(rel.startswith(x) for x in EXCLUDED):
                continue
            out[_module_name(path)] = path
    return out


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """Module names an import statement depends on (only ours and third-party tops)."""
    mods = modules()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        pkg = importer.split(".")
        is_pkg = mods.get(importer, Path()).name == "__init__.py"
        anchor = pkg if is_pkg else pkg[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    out = []
    for a in node.names:
        sub = f"{base}.{a.name}"
        out.append(sub if sub in mods else base)
    return out


@lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(d for d in _resolve(name, node) if d != name)
        graph[name] = deps
    return graph


def _ours(dep: str) -> str | None:
    """The module of ours that ``dep`` names (a.b.c may be attribute access of a.b)."""
    mods = modules()
    while dep and dep not in mods:
        dep = dep.rpartition(".")[0]
    return dep or None


def _internal_edges() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, deps in import_graph().items():
        out[name] = {m for d in deps if (m := _ours(d)) is not None and m != name}
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def reaches(start: str) -> set[str]:
    """Every module (ours and third-party, by top-level and full name) ``start`` imports, transitively."""
    graph = import_graph()
    seen: set[str] = set()
    todo = [start]
    deps: set[str] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for d in graph.get(m, ()):
            deps.add(d)
            ours = _ours(d)
            if ours is not None:
                deps.add(ours)
                todo.append(ours)
    return deps


def test_no_import_cycle() -> None:
    assert _cycles(_internal_edges()) == []


def test_the_product_never_imports_the_lab() -> None:
    offenders = {m: sorted(d for d in deps if d.split(".")[0] == "piprov_lab")
                 for m, deps in import_graph().items() if m.split(".")[0] == "piprov"}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_rich_and_click_only_in_the_cli() -> None:
    offenders = {m: sorted(d for d in deps if d.split(".")[0] in ("rich", "click"))
                 for m, deps in import_graph().items()
                 if m.startswith("piprov") and not m.startswith("piprov.cli") and not m.startswith("piprov_lab")}
    assert {m: d for m, d in offenders.items() if d} == {}


@pytest.mark.parametrize("forbidden", ["piprov.render", "piprov.transport", "piprov.health", "piprov.keys",
                                       "piprov.resources", "piprov.shell", "jinja2", "paramiko", "fabric"])
def test_the_planner_is_pure(forbidden: str) -> None:
    """The plan package turns desired state + facts into actions: it reads no file and talks to no node."""
    plan_modules = [m for m in modules() if m == "piprov.plan" or m.startswith("piprov.plan.")]
    assert plan_modules
    reached = set().union(*(reaches(m) for m in plan_modules))
    assert not {d for d in reached if d == forbidden or d.startswith(forbidden + ".")}


def _import_alone(name: str) -> tuple[str, int, str]:
    proc = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    return name, proc.returncode, proc.stderr[-2000:]


def test_every_module_imports_on_its_own() -> None:
    names = [m for m in modules() if not m.endswith("__main__")]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_import_alone, names))
    failed = {name: err for name, rc, err in results if rc != 0}
    assert failed == {}


@pytest.mark.parametrize("forbidden", ["piprov.render", "piprov.transport", "piprov.fleet", "piprov.shell",
                                       "piprov.http", "piprov.provision", "paramiko"])
def test_the_pki_talks_to_no_node(forbidden: str) -> None:
    """The cluster PKI makes files on the controller; putting them on nodes is the plan's and apply's job."""
    pki_modules = [m for m in modules() if m == "piprov.pki" or m.startswith("piprov.pki.")]
    assert pki_modules
    reached = set().union(*(reaches(m) for m in pki_modules))
    assert not {d for d in reached if d == forbidden or d.startswith(forbidden + ".")}


@pytest.mark.parametrize("forbidden", ["piprov.transport", "piprov.fleet", "piprov.shell", "piprov.render",
                                       "piprov.provision", "piprov.http", "paramiko"])
def test_the_check_judge_is_pure(forbidden: str) -> None:
    """piprov.check.judge turns facts + the book's thresholds into findings: it talks to no node."""
    reached = reaches("piprov.check.judge") | reaches("piprov.check.parse") | reaches("piprov.check.book")
    assert not {d for d in reached if d == forbidden or d.startswith(forbidden + ".")}


@pytest.mark.parametrize("forbidden", ["piprov.provision", "piprov.kube", "piprov.render", "piprov.http",
                                       "piprov.orchestrate", "piprov.health", "piprov.check"])
def test_the_backup_reaches_the_master_only_through_the_fleet(forbidden: str) -> None:
    """piprov.backup runs one command on the master over the fleet's transport: it plans, renders
    templates, waits and talks HTTP to nothing (etcd's version comes back in that command's output)."""
    backup_modules = [m for m in modules() if m == "piprov.backup" or m.startswith("piprov.backup.")]
    assert backup_modules
    reached = set().union(*(reaches(m) for m in backup_modules))
    assert not {d for d in reached if d == forbidden or d.startswith(forbidden + ".")}


@pytest.mark.parametrize("forbidden", ["piprov.fleet", "piprov.transport", "paramiko"])
def test_the_backups_script_and_archive_are_pure(forbidden: str) -> None:
    """The script builder and the archive (parse, pack, verify) talk to no node."""
    reached = reaches("piprov.backup.command") | reaches("piprov.backup.archive")
    assert not {d for d in reached if d == forbidden or d.startswith(forbidden + ".")}


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return (first.end_lineno or first.lineno) - first.lineno + 1
    return 0


def test_no_module_over_450_lines_and_no_function_over_60() -> None:
    """docs/architecture.md's size rule for piprov/ (piprov_lab/ and the stand-ins are test
    infrastructure): a function's docstring does not count, its code does."""
    big: list[str] = []
    for name, path in modules().items():
        if not name.startswith("piprov.") and name != "piprov":
            continue
        src = path.read_text()
        if src.count("\n") > 450:
            big.append(f"{path.relative_to(ROOT)}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1 - _docstring_lines(node)
                if n > 60:
                    big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not big, big
