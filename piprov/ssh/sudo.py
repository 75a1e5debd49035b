"""The commands that become root on a node: ``sudo -n``, or sudo with a password on stdin.

Without a password piprov runs ``sudo -n sh -c CMD``: it never waits for a
prompt, and a node whose sudo wants a password says so ("sudo: a password is
required", sudo's message with -n; sudo 1.9, plugins/sudoers/auth/sudo_auth.c)
and the run asks for it once (:func:`needs_password`).

With a password, the password is the first line of the command's stdin and
nowhere else: not in argv (the remote ``ps`` shows only the shell below), not
in the environment (a shell variable, never exported), not in logs. The shell
reads that line itself, then:

- ``sudo -n`` works (NOPASSWD, or a cached timestamp): run CMD that way, the
  rest of stdin goes to CMD, the password to no one;
- else check the password alone (``sudo -S -p '' -v`` fed only that line: a
  wrong password is one failed try, not the script's lines taken as more tries),
  then ``sudo -k -S -p '' sh -c CMD`` fed the line then the rest of stdin: ``-S``
  reads the password from stdin up to the newline, ``-p ''`` prints no prompt,
  ``-k`` ignores the timestamp ``-v`` just cached so sudo always reads that line
  (sudo(8): -S, -p, -k, -v).
"""

from __future__ import annotations

import shlex

from piprov.ssh.secrets import Secret

# The wrapper's own exit code and stderr line when sudo refuses the password.
EXIT_PASSWORD_REFUSED = 121
PASSWORD_REFUSED = "PIPROV-SUDO-PASSWORD-REFUSED"
_NEEDS_PASSWORD = ("a password is required", "a terminal is required")


def sudo_command(command: str) -> str:
    """``command`` as root without a password (never prompts)."""
    return f"sudo -n sh -c {shlex.quote(command)}"


def sudo_password_command(command: str) -> str:
    """``command`` as root; the password is the first line of stdin (see the module doc)."""
    q = shlex.quote(command)
    return (
        "IFS= read -r p || exit 1; "
        f"if sudo -n sh -c : 2>/dev/null; then unset p; exec sudo -n sh -c {q}; fi; "
        "if ! printf '%s\\n' \"$p\" | sudo -S -p '' -v 2>/dev/null; then "
        f"unset p; echo {PASSWORD_REFUSED} >&2; exit {EXIT_PASSWORD_REFUSED}; fi; "
        f"{{ printf '%s\\n' \"$p\"; unset p; exec cat; }} | sudo -k -S -p '' sh -c {q}"
    )


def password_stdin(password: Secret, stdin: bytes | None) -> bytes:
    """The stdin of :func:`sudo_password_command`: the password line, then the command's own input."""
    return password.reveal().encode() + b"\n" + (stdin or b"")


def needs_password(exit_code: int, stdout: str, stderr: str) -> bool:
    """Did ``sudo -n`` refuse because it wanted a password (and CMD never ran)?"""
    return exit_code == 1 and not stdout and any(m in stderr for m in _NEEDS_PASSWORD) and "sudo" in stderr


def password_refused(exit_code: int, stderr: str) -> bool:
    return exit_code == EXIT_PASSWORD_REFUSED and PASSWORD_REFUSED in stderr
