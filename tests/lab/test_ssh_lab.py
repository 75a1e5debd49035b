"""SSH and sudo as people have them (issue 15), on a real lab with real sshd and sudo.

One 2-node lab for the module (pi1 = rpi-master, pi2 = rpi-node-1). The
read-only tests come first (ssh_config alias, ssh-agent, RSA key, a missing
identity file); the last test puts pi2 behind pi1 (its namespace accepts SSH
from pi1 alone) and makes its sudo want a password, then provisions both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from labkit import PIPROV

from piprov_lab.lab import Lab

pytestmark = pytest.mark.lab

SUDO_PASSWORD = "Sudo-Pw-0x5eed-7f3a"


@pytest.fixture(scope="module")
def ssh_lab(lab_factory: Callable[..., Lab]) -> Lab:
    return lab_factory("ssh", nodes=2)


def _inventory(lab: Lab, path: Path, *, keep: tuple[str, ...] = ("known_hosts", "connect_timeout", "host_key_policy"),
               nodes: dict[str, dict[str, Any]] | None = None, **ssh: Any) -> Path:
    """The lab's inventory with only the ``keep`` ssh settings (plus ``ssh``), and per-node ssh settings."""
    doc = yaml.safe_load(lab.inventory_yaml())
    doc["ssh"] = {k: v for k, v in doc["ssh"].items() if k in keep} | ssh
    for n in doc["nodes"]:
        if nodes and n["name"] in nodes:
            n["ssh"] = nodes[n["name"]]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _piprov(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIPROV, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _clean_env(home: Path) -> dict[str, str]:
    """No personal ssh setup: an empty HOME, no agent, no ssh_config unless a test gives one."""
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "PIPROV_SSH_CONFIG": "none", "SSH_AUTH_SOCK": ""}


def _planned(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert p.returncode in (0, 2), p.stderr
    plan = json.loads(p.stdout)
    assert not plan.get("errors"), plan.get("errors")
    return plan


def _errors_of(p: subprocess.CompletedProcess[str]) -> Any:
    """The ``errors`` of a ``--json`` run (what a failed assertion should show), or its raw stdout."""
    try:
        return json.loads(p.stdout).get("errors") or p.stdout[-3000:]
    except ValueError:
        return p.stdout[-3000:]


def _units_journal(lab: Lab, node: str) -> str:
    """The end of the node's journal for piprov's units: what a failed `up` there needs to be read."""
    return lab.exec(node, "journalctl -b --no-pager -o short-monotonic -u 'k8s-*' -u 'docker*' | tail -n 60",
                    check=False).stdout


def _one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    for needle in needles:
        assert needle in p.stderr + p.stdout, (needle, p.stderr, p.stdout)


def test_a_host_alias_in_an_ssh_config_is_honoured(ssh_lab: Lab, tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "home")
    inv = _inventory(ssh_lab, tmp_path / "inventory.yaml")  # no user, port or identity_file
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host rpi-master rpi-node-1\n  User pirate\n  Port 22\n  IdentityFile {ssh_lab.identity_file}\n"
                   "  IdentitiesOnly yes\n")
    _one_line_error(_piprov("plan", "--json", "-i", str(inv), env=env), "no SSH key to log in")
    _planned(_piprov("plan", "--json", "-i", str(inv), env={**env, "PIPROV_SSH_CONFIG": str(cfg)}))
    _planned(_piprov("-F", str(cfg), "plan", "--json", "-i", str(inv), env=env))
    # The inventory wins: a user it sets beats the alias's.
    cfg.write_text(cfg.read_text().replace("User pirate", "User nobody"))
    _planned(_piprov("-F", str(cfg), "plan", "--json", "-i", str(_inventory(ssh_lab, tmp_path / "i2.yaml",
                                                                            user="pirate")), env=env))
    _one_line_error(_piprov("-F", str(cfg), "plan", "--json", "-i", str(inv), env=env), "'nobody' refused")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_a_key_held_only_by_ssh_agent_logs_in(ssh_lab: Lab, tmp_path: Path, agent: str) -> None:
    env = _clean_env(tmp_path / "home")
    key = tmp_path / "agent_only_key"
    key.write_bytes(ssh_lab.identity_file.read_bytes())
    key.chmod(0o600)
    subprocess.run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": agent}, check=True,
                   capture_output=True)
    key.unlink()  # the agent holds the only copy
    inv = _inventory(ssh_lab, tmp_path / "inventory.yaml", user="pirate")
    _planned(_piprov("plan", "--json", "-i", str(inv), env={**env, "SSH_AUTH_SOCK": agent}))


def test_an_rsa_key_logs_in(ssh_lab: Lab, tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "home")
    key = tmp_path / "id_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-C", "rsa-test", "-f", str(key)],
                   check=True)
    for n in ssh_lab.nodes:
        ssh_lab.exec(n.name, "cat >> /home/pirate/.ssh/authorized_keys", input=Path(f"{key}.pub").read_text())
    inv = _inventory(ssh_lab, tmp_path / "inventory.yaml", user="pirate", identity_file=str(key))
    _planned(_piprov("plan", "--json", "-i", str(inv), env=env))
    log = ssh_lab.exec("pi1", "journalctl -b --no-pager -o cat -u ssh | grep 'Accepted publickey' | tail -n 3").stdout
    assert "RSA SHA256:" in log, log


def test_a_missing_identity_file_is_one_line_naming_it(ssh_lab: Lab, tmp_path: Path) -> None:
    env = _clean_env(tmp_path / "home")
    inv = _inventory(ssh_lab, tmp_path / "inventory.yaml", user="pirate", identity_file=str(tmp_path / "nope"))
    p = _piprov("plan", "--json", "-i", str(inv), env=env)
    _one_line_error(p, f"identity file {tmp_path / 'nope'} does not exist", "rpi-master")
    assert "cannot reach" not in p.stdout + p.stderr


class _PsSampler:
    """`ps -eo args` inside a node, over and over while a run goes on."""

    def __init__(self, lab: Lab, node: str) -> None:
        self.lab, self.node = lab, node
        self.samples: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.lab.exec(self.node, "ps -eo args", check=False).stdout)
            # Often enough to catch each sudo (piprov's sudo lives as long as its
            # round trip), rarely enough not to load the node it watches.
            time.sleep(0.1)

    def __enter__(self) -> _PsSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_behind_a_bastion_with_a_sudo_password_up_converges(ssh_lab: Lab, tmp_path: Path) -> None:
    lab = ssh_lab
    env = _clean_env(tmp_path / "home")
    lab.restrict_ssh("pi2", only_from="pi1")
    lab.require_sudo_password("pi2", SUDO_PASSWORD)
    keep = ("user", "port", "identity_file", "known_hosts", "connect_timeout", "host_key_policy")
    direct = _inventory(lab, tmp_path / "direct.yaml", keep=keep)
    p = _piprov("plan", "--json", "-i", str(direct), env=env)
    assert p.returncode == 1 and "refused the connection" in json.dumps(json.loads(p.stdout)["errors"]), p.stdout

    inv = _inventory(lab, tmp_path / "inventory.yaml", keep=keep, nodes={"rpi-node-1": {"proxy_jump": "rpi-master"}})
    p = _piprov("plan", "--json", "-i", str(inv), env=env)
    assert p.returncode == 1 and "sudo on the node needs a password" in p.stdout, (p.stdout, p.stderr)
    p = _piprov("plan", "--json", "-i", str(inv), env={**env, "PIPROV_SUDO_PASSWORD": "wrong-one"})
    assert p.returncode == 1 and "sudo refused the password" in p.stdout, (p.stdout, p.stderr)
    assert "wrong-one" not in p.stdout + p.stderr

    secret_env = {**env, "PIPROV_SUDO_PASSWORD": SUDO_PASSWORD}
    with _PsSampler(lab, "pi2") as ps:
        up = _piprov("up", "--json", "-i", str(inv), env=secret_env, timeout=900)
    assert up.returncode == 0, (_errors_of(up), up.stderr[-3000:], _units_journal(lab, "pi2"))
    again = _piprov("up", "--json", "-i", str(inv), env=secret_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"ok": True, "changed": False,
                                        "round_trips": {"rpi-master": 1, "rpi-node-1": 1}}
    plan = _piprov("plan", "--json", "-i", str(inv), env=secret_env)
    assert plan.returncode == 0, plan.stdout
    journal = lab.exec("pi2", "journalctl -b --no-pager -o cat", check=False).stdout
    sudo_ran = [s for s in ps.samples if "sudo -k -S -p" in s]
    assert sudo_ran, "the sampler never saw piprov's sudo on the node"
    for where, text in [("up", up.stdout + up.stderr), ("re-run", again.stdout + again.stderr),
                        ("plan", plan.stdout + plan.stderr), ("journal", journal), *(("ps", s) for s in ps.samples)]:
        assert SUDO_PASSWORD not in text, where
