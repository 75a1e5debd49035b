"""Plan actions -> one POSIX shell script per step, and running it safely.

The script is what a node executes; it needs only sh, coreutils and systemd.
Every line that can fail is preceded by ``step WHAT``; a failure prints
``PIPROV-FAILED-STEP: WHAT`` and stops, so the run's summary can say what the
node was doing. When a unit does not start, its journal goes with the error.

Files are written the way an atomic editor would: into a temp file in the
target's own directory (same filesystem, so rename is atomic), checked against
the planned checksum, given mode and owner, flushed, then renamed over the
target. A power cut leaves either the old file or the new one, plus at worst a
``.piprov-tmp.*`` file that the next run removes.

The script itself travels on stdin and is only executed once it has arrived
whole (its checksum is verified on the node first): a dropped connection can
never run half a script.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import shlex
from dataclasses import dataclass
from typing import Iterable, Sequence

from piprov.plan.actions import (
    Action,
    DisableUnits,
    EtcdSet,
    RemoveFile,
    RemoveStaleTemps,
    SetHostname,
    Systemctl,
    WriteFile,
)
from piprov.transport import CommandResult, Transport

TEMP_PREFIX = ".piprov-tmp."
# Where a script lands on the node before it is checked and run.
RUNNER_PREFIX = "/tmp/piprov-apply."
STALE_RUNNER_MINUTES = 15  # > the longest apply (provision.APPLY_TIMEOUT, 10 min)

# Exit codes of the wrapper, chosen not to clash with sh's own.
EXIT_SCRIPT_GARBLED = 98
EXIT_NO_TEMP = 97


@dataclass(frozen=True)
class ApplyOutcome:
    ok: bool
    result: CommandResult
    failed_step: str | None  # what the script was doing when it stopped

    @property
    def detail(self) -> str:
        if self.ok:
            return ""
        noise = ("PIPROV-FAILED-STEP: ", 'See "systemctl status')
        lines = [ln for ln in (self.result.stderr or self.result.stdout).splitlines()
                 if ln.strip() and not ln.startswith(noise)]
        base = "\n".join(lines[-8:])
        return f"{self.failed_step}: {base}" if self.failed_step else base


def _q(s: str) -> str:
    return shlex.quote(s)


PRELUDE = """\
set -u
umask 022
step() { PIPROV_STEP="$*"; }
fail() { printf 'PIPROV-FAILED-STEP: %s\\n' "$PIPROV_STEP" >&2; exit 1; }
"""


def write_file(f: WriteFile) -> str:
    """Shell that writes one file atomically (see module docstring)."""
    d = posixpath.dirname(f.path) or "/"
    digest = hashlib.sha256(f.content).hexdigest()
    payload = base64.encodebytes(f.content).decode("ascii")
    mode = format(f.mode & 0o7777, "04o")
    owner = f"{f.owner}:{f.group}"
    return (
        f"step write {_q(f.path)}\n"
        f"mkdir -p {_q(d)} || fail\n"
        f't=$(mktemp {_q(d + "/" + TEMP_PREFIX)}XXXXXX) || fail\n'
        f"base64 -d > \"$t\" <<'PIPROV_EOF' || {{ rm -f \"$t\"; fail; }}\n"
        f"{payload}"
        "PIPROV_EOF\n"
        f'[ "$(sha256sum < "$t" | cut -c1-64)" = {digest} ] || {{ rm -f "$t"; fail; }}\n'
        f'chmod {mode} "$t" && chown {_q(owner)} "$t" && sync "$t" || {{ rm -f "$t"; fail; }}\n'
        f'mv -f "$t" {_q(f.path)} || {{ rm -f "$t"; fail; }}\n'
    )


def remove_stale_temps(dirs: Iterable[str]) -> str:
    """Shell removing temp files an interrupted earlier run left behind.

    Only piprov's own prefix, only in directories piprov manages; the caller
    holds the cluster lock, so no other run is writing them right now.
    """
    lines = []
    for d in sorted(set(dirs)):
        lines.append(f"rm -f {_q(d)}/{TEMP_PREFIX}* 2>/dev/null")
    # A script whose upload was cut while the controller died too (no FIN
    # ever reaches the node) waits half-received in /tmp until sshd gives up
    # on the session, ~2 h later. Older than any apply may run, it is garbage
    # (and a script still running from it keeps its open file).
    lines.append(f"find /tmp -maxdepth 1 -type f -name '{RUNNER_PREFIX.rsplit('/', 1)[1]}*' "
                 f"-mmin +{STALE_RUNNER_MINUTES} -exec rm -f {{}} + 2>/dev/null")
    return "\n".join(lines) + ("\n" if lines else "")


def disable_units(units: Sequence[str]) -> str:
    """Stop and disable the units that exist, in ONE systemctl call.

    Units that do not exist are not an error (a half-provisioned node); one
    stop call makes one transaction, so a socket cannot re-activate the service
    stopped next to it. `systemctl stop` then `systemctl disable`, not
    `disable --now`: --now came in systemd 220 (systemd/systemd-stable v220
    NEWS, "CHANGES WITH 220": "systemctl enable, systemctl disable and
    systemctl mask now support a new --now switch"), piprov supports 215 on
    (playbooks/versions.yaml, systemd's directive table).
    """
    names = " ".join(_q(u) for u in units)
    return (
        "present=''\n"
        f"for u in {names}; do systemctl cat \"$u\" >/dev/null 2>&1 && present=\"$present $u\"; done\n"
        "step systemctl stop$present\n"
        'if [ -n "$present" ]; then systemctl stop $present || fail; fi\n'
        "step systemctl disable$present\n"
        'if [ -n "$present" ]; then systemctl disable --quiet $present || fail; fi\n'
        "echo \"stopped:$present\"\n"
    )


def command(a: Action) -> str:
    """The one command line an action runs as."""
    if isinstance(a, Systemctl):
        flags = (" --quiet" if a.quiet else "") + (" --no-block" if a.no_block else "") + (
            " --no-reload" if a.no_reload else "")
        cmd = f"systemctl {a.verb}{flags}" + "".join(f" {_q(u)}" for u in a.units)
        return cmd + " 2>/dev/null || true" if a.best_effort else cmd
    if isinstance(a, SetHostname):
        # HypriotOS's device-init (both generations) sets the running name with hostname(1); so do we there.
        # cloud-init's update_hostname leaves a name alone once it differs from the one it last set
        # ("assuming user maintained hostname", cloudinit/distros/__init__.py update_hostname).
        if a.method in ("hostnamectl", "cloud-init"):
            return f"hostnamectl set-hostname {_q(a.name)}"
        return f"hostname {_q(a.name)}"
    if isinstance(a, EtcdSet):
        return f"{a.etcdctl} set {_q(a.key)} {_q(a.value)}"
    if isinstance(a, RemoveFile):
        return f"rm -f {_q(a.path)}"
    raise TypeError(f"{type(a).__name__} is not one command")


def commands(actions: Iterable[Action]) -> list[str]:
    return [command(a) for a in actions]


def script(actions: Iterable[Action], *, journal: Sequence[str] = ()) -> str:
    """The shell doing ``actions`` in order, stopping at the first failure.

    With ``journal`` (the units being started), a failed command shows their
    last journal lines: when a unit does not start, that says why.
    """
    units = " ".join(f"-u {_q(u)}" for u in journal)
    on_fail = f"{{ journalctl --no-pager -o cat -n 6 {units} >&2; fail; }}" if units else "fail"
    body = ""
    for a in actions:
        if isinstance(a, WriteFile):
            body += write_file(a)
        elif isinstance(a, RemoveStaleTemps):
            body += remove_stale_temps(a.dirs)
        elif isinstance(a, DisableUnits):
            body += disable_units(a.units)
        else:
            cmd = command(a)
            body += f"step {cmd}\n{cmd} || {on_fail}\n"
    return body


def wrap(body: str) -> str:
    return PRELUDE + body + "exit 0\n"


def runner_command(script: bytes) -> str:
    """The command that receives ``script`` on stdin and runs it only if whole."""
    digest = hashlib.sha256(script).hexdigest()
    return (
        f"f=$(mktemp {RUNNER_PREFIX}XXXXXX) || exit {EXIT_NO_TEMP}; "
        'cat > "$f"; '
        f'if [ "$(sha256sum < "$f" | cut -c1-64)" = {digest} ]; then sh "$f"; rc=$?; '
        f"else rc={EXIT_SCRIPT_GARBLED}; fi; "
        'rm -f "$f"; exit $rc'
    )


def run_script(transport: Transport, script: str, *, timeout: float = 300) -> ApplyOutcome:
    """Run ``script`` as root on the node in one round trip."""
    data = script.encode()
    res = transport.run(runner_command(data), sudo=True, stdin=data, timeout=timeout)
    failed = None
    if not res.ok:
        if res.exit_code == EXIT_SCRIPT_GARBLED:
            failed = "the script arrived incomplete and was not run"
        for line in res.stderr.splitlines():
            if line.startswith("PIPROV-FAILED-STEP: "):
                failed = line.split(": ", 1)[1]
    return ApplyOutcome(res.ok, res, failed)


def run_actions(transport: Transport, actions: Iterable[Action], *, journal: Sequence[str] = (),
                timeout: float = 300) -> ApplyOutcome:
    """Do ``actions`` on the node: one script, one round trip."""
    return run_script(transport, wrap(script(actions, journal=journal)), timeout=timeout)
