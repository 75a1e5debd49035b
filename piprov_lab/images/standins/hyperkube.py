"""hyperkube STAND-IN (``/hyperkube SUBCOMMAND [flags]`` in the lab's hyperkube image).

Not Kubernetes: the all-in-one hyperkube binary of Kubernetes 1.1 cannot be
obtained here, so the lab runs this program in its place. Like hyperkube it is
one program whose first argument (or the name it is called by) picks the
server: ``apiserver``, ``controller-manager``, ``scheduler``, ``kubelet``,
``proxy``. Each subcommand's module says which contract it follows.
"""

from __future__ import annotations

import os
import sys

SERVERS = {
    "apiserver": "apiserver", "kube-apiserver": "apiserver",
    "controller-manager": "controller_manager", "kube-controller-manager": "controller_manager",
    "scheduler": "scheduler", "kube-scheduler": "scheduler",
    "kubelet": "kubelet",
    "proxy": "proxy", "kube-proxy": "proxy",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    name = os.path.basename(argv[0])
    if name in SERVERS:
        sub, rest = name, argv[1:]
    elif len(argv) > 1 and argv[1] in SERVERS:
        sub, rest = argv[1], argv[2:]
    else:
        print("usage: hyperkube SERVER [flags]\n\nservers: apiserver, controller-manager, scheduler, kubelet, proxy\n"
              "(this hyperkube is the piprov lab's stand-in)", file=sys.stderr)
        sys.exit(0 if len(argv) > 1 and argv[1] in ("-h", "--help", "help") else 2)
    if sub == "--version" or "--version" in rest:
        print(f"Kubernetes {os.environ.get('KUBE_VERSION', 'v1.1.2')}")
        return
    module = __import__(f"{__package__}.{SERVERS[sub]}", fromlist=["main"])
    module.main(rest)


if __name__ == "__main__":
    main()
