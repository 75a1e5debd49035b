"""The shell of the health probes that run on the node (unit, docker_socket, file).

A gate waits *on the node*, inside one command bounded by coreutils
``timeout``: however long it waits, it costs one round trip, and it ends the
moment the check passes. On failure the command prints what the node sees.
"""

from __future__ import annotations

import shlex

from piprov.errors import PiprovError
from piprov.graph.model import HealthCheck

# A command that succeeds once logged in: proves a login works, changes nothing.
LOGIN_PROBE = "true"

# How often a remote wait loop re-checks; the loop itself is bounded by
# coreutils `timeout`, so this only sets the latency of noticing success.
_REMOTE_POLL = "0.1"


def check_command(check: HealthCheck) -> str:
    """The shell test for an on-node probe (exit 0 = healthy)."""
    t = shlex.quote(check.target)
    if check.probe == "unit":
        # Units are (re)started with --no-block: until the queued job has run,
        # "active" may still describe the old process.
        return f"! systemctl list-jobs --no-legend 2>/dev/null | grep -q -w -F {t} && systemctl is-active --quiet {t}"
    if check.probe == "docker_socket":
        return f"docker -H {_docker_host(check.target)} version --format '{{{{.Server.Version}}}}' >/dev/null 2>&1"
    if check.probe == "file":
        return f"test -s {t}"
    raise PiprovError(f"probe kind {check.probe!r} does not run on the node")


def _docker_host(target: str) -> str:
    """A docker -H value: playbooks give a URL, a bare path means a unix socket."""
    return shlex.quote(target if "://" in target else f"unix://{target}")


def wait_command(check: HealthCheck) -> str:
    """One command waiting up to ``check.timeout`` for the probe to pass; prints 'healthy' or what it saw."""
    test = check_command(check)
    give_up = ""
    if check.probe == "unit":
        # A unit that is down with nothing queued (its start failed for good, or
        # a dependency failed) will not come up by waiting: say so at once.
        # Restart=always units read "activating" between attempts, not this.
        t = shlex.quote(check.target)
        give_up = (f"if ! systemctl list-jobs --no-legend 2>/dev/null | grep -q -w -F {t}; then "
                   f"case $(systemctl is-active {t}) in inactive|failed) exit 1;; esac; fi; ")
    wait = f"until {test}; do {give_up}sleep {_REMOTE_POLL}; done"
    secs = max(1, int(check.timeout + 0.999))
    # On failure, say what the node sees, so the summary can show it.
    explain = {
        "unit": _explain_unit(shlex.quote(check.target)),
        "docker_socket": f"docker -H {_docker_host(check.target)} version 2>&1 | tail -n 3",
        "file": f"ls -l {shlex.quote(check.target)} 2>&1",
    }[check.probe]
    return (
        f"if timeout {secs} sh -c {shlex.quote(wait)}; then echo healthy; "
        f"else {explain}; exit 1; fi"
    )


def _explain_unit(t: str) -> str:
    """What a unit gate that gave up saw: the journal's last lines, then its state and queued job.

    The state comes last because the summary keeps the last 8 lines: a status
    whose "Active:" line was cut once left a running kubelet unexplained (was
    it deactivating, or waiting behind a job?). `systemctl show -p` prints
    key=value in every systemd piprov supports (215 on); a property that
    release lacks is left out, not an error.
    """
    return (f"systemctl status --no-pager --lines=4 {t} 2>&1 | tail -n 5; "
            f"echo \"state: $(systemctl show -p ActiveState -p SubState -p NRestarts {t} 2>&1 | tr '\\n' ' ')\"; "
            f"jb=$(systemctl list-jobs --no-legend 2>/dev/null | grep -w -F {t}); echo \"jobs: ${{jb:-none}}\"")
