"""The command line: the only place that prints and decides exit codes.

Exit codes (stable, for scripts):
  0   success; for `plan`, nothing to change
  1   an error (the message names host, file and line where it can)
  2   `plan` found changes to make (like terraform's -detailed-exitcode)
  64  the command line itself was wrong (unknown option, missing argument)
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click

from piprov.cli.app import EXIT_USAGE, cli, run
from piprov.cli.cluster import graph_cmd, kubeconfig_cmd, plan_cmd, status_cmd, up_cmd
from piprov.cli.discover_cmd import discover_cmd
from piprov.cli.inventory_cmd import inventory
from piprov.cli import keys_cmd as _keys_cmd  # noqa: F401 - registers `keys` and `node forget-key`
from piprov.cli.node_cmd import node

for _command in (up_cmd, plan_cmd, status_cmd, graph_cmd, kubeconfig_cmd):
    cli.add_command(_command)
cli.add_command(inventory)
cli.add_command(node)
cli.add_command(discover_cmd)

__all__ = ["cli", "main"]


def _load_plugins() -> None:
    # Command groups that live outside the product (the virtual lab) register
    # themselves through the "piprov.commands" entry point.
    for ep in entry_points(group="piprov.commands"):
        if ep.name in cli.commands:
            continue
        try:
            command = ep.load()
        except ImportError:
            continue
        if isinstance(command, click.Command):
            cli.add_command(command, ep.name)


def main(argv: list[str] | None = None) -> None:
    _load_plugins()
    code = run(argv if argv is not None else sys.argv[1:])
    sys.exit(code if code is not None else EXIT_USAGE)
