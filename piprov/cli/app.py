"""The root command group, shared output helpers and error-to-exit-code mapping."""

from __future__ import annotations

import importlib
import json as _json
import os
import sys
from pathlib import Path
from typing import Self, Sequence

import click
from rich.console import Console
from rich.live import Live

from piprov.errors import PiprovError, ProblemList
from piprov.inventory.model import HostKeyPolicy

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_CHECK_FAILED = 3  # `piprov check`: a finding fails
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130

# Data goes to stdout (pipeable, --json); progress and errors go to stderr.
# Piped into a file or a CI log, rich would squeeze tables into 80 columns and
# abbreviate every header: give them room instead ($COLUMNS still wins).
def _width(stream: object) -> int | None:
    isatty = getattr(stream, "isatty", None)
    if os.environ.get("COLUMNS") or (isatty is not None and isatty()):
        return None
    return 160


class _Stdout(Console):
    """stdout's console, with ``print_doc`` for every command's ``--json``."""

    def print_doc(self, doc: object) -> None:
        """``doc`` as ``print_json(json.dumps(doc))`` prints it; off a terminal written as it is
        encoded, never held whole as text (the plan of 250 nodes is ~9 MB of it). Off a terminal
        rich prints no colours but still highlights the text span by span and renders it line by
        line: for that plan seconds and tens of MB for the bytes ``json.dump`` writes (rich.json.JSON:
        loads, then dumps with indent 2, ensure_ascii False)."""
        if self.is_terminal:
            super().print_json(_json.dumps(doc))
            return
        _json.dump(doc, self.file, indent=2, ensure_ascii=False)
        self.file.write("\n")
        self.file.flush()


out = _Stdout(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, width=_width(sys.stderr))

DEFAULT_INVENTORY = "inventory.yaml"


def inventory_option(f: click.decorators.FC) -> click.decorators.FC:
    """`-i/--inventory PATH`, also from $PIPROV_INVENTORY."""
    return click.option(
        "-i",
        "--inventory",
        "inventory_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("PIPROV_INVENTORY", DEFAULT_INVENTORY),
        show_default=f"$PIPROV_INVENTORY or {DEFAULT_INVENTORY}",
        help="The inventory file describing the fleet.",
    )(f)


def _host_key_policy(ctx: click.Context, param: click.Parameter, trust: bool) -> HostKeyPolicy | None:
    return "tofu" if trust else None


def _prompt_secret(question: str) -> str:
    if not sys.stdin.isatty():
        return ""
    answer: str = click.prompt(question[:1].upper() + question[1:], hide_input=True, err=True, default="",
                               show_default=False)
    if "\n" in answer:
        raise click.UsageError("a password cannot hold a newline")
    return answer


def _ask_sudo_password(ctx: click.Context, param: click.Parameter, ask: bool) -> None:
    from piprov.ssh import secrets

    secrets.current().sudo = secrets.sudo_from_env(_prompt_secret if ask else None, ask=ask)


def sudo_password_option(f: click.decorators.FC) -> click.decorators.FC:
    """`--ask-sudo-password`: one prompt, before any node is reached, for the whole fleet."""
    return click.option(
        "--ask-sudo-password",
        is_flag=True,
        expose_value=False,
        callback=_ask_sudo_password,
        help="Ask once for the sudo password of the nodes' SSH user (for nodes whose sudo is not "
        "passwordless; $PIPROV_SUDO_PASSWORD in scripts). It goes to sudo on stdin only.",
    )(f)


def skip_checks_option(f: click.decorators.FC) -> click.decorators.FC:
    """`--skip-checks` of `up` and `node add`: delivers ``skip_checks``."""
    return click.option(
        "--skip-checks", is_flag=True,
        help="Do not run the cheap preflight checks on the nodes to change (cgroups, arch, versions, clock, "
        "disk space, power: `piprov check` without the SD card measure), and apply even to a node they would "
        "refuse: when you know better than a finding (a node that is not a Pi, a vcgencmd that lies) or the "
        "check itself cannot run there.",
    )(f)


def trust_option(f: click.decorators.FC) -> click.decorators.FC:
    """`--trust-new-hosts`: the one way to ask for trust on first use; delivers ``policy``, the HostKeyPolicy.

    Every command that reaches nodes has it, and with it `--ask-sudo-password`.
    """
    f = sudo_password_option(f)
    return click.option(
        "--trust-new-hosts",
        "policy",
        is_flag=True,
        callback=_host_key_policy,
        help="Pin the host key of nodes seen for the first time (trust on first use). "
        "A CHANGED key still stops work on that node.",
    )(f)


class LiveView:
    """Base of the live progress views: a rich Live on a terminal, none elsewhere.

    Subclasses set ``self.live`` (or leave it None and print a line per event).
    """

    live: Live | None = None

    def __enter__(self) -> Self:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)


class ExitWith(Exception):
    """Raised by a command to end with a specific exit code after printing."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# Every run pays for the imports of every command it could have been: `up`
# does not need zeroconf, ruamel's writer or the rolling logic, and a no-op
# `up` is a second or less. So a command's module is imported when it runs
# (or when --help lists it).
COMMANDS = {
    "up": "piprov.cli.cluster:up_cmd",
    "plan": "piprov.cli.cluster:plan_cmd",
    "status": "piprov.cli.cluster:status_cmd",
    "graph": "piprov.cli.cluster:graph_cmd",
    "kubeconfig": "piprov.cli.kubeconfig_cmd:kubeconfig_cmd",
    "discover": "piprov.cli.discover_cmd:discover_cmd",
    "inventory": "piprov.cli.inventory_cmd:inventory",
    "node": "piprov.cli.node_cmd:node",
    "keys": "piprov.cli.keys_cmd:keys_cmd",
    "versions": "piprov.cli.versions_cmd:versions_cmd",
    "certs": "piprov.cli.certs_cmd:certs_cmd",
    "check": "piprov.cli.check_cmd:check_cmd",
    "reset": "piprov.cli.reset_cmd:reset_cmd",
    "backup": "piprov.cli.backup_cmd:backup_cmd",
    "restore": "piprov.cli.restore_cmd:restore_cmd",
}
# Command groups that live outside the product (the virtual lab) register
# themselves through this entry point.
PLUGIN_GROUP = "piprov.commands"


class LazyGroup(click.Group):
    """The root group: commands are imported by name, plugins found by entry point."""

    def _plugins(self) -> dict[str, str]:
        from importlib.metadata import entry_points

        return {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in COMMANDS}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS, *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            target = COMMANDS.get(cmd_name) or self._plugins().get(cmd_name)
            if target is None:
                return None
            module, _, attr = target.partition(":")
            try:
                command = getattr(importlib.import_module(module), attr)
            except ImportError:
                if cmd_name in COMMANDS:
                    raise
                return None  # a plugin whose package is gone: as if it were not there
            if not isinstance(command, click.Command):
                return None
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


def _ssh_session(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    from piprov.ssh import secrets

    secrets.configure(secrets.Session(ssh_config=path, passphrase_prompt=_prompt_secret,
                                      sudo=secrets.sudo_from_env()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="piprov")
@click.option("-F", "--ssh-config", metavar="FILE", expose_value=False, callback=_ssh_session, is_eager=True,
              help="The ssh_config to read (default: $PIPROV_SSH_CONFIG, else ~/.ssh/config; `none`: none). "
              "It fills in what the inventory leaves out: User, Port, IdentityFile, IdentitiesOnly, "
              "ProxyJump; whatever the inventory sets wins.")
def cli() -> None:
    """piprov turns a shelf of Raspberry Pis into a Kubernetes cluster, and keeps it that way.

    \b
    A typical first day:
      piprov discover                 find the Pis on the LAN (mDNS)
      piprov discover --add           put them in inventory.yaml
      piprov keys --disable-password  your SSH key on every node, then no more pirate/hypriot
      piprov check                    preflight: what on each node would break the cluster
      piprov plan                     see what `up` would change, and why
      piprov up                       provision the whole cluster
      piprov status                   node x component health
      piprov kubeconfig --use         merge it into ~/.kube/config, make it current

    \b
    Later: `piprov node add/remove`, `piprov up --rolling`, `piprov certs`,
    `piprov reset [NODE]...` (back to freshly flashed Pis; `up` rebuilds).

    Try it without hardware: `piprov lab up` boots virtual Pis on this machine
    and `piprov lab inventory > inventory.yaml` points piprov at them.

    SSH works as with OpenSSH: ssh-agent keys, ~/.ssh/config (or -F FILE) for
    what the inventory does not set (the inventory wins), jump hosts
    (ssh.proxy_jump or ProxyJump), passphrases asked once per run.

    \b
    Exit codes: 0 ok / nothing to change, 1 error, 2 plan has changes,
    3 a check failed, 64 bad command line, 130 interrupted.
    """


def error_line(e: PiprovError) -> str:
    """A PiprovError in one line: where (file, node), what, and the next step.

    The one way errors that do not end the command (a node that could not be
    planned, a step that never started) are shown, in text and in JSON.
    """
    return f"{e} (hint: {e.hint})" if e.hint else str(e)


def report_error(e: PiprovError) -> None:
    """Print a PiprovError for the person at the keyboard."""
    if isinstance(e, ProblemList):
        err.print(f"[bold red]error:[/] {_escape(e.message)}")
        for p in e.problems:
            err.print(f"  [red]•[/] {_escape(str(p))}")
            if p.hint:
                err.print(f"    [dim]{_escape(p.hint)}[/]")
    else:
        err.print(f"[bold red]error:[/] {_escape(str(e))}")
    # A step that failed because of a node's own error raises its own error
    # `from` it: both are said, each with its next step.
    if isinstance(e.__cause__, PiprovError):
        err.print(f"  [red]because:[/] {_escape(error_line(e.__cause__))}")
    if e.hint:
        err.print(f"[yellow]hint:[/] {_escape(e.hint)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def run(argv: Sequence[str]) -> int:
    """Run the CLI and return the exit code instead of raising SystemExit."""
    try:
        cli.main(args=list(argv), prog_name="piprov", standalone_mode=False)
    except ExitWith as e:
        return e.code
    except PiprovError as e:
        report_error(e)
        return e.exit_code
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.Abort:
        err.print("[red]aborted[/]")
        return EXIT_INTERRUPTED
    except click.UsageError as e:
        e.show()
        return EXIT_USAGE
    except click.ClickException as e:
        e.show()
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        return EXIT_INTERRUPTED
    return EXIT_OK
