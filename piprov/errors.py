"""The one exception tree of piprov.

Every error a user can meet derives from :class:`PiprovError`. Messages are
written for the person at the keyboard: they say what went wrong, where (host,
file, line, column), and what to do next. Only the CLI turns them into output
and exit codes; nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a file, 1-based, as editors show it."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class PiprovError(Exception):
    """Root of every error piprov raises on purpose.

    ``hint`` is the next step for the user; ``host`` names the node involved;
    ``location`` the file position. ``exit_code`` is what the CLI returns.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        host: str | None = None,
        location: Location | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.host = host
        self.location = location

    def __str__(self) -> str:
        prefix = ""
        if self.location is not None:
            prefix += f"{self.location}: "
        if self.host is not None:
            prefix += f"{self.host}: "
        return prefix + self.message


class ProblemList(PiprovError):
    """Several independent problems found in one pass (e.g. validation).

    Validation reports every problem at once so the user fixes them in one go.
    """

    def __init__(self, summary: str, problems: list[PiprovError], *, hint: str | None = None) -> None:
        super().__init__(summary, hint=hint)
        self.problems = problems

    def __str__(self) -> str:
        lines = [self.message] + [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class InventoryError(PiprovError):
    """The inventory file is missing, malformed or inconsistent."""


class InventoryNotFoundError(InventoryError):
    """The inventory file does not exist (yet)."""


class GraphError(PiprovError):
    """The component graph in playbooks/ has a cycle or a dangling reference."""


class RenderError(PiprovError):
    """A template could not be rendered (missing variable, syntax error)."""


class PlanError(PiprovError):
    """The node's state is such that no plan can be made without losing something of the user's."""


class FactsError(PiprovError):
    """A node's facts output could not be understood."""


class CheckError(FactsError):
    """A node's preflight check (`piprov check`) could not run, or its output could not be understood."""


class CheckRefused(PiprovError):
    """`piprov up` refused the node: its preflight check found what would certainly fail there.

    ``findings``: each failing finding as plain words (code, title, severity,
    breaks, fix), for the CLI's text and --json; the message names them all.
    """

    def __init__(self, message: str, *, findings: tuple[dict[str, str], ...] = (), hint: str | None = None,
                 host: str | None = None) -> None:
        super().__init__(message, hint=hint, host=host)
        self.findings = findings

    @property
    def named(self) -> str:
        """The failing findings by title and code, in one short line."""
        return ", ".join(f"{f['title']} ({f['code']})" for f in self.findings)


class TransportError(PiprovError):
    """SSH to a node failed: unreachable, authentication, command error."""


class AuthenticationError(TransportError):
    """The node refused the login (key or password): reachable, but not ours to enter."""


class HostKeyError(TransportError):
    """A node's host key is unknown or has changed; nothing is done on it."""


class LockError(PiprovError):
    """Another piprov run holds the lock."""


class DiscoveryError(PiprovError):
    """mDNS discovery could not run or returned unusable answers."""


class ClusterError(PiprovError):
    """The Kubernetes API refused or failed an operation (drain, delete...)."""


class BackupError(PiprovError):
    """`piprov backup` could not take, read or check an etcd backup (``host``: the master)."""


class RestoreError(BackupError):
    """`piprov restore` refused a backup or could not put it back on the master (``host``: the master)."""


# -- why SSH failed: each a TransportError, so callers that only care "the node
# could not be reached" keep catching that; the CLI shows the real cause.


class KeyFileError(TransportError):
    """A local key file (identity file) is missing, unreadable or not a key."""


class PassphraseError(AuthenticationError):
    """A key file is protected by a passphrase that was not (or wrongly) given."""


class UnreachableError(TransportError):
    """Nothing answered at the node's address and port (refused, no route, no such name)."""


class ConnectTimeoutError(TransportError):
    """The node (or the jump host) did not answer within the connect timeout."""


class JumpHostError(TransportError):
    """The jump host (ProxyJump) could not be reached, or refused to forward to the node."""


class SudoPasswordError(TransportError):
    """sudo on the node needs a password that was not given, or refused the one given."""


class ResetError(PiprovError):
    """`piprov reset` would not go ahead (the master alone, an unknown node), or left something behind."""


class FixError(PiprovError):
    """`piprov check --fix` could not make a node's fixes, or the node did not come back from its reboot."""
