"""Secrets asked once per run: key passphrases and the sudo password.

A :class:`Secret` never shows its value in ``repr``/``str`` (so no log line,
exception or ``--json`` can carry it by accident); :class:`AskOnce` asks its
prompt at most once however many nodes need the answer at the same time (one
prompt for the whole fleet). The CLI installs the prompts (:func:`configure`);
without one, a secret that is needed is an error naming what to do.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paramiko

SUDO_PASSWORD_ENV = "PIPROV_SUDO_PASSWORD"
SSH_CONFIG_ENV = "PIPROV_SSH_CONFIG"

Prompt = Callable[[str], str]


class Secret:
    """A string that does not say what it is."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class AskOnce:
    """The answer to one question, asked at most once per run (threads wait for the first asker)."""

    def __init__(self, question: str, prompt: Prompt | None, given: Secret | None = None) -> None:
        self.question = question
        self.prompt = prompt
        self._value = given
        self._asked = given is not None
        self._lock = threading.Lock()

    def get(self) -> Secret | None:
        """The secret, asking for it now if it was not given yet; None if there is no way to ask."""
        with self._lock:
            if not self._asked and self.prompt is not None:
                self._asked = True
                answer = self.prompt(self.question)
                self._value = Secret(answer) if answer else None
            return self._value

    @property
    def known(self) -> Secret | None:
        """The secret if it is known already, without asking."""
        with self._lock:
            return self._value


@dataclass
class Session:
    """What one piprov run shares between its SSH connections.

    ``ssh_config``: the ssh_config file to read (None: ``$PIPROV_SSH_CONFIG``, else
    ``~/.ssh/config`` if it exists; the string "none" reads none, as ``ssh -F none``).
    """

    ssh_config: str | None = None
    passphrase_prompt: Prompt | None = None
    sudo: AskOnce = field(default_factory=lambda: AskOnce("sudo password for the nodes", None))
    _passphrases: dict[str, AskOnce] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _config: paramiko.SSHConfig | None = field(default=None, repr=False)

    def lock_for(self, name: str) -> threading.Lock:
        """One lock per name (a key file): the first thread loads it, the others wait and reuse it."""
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())

    def passphrase(self, key_file: str) -> AskOnce:
        """The passphrase of ``key_file``, asked once per run (and per key file)."""
        with self._lock:
            if key_file not in self._passphrases:
                self._passphrases[key_file] = AskOnce(f"passphrase for {key_file}", self.passphrase_prompt)
            return self._passphrases[key_file]

    def config(self) -> paramiko.SSHConfig:
        """The run's ssh_config, read once."""
        from piprov.ssh.config import load_config

        with self._lock:
            if self._config is None:
                self._config = load_config(self.ssh_config_path())
            return self._config

    def ssh_config_path(self) -> Path | None:
        """The ssh_config file this run reads, or None."""
        chosen = self.ssh_config or os.environ.get(SSH_CONFIG_ENV) or None
        if chosen is not None:
            return None if chosen == "none" else Path(os.path.expanduser(chosen))
        default = Path(os.path.expanduser("~/.ssh/config"))
        return default if default.is_file() else None


def sudo_from_env(prompt: Prompt | None = None, ask: bool = False) -> AskOnce:
    """The run's sudo password: ``$PIPROV_SUDO_PASSWORD``, else asked up front (``ask``) or when first needed."""
    value = os.environ.get(SUDO_PASSWORD_ENV) or None
    holder = AskOnce("sudo password for the nodes", prompt, Secret(value) if value else None)
    if ask and value is None:
        holder.get()
    return holder


_session = Session(sudo=sudo_from_env())
_session_lock = threading.Lock()


def current() -> Session:
    """The run's session (the CLI configures it; library users get environment defaults)."""
    return _session


def configure(session: Session) -> None:
    global _session
    with _session_lock:
        _session = session
