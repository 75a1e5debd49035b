"""A daemon's own config file against the flags piprov's unit gives it (dockerd and daemon.json).

dockerd refuses to start when a key of /etc/docker/daemon.json is also one of
its flags (the playbook's ``daemon_config`` cites where): a daemon.json with
``"bridge"`` next to piprov's ``--bridge=cbr0`` leaves the node without its
main docker at the next restart. The planner names the file and the key and
plans nothing for the node; it never edits the user's file.
"""

from __future__ import annotations

import json
import shlex

from piprov.errors import PlanError
from piprov.facts.model import FileFacts, NodeFacts
from piprov.plan.desired import ConfigCheck, DesiredNode
from piprov.plan.dropins import entries


def exec_start_flags(unit_text: str) -> list[tuple[str, str]]:
    """(flag name, as written) of the last non-empty ``ExecStart=`` of a unit file's [Service]."""
    commands = [v for section, key, v in entries(unit_text) if (section, key) == ("Service", "ExecStart") and v]
    flags = []
    for word in shlex.split(commands[-1] if commands else "")[1:]:
        if word.startswith("-") and word != "-":
            flags.append((word.lstrip("-").split("=", 1)[0], word))
    return flags


def check_daemon_configs(desired: DesiredNode, facts: NodeFacts) -> None:
    """Raise :class:`PlanError` when a config file on the node would make a daemon of piprov's units
    refuse to start; every clash of the node in one error. Pure."""
    clashes: dict[str, list[str]] = {}  # "path: key" -> "unit (flag)"
    for check in desired.config_checks:
        f = facts.file(check.path)
        units = [(df.path.rsplit("/", 1)[1], df.content.decode()) for df in desired.files_for(check.component)
                 if df.is_unit_file and df.path.endswith(".service")]
        data = _read(check, f, [u for u, _ in units], desired.name)
        for unit, text in units:
            for name, written in exec_start_flags(text):
                if check.key_of(name) in data:
                    clashes.setdefault(f"{check.path}: key {check.key_of(name)!r}", []).append(f"{unit} {written}")
    if clashes:
        said = "; ".join(f"{k} is also piprov's {', '.join(v)}" for k, v in clashes.items())
        raise PlanError(f"{said}: a daemon refuses to start with a setting given both as a flag and in its "
                        "config file", host=desired.name,
                        hint="remove those keys from the file (piprov's units set them), then run piprov again")


def _read(check: ConfigCheck, f: FileFacts, units: list[str], host: str) -> dict[str, object]:
    if not f.exists:
        return {}
    who = " and ".join(units) or check.component
    if not f.is_regular or f.text is None:
        raise PlanError(f"{check.path}: cannot read it to check it against the flags of {who}", host=host,
                        hint="the daemon reads it at every start; make it a small JSON file, or remove it")
    try:
        data = json.loads(f.text) if f.text.strip() else {}
    except ValueError as e:
        raise PlanError(f"{check.path} is not valid JSON (line {getattr(e, 'lineno', '?')}): {who} would "
                        "refuse to start", host=host, hint=f"fix or remove {check.path}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{check.path} is not a JSON object: {who} would refuse to start", host=host,
                        hint=f"fix or remove {check.path}")
    return data
