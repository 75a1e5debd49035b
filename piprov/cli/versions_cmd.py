"""`piprov versions`: the support matrix and the defaults."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from piprov.cli.app import out
from piprov.graph.versions import Matrix, load_matrix


def matrix_json(m: Matrix) -> dict[str, Any]:
    return {
        "components": {
            c.name: {
                "image": c.image,
                "lines": [{"line": x.name, "from": str(x.low), "until": str(x.high) if x.high else None,
                           "features": dict(x.features), "flags": {p: sorted(f) for p, f in x.flags.items()},
                           "sources": list(x.sources)} for x in c.lines],
            } for c in m.components.values()
        },
        "profiles": {
            p.name: {"description": p.description, "default": p.default, "lines": {c: list(n) for c, n in p.lines.items()},
                     "minimum": {c: str(v) for c, v in p.minimum.items()}, "images": dict(p.images)}
            for p in m.profiles.values()
        },
        "default_profile": m.default_profile.name,
    }


@click.command("versions")
@click.option("--json", "as_json", is_flag=True, help="The whole matrix (features, flags, sources) as JSON.")
@click.option("--sources", is_flag=True, help="Also list where each fact comes from (repository, tag, path).")
def versions_cmd(as_json: bool, sources: bool) -> None:
    """Show the versions piprov supports: the profiles and, per component, its version lines.

    A profile is a set of versions that work together. Your inventory's image
    tags pick one (its hyperkube decides); `piprov inventory validate` refuses
    a tag outside the matrix, or a mix no profile holds, naming file:line.
    docker and systemd are the nodes' own: `piprov plan` names a node whose
    docker or systemd is outside the profile, and `piprov status` shows them.

    \b
    Examples:
      piprov versions               the profiles and their default images
      piprov versions --sources     ... and where each fact was established
      piprov versions --json | jq '.components.etcd.lines[].features'

    The matrix is data: playbooks/versions.yaml.
    """
    m = load_matrix()
    if as_json:
        out.print_doc(matrix_json(m))
        return
    t = Table(title="profiles (the inventory's images pick one)", show_edge=False)
    t.add_column("component", no_wrap=True)
    for p in m.profiles.values():
        t.add_column(p.name + (" (default)" if p.default else ""))
    for comp in m.components.values():
        cells = []
        for p in m.profiles.values():
            text = p.supported_text(m, comp.name).replace(" or ", "\n")
            tag = p.images.get(comp.image or "")
            cells.append(escape(text + (f"\ndefault tag {tag}" if tag else "")))
        t.add_row(comp.name, *cells)
    t.add_row("pause", *[escape(f"default tag {p.images.get('pause', '-')}") for p in m.profiles.values()])
    out.print(t)
    for comp in m.components.values():
        out.print(f"\n[bold]{comp.name}[/]" + (f" (the tag of images.{comp.image})" if comp.image else " (a node fact)"))
        for line in comp.lines:
            feats = ", ".join(f"{k}={v}" for k, v in line.features.items())
            out.print(f"  {escape(line.name)}  {escape(line.range_text)}: {escape(feats)}")
            if sources:
                for s in line.sources:
                    out.print(f"      [dim]{escape(s)}[/]")
