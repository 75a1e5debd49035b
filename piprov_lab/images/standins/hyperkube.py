"""hyperkube STAND-IN (``/hyperkube SUBCOMMAND [flags]`` in the lab's hyperkube image).

Not Kubernetes: no hyperkube can be obtained here, so the lab runs this
program in its place. It is the hyperkube of the release in ``KUBE_VERSION``
(release.py) and dispatches exactly as that release did:

1.1 (the Go binary, cmd/hyperkube/main.go + hyperkube.go): servers
``apiserver``, ``controller-manager``, ``scheduler``, ``kubelet``, ``proxy``
(kubectl joined hyperkube only in 1.2). Called as ``hyperkube`` the first
argument names the server, after the base flags (``--help``, ``--version``
print usage / "Kubernetes v1.1.2" and exit 0); called by a server's name (a
busybox-style symlink) it is that server. An unknown server prints ``Error:
Server not found: X`` and the usage, exit status 1 (RunToExit). No
``kube-``-prefixed names: those aliases came with the cobra rewrite (1.14+).

1.18 (a shell script since 1.17, kubernetes/kubernetes#84662,
cluster/images/hyperkube/hyperkube): commands ``kube-apiserver``,
``kube-controller-manager``, ``kube-proxy``, ``kube-scheduler``, ``kubectl``,
``kubelet`` and nothing else; the name it is called by is ignored. No argument,
``--help`` or ``help``: the usage, exit 0. Anything else (``apiserver``,
``--version``): "X: command not supported" and the usage, exit 0 (the script's
print_usage exits 0). Each command then is its own binary (``kube-apiserver
--version`` prints "Kubernetes v1.18.20"). This stand-in has no kubectl:
``hyperkube kubectl`` says so and exits 1, as the script does for a command
not found.
"""

from __future__ import annotations

import os
import sys

from . import flagsets
from . import release as releases

# server name -> stand-in module, per line
SERVERS = {
    "1.1": {"apiserver": "apiserver", "controller-manager": "controller_manager", "scheduler": "scheduler",
            "kubelet": "kubelet", "proxy": "proxy"},
    "1.18": {"kube-apiserver": "apiserver", "kube-controller-manager": "controller_manager",
             "kube-scheduler": "scheduler", "kubelet": "kubelet", "kube-proxy": "proxy", "kubectl": None},
}
USAGE_1_1 = """This is an all-in-one binary that can run any of the various Kubernetes servers.

Usage

  hyperkube <server> [flags]

Servers

  apiserver
  controller-manager
  kubelet
  proxy
  scheduler

Call 'hyperkube <server> --help' for help on a specific server.
(this hyperkube is the piprov lab's stand-in)
"""
USAGE_1_18 = """Usage:
  hyperkube [command]

Available Commands:
  help                     Help about any command
  kube-apiserver
  kube-controller-manager
  kube-proxy
  kube-scheduler
  kubectl                  kubectl controls the Kubernetes cluster manager
  kubelet
(this hyperkube is the piprov lab's stand-in)
"""


def _run(module: str, rest: list[str]) -> None:
    mod = __import__(f"{__package__}.{module}", fromlist=["main"])
    mod.main(rest)


def main_1_1(argv: list[str], rel: releases.Release) -> int:
    servers = SERVERS["1.1"]
    name = os.path.basename(argv[0])
    rest = argv[1:]
    if name not in servers:
        # Base flags up to the first non-flag (SetInterspersed(false)).
        while rest and rest[0].startswith("-"):
            flag = rest.pop(0)
            if flag in ("-h", "--help", "--help=true"):
                sys.stderr.write(USAGE_1_1)
                return 0
            if flag in ("--version", "--version=true", "--version=raw"):
                print(f"Kubernetes {rel.version}")
                return 0
            base = {row[0] for row in flagsets.table(flagsets.GLOBAL["1.1"])}
            if flag.split("=")[0].lstrip("-").replace("_", "-") not in base:
                sys.stderr.write(f"Error: unknown flag: {flag.split('=')[0]}\n{USAGE_1_1}")
                return 1
        if not rest or not rest[0]:
            sys.stderr.write(f"Error: no server specified\n\n{USAGE_1_1}")
            return 1
        name, rest = rest[0], rest[1:]
    if name not in servers:
        sys.stderr.write(f"Error: Server not found: {name}\n\n{USAGE_1_1}")
        return 1
    _run(servers[name], rest)
    return 0


def main_1_18(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("--help", "help"):
        print(USAGE_1_18, end="")
        return 0
    module = SERVERS["1.18"].get(args[0], "")
    if args[0] not in SERVERS["1.18"]:
        print(f"{args[0]}: command not supported")
        print(USAGE_1_18, end="")
        return 0
    if module is None:
        print(f"{args[0]}: command not found (the piprov lab's hyperkube stand-in has no kubectl)")
        return 1
    _run(module, args[1:])
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    try:
        rel = releases.current()
    except releases.UnsupportedRelease as exc:
        print(f"hyperkube stand-in: {exc}", file=sys.stderr)
        sys.exit(1)
    code = main_1_18(argv) if rel.modern else main_1_1(argv, rel)
    sys.exit(code)


if __name__ == "__main__":
    main()
