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

from piprov.cli.app import EXIT_USAGE, cli, run

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    code = run(argv if argv is not None else sys.argv[1:])
    sys.exit(code if code is not None else EXIT_USAGE)
