#!/usr/bin/env python3
"""The SSH floor: what any paramiko tool pays to run one command on every node, and nothing else.

    .venv/bin/python bench/ssh_floor.py HOSTS.json [--workers 16] [--command true]

HOSTS.json (bench/scale.py writes it from the lab): {"identity_file": PATH,
"known_hosts": PATH, "nodes": [[address, port, user], ...]}, the same key
and the same known_hosts as the lab inventory piprov runs with.

Per node, on a pool of ``--workers`` threads: TCP connect (TCP_NODELAY),
paramiko's handshake with the node's pinned host key type asked for first,
the host key checked STRICTLY against known_hosts (a missing or different key
is that node's failure), public-key login, one session running ``--command``
(no sudo), its exit status read, the connection closed at once. The key and
known_hosts are read once. Nothing of piprov is imported: the floor is
interpreter start-up + `import paramiko` + the connections.
Prints one JSON line: nodes ok, failures (node -> error), seconds.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import paramiko

# The same algorithm order as piprov's transport (piprov/transport.py FAST_KEX): the cheapest
# key exchange first; the node's sshd picks the first of ours it also has.
KEX = ("curve25519-sha256@libssh.org",)


def one(addr: str, port: int, user: str, key: paramiko.PKey, pinned: paramiko.HostKeys, command: str) -> None:
    name = addr if port == 22 else f"[{addr}]:{port}"
    known = pinned.lookup(name)
    if not known:
        raise RuntimeError(f"{name} is not in known_hosts")
    sock = socket.create_connection((addr, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = paramiko.Transport(sock)
    try:
        opts = t.get_security_options()
        opts.kex = [k for k in KEX if k in opts.kex] + [k for k in opts.kex if k not in KEX]
        keytype = known.keys()[0]
        if keytype in opts.key_types:
            opts.key_types = [keytype, *(k for k in opts.key_types if k != keytype)]
        t.start_client(timeout=20)
        got = t.get_remote_server_key()
        if known.get(got.get_name()) != got:
            raise RuntimeError(f"host key of {name} does not match known_hosts")
        t.auth_publickey(user, key)
        chan = t.open_session(timeout=10)
        chan.exec_command(command)
        chan.shutdown_write()
        while chan.recv(65536):
            pass
        code = chan.recv_exit_status()
        if code != 0:
            raise RuntimeError(f"{command!r} exited {code}")
    finally:
        t.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hosts", help="HOSTS.json")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--command", default="true")
    a = ap.parse_args()
    t0 = time.monotonic()
    with open(a.hosts) as fh:
        spec = json.load(fh)
    key = paramiko.PKey.from_path(spec["identity_file"])
    pinned = paramiko.HostKeys(spec["known_hosts"])
    failed: dict[str, str] = {}

    def guarded(node: list[object]) -> None:
        addr, port, user = str(node[0]), int(str(node[1])), str(node[2])
        try:
            one(addr, port, user, key, pinned, a.command)
        except Exception as e:  # noqa: BLE001 - a node's failure is data
            failed[addr] = f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=max(1, min(a.workers, len(spec["nodes"])))) as pool:
        list(pool.map(guarded, spec["nodes"]))
    print(json.dumps({"nodes": len(spec["nodes"]), "ok": len(spec["nodes"]) - len(failed), "failed": failed,
                      "seconds": round(time.monotonic() - t0, 3)}))


if __name__ == "__main__":
    main()
