"""Node shell for `piprov keys`: the user's key into authorized_keys, password login off.

Both scripts change how the node is entered, so both leave a working login
behind whatever happens: files are built beside their target and renamed over
it, and sshd's new configuration is checked with ``sshd -t`` (and rolled back
if refused) before sshd reloads. :mod:`piprov.keys` decides when they run.
"""

from __future__ import annotations

import shlex
from typing import Protocol

from piprov.shell.script import TEMP_PREFIX

# Sorts before the distribution's and the image's own drop-ins: in sshd the
# first value read for a keyword wins.
SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-piprov-no-password.conf"
SSHD_DROPIN_TEXT = (
    "# written by `piprov keys --disable-password`: key login only (verified before this was written)\n"
    "PasswordAuthentication no\n"
    "KbdInteractiveAuthentication no\n"
)


class AuthorizedKey(Protocol):
    """An OpenSSH public key: its base64 blob, and its authorized_keys line."""

    @property
    def blob(self) -> str: ...

    @property
    def line(self) -> str: ...


def install_key_script(key: AuthorizedKey) -> str:
    """sh run as the login user: append the key to authorized_keys unless there, atomically.

    Prints ``present`` or ``added``. The new file is built next to the old one
    and renamed over it, so a cut connection leaves the old file or the new.
    """
    blob = shlex.quote(key.blob)
    line = shlex.quote(key.line)
    return (
        "set -u; umask 077; d=\"$HOME/.ssh\"; a=\"$d/authorized_keys\"\n"
        'mkdir -p "$d" && chmod 700 "$d" || exit 1\n'
        f'if [ -f "$a" ] && grep -qF -- {blob} "$a"; then echo present; exit 0; fi\n'
        f't=$(mktemp "$d/{TEMP_PREFIX}XXXXXX") || exit 1\n'
        '{ if [ -f "$a" ]; then cat "$a"; [ -z "$(tail -c 1 "$a")" ] || echo; fi; '
        f"printf '%s\\n' {line}; }} > \"$t\" && chmod 600 \"$t\" && mv -f \"$t\" \"$a\" "
        '|| { rm -f "$t"; exit 1; }\n'
        "echo added\n"
    )


def disable_password_script() -> str:
    """sh run as root: key-only sshd, validated before reload, rolled back if invalid.

    Uses the drop-in directory when sshd_config includes it (OpenSSH >= 8.2,
    as on current Raspberry Pi OS); older sshd (HypriotOS 1.x, OpenSSH 6.7) gets
    the same two lines at the top of sshd_config, marked, written atomically.
    """
    text = shlex.quote(SSHD_DROPIN_TEXT)
    return (
        "set -u; c=/etc/ssh/sshd_config; d=" + shlex.quote(SSHD_DROPIN) + "\n"
        "if grep -qiE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config.d/' \"$c\"; then\n"
        f'  t=$(mktemp /etc/ssh/sshd_config.d/{TEMP_PREFIX}XXXXXX) || exit 1\n'
        f"  printf '%s' {text} > \"$t\" && chmod 644 \"$t\" && mv -f \"$t\" \"$d\" || {{ rm -f \"$t\"; exit 1; }}\n"
        '  undo() { rm -f "$d"; }\n'
        "else\n"
        '  cp -p "$c" "$c.piprov-bak" || exit 1\n'
        f'  t=$(mktemp /etc/ssh/{TEMP_PREFIX}XXXXXX) || exit 1\n'
        # cp -p gives the temp file sshd_config's mode and owner (busybox chmod
        # has no --reference); the redirection then replaces its content only.
        '  cp -p "$c" "$t" && '
        f"{{ printf '%s' {text}; grep -v '^# written by .piprov keys' \"$c\"; }} > \"$t\" "
        '&& mv -f "$t" "$c" || { rm -f "$t"; exit 1; }\n'
        '  undo() { mv -f "$c.piprov-bak" "$c"; }\n'
        "fi\n"
        'sshd=$(command -v sshd || echo /usr/sbin/sshd)\n'
        'if ! "$sshd" -t; then undo; echo "sshd -t rejected the change; rolled back" >&2; exit 1; fi\n'
        "systemctl reload ssh 2>/dev/null || systemctl reload sshd || exit 1\n"
        '"$sshd" -T 2>/dev/null | grep -qi "^passwordauthentication no" || '
        '{ echo "sshd still allows passwords after the reload" >&2; exit 1; }\n'
        "echo disabled\n"
    )
