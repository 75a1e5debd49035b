"""piprov.keys without a lab: key files, the authorized_keys script, forget-key on known_hosts."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest

from piprov.errors import PiprovError
from piprov.inventory.model import Node, SshSettings
from piprov.keys import forget_host_key, generate_keypair, parse_public_key
from piprov.shell.keys import disable_password_script, install_key_script
from piprov.transport import pin_host_key


def _node(address: str = "192.168.1.10", port: int = 22) -> Node:
    return Node(name="rpi-node-1", address=address, role="worker", ssh=SshSettings(port=port))


def test_generate_keypair_writes_private_0600_and_never_overwrites(tmp_path: Path) -> None:
    ident = tmp_path / "ssh" / "id_ed25519"
    key = generate_keypair(ident)
    assert key.kind == "ssh-ed25519"
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    assert Path(f"{ident}.pub").read_text().startswith("ssh-ed25519 ")
    paramiko.Ed25519Key.from_private_key_file(str(ident))  # loadable by the transport
    before = ident.read_bytes()
    with pytest.raises(PiprovError):
        generate_keypair(ident)
    assert ident.read_bytes() == before
    assert sorted(p.name for p in ident.parent.iterdir()) == ["id_ed25519", "id_ed25519.pub"]


@pytest.mark.parametrize("text", ["", "garbage", "ssh-ed25519 not-base64!!", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIN5l"])
def test_parse_public_key_rejects_garbage(text: str) -> None:
    with pytest.raises(PiprovError) as e:
        parse_public_key(text, "/x/id.pub")
    assert "/x/id.pub" in str(e.value)


def test_parse_public_key_cleans_comment(tmp_path: Path) -> None:
    key = generate_keypair(tmp_path / "id")
    line = f"{key.kind} {key.blob} me@host'; rm -rf /"
    assert parse_public_key(line, "x").comment == "me@hostrm-rf"


def _run_as_user(script: str, home: Path) -> str:
    p = subprocess.run(["sh", "-c", script], env={"HOME": str(home), "PATH": os.environ["PATH"]},
                       capture_output=True, text=True, check=True)
    return p.stdout.strip()


def test_install_key_script_is_idempotent_and_keeps_other_keys(tmp_path: Path) -> None:
    key = generate_keypair(tmp_path / "id")
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "authorized_keys").write_text("ssh-rsa AAAAB3other someone")  # no final newline
    assert _run_as_user(install_key_script(key), tmp_path / "home") == "added"
    assert _run_as_user(install_key_script(key), tmp_path / "home") == "present"
    lines = (ssh / "authorized_keys").read_text().splitlines()
    assert lines == ["ssh-rsa AAAAB3other someone", key.line]
    assert stat.S_IMODE((ssh / "authorized_keys").stat().st_mode) == 0o600
    assert sorted(p.name for p in ssh.iterdir()) == ["authorized_keys"]  # no temp file left


def test_install_key_script_creates_ssh_dir(tmp_path: Path) -> None:
    key = generate_keypair(tmp_path / "id")
    (tmp_path / "home").mkdir()
    assert _run_as_user(install_key_script(key), tmp_path / "home") == "added"
    assert stat.S_IMODE((tmp_path / "home/.ssh").stat().st_mode) == 0o700


def test_disable_password_script_is_valid_sh() -> None:
    subprocess.run(["sh", "-n", "-c", disable_password_script()], check=True)


def test_forget_key_removes_only_that_host(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    k1 = generate_keypair(tmp_path / "a")
    k2 = generate_keypair(tmp_path / "b")
    kh.write_text(
        "# my comment\n"
        f"192.168.1.10 {k1.kind} {k1.blob}\n"
        f"192.168.1.11 {k2.kind} {k2.blob}\n"
        f"[192.168.1.10]:2222 {k2.kind} {k2.blob}\n"
        f"192.168.1.10,alias {k2.kind} {k2.blob}\n"
    )
    kh.chmod(0o600)
    assert forget_host_key(kh, _node()) == 2
    assert kh.read_text() == (
        "# my comment\n"
        f"192.168.1.11 {k2.kind} {k2.blob}\n"
        f"[192.168.1.10]:2222 {k2.kind} {k2.blob}\n"
        f"alias {k2.kind} {k2.blob}\n"
    )
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600
    assert forget_host_key(kh, _node()) == 0
    assert forget_host_key(tmp_path / "missing", _node()) == 0
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_forget_key_finds_hashed_entries(tmp_path: Path) -> None:
    # What `ssh-keygen -H` or HashKnownHosts=yes leaves: only an HMAC of the name.
    kh = tmp_path / "known_hosts"
    k1 = generate_keypair(tmp_path / "a")
    mine = paramiko.HostKeys.hash_host("192.168.1.10")
    other = paramiko.HostKeys.hash_host("192.168.1.11")
    kh.write_text(f"{mine} {k1.kind} {k1.blob}\n{other} {k1.kind} {k1.blob}\n|1|garbage {k1.kind} {k1.blob}\n")
    assert forget_host_key(kh, _node()) == 1
    assert kh.read_text() == f"{other} {k1.kind} {k1.blob}\n|1|garbage {k1.kind} {k1.blob}\n"


def test_pins_racing_forget_key_are_never_lost(tmp_path: Path) -> None:
    """pin_host_key re-opens the file when forget-key renamed a new one over it."""
    kh = tmp_path / "known_hosts"
    keys = []
    for i in range(21):
        generate_keypair(tmp_path / f"k{i}")
        keys.append(paramiko.Ed25519Key.from_private_key_file(str(tmp_path / f"k{i}")))
    other = keys.pop()
    kh.write_text("")
    stop = threading.Event()
    forgotten = 0

    def churn() -> None:
        nonlocal forgotten
        while not stop.is_set():
            with open(kh, "a") as f:  # an entry to forget, so every round renames the file
                f.write(f"10.9.9.9 {other.get_name()} {other.get_base64()}\n")
            forgotten += forget_host_key(kh, _node("10.9.9.9"))

    t = threading.Thread(target=churn)
    t.start()
    try:
        for i, k in enumerate(keys):
            pin_host_key(kh, f"10.0.0.{i}", k)
    finally:
        stop.set()
        t.join()
    text = kh.read_text()
    assert forgotten > 0
    assert all(f"10.0.0.{i} " in text for i in range(20)), text


def test_plan_errors_keep_the_forget_key_hint() -> None:
    """A changed host key reaches `up`/`plan` output with the way out, not just the refusal."""
    from piprov.errors import HostKeyError
    from piprov.graph import load_graph
    from piprov.inventory.model import ImageSettings, Inventory, NetworkSettings
    from piprov.cli.app import error_line
    from piprov.provision import plan_cluster

    node = _node()
    inv = Inventory(Path("inventory.yaml"), "c", SshSettings(), ImageSettings(), NetworkSettings(),
                    (Node("rpi-master", "192.168.1.9", "master", SshSettings()), node), Path("known_hosts"))
    err = HostKeyError("HOST KEY CHANGED for 192.168.1.10", host=node.name,
                       hint=f"run `piprov node forget-key {node.name}`")
    plan = plan_cluster(inv, load_graph(), {"rpi-master": err, node.name: err})
    assert "piprov node forget-key rpi-node-1" in error_line(plan.errors[node.name])
