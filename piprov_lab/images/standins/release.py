"""Which Kubernetes release the hyperkube stand-in is, and what that release had.

The version comes from ``KUBE_VERSION`` (the image's environment, set from its
tag by the lab's image build: ``v1.1.2``, ``v1.1.3``, ``v1.18.20``). Tags are
read leniently as everywhere in piprov: an optional leading ``v``, a trailing
``-N`` build suffix ignored. Two release lines are emulated, the two piprov
supports (see /work/wt/PROFILES.md and playbooks/versions.yaml):

* ``1.1`` (the seed's hyperkube v1.1.2 / v1.1.3, 2015-11);
* ``1.18`` (v1.18.x, the last line that shipped a hyperkube image: the image
  was dropped in 1.19, kubernetes/kubernetes#88676).

Any other line is refused at start: the stand-in must not pretend to be a
release whose surface it does not know.

Feature facts below are per line, each with where it comes from; every module
asks the ``Release`` instead of comparing version strings itself. The kubernetes
repository (1.9 GB) is over the size this machine may fetch, so no fact here was
read at its git tag: they come from the release notes and API docs of those
releases and from kubernetes source files found in the code index without a tag
(named in each module's docstring). None could be checked against a real binary.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

DEFAULT_VERSION = "v1.1.2"
SUPPORTED_LINES = ("1.1", "1.18")


class UnsupportedRelease(ValueError):
    pass


@dataclass(frozen=True)
class Release:
    version: str  # as reported by /version and --version, always with the leading "v"
    major: int
    minor: int
    patch: int

    @property
    def line(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def modern(self) -> bool:
        """The 1.18 line (everything below that differs from 1.1 keys on this)."""
        return self.minor >= 18

    # -- API surface -----------------------------------------------------------------
    # metadata.ownerReferences: came with the garbage collector in 1.3
    # (docs/proposals/garbage-collection.md); 1.1's ObjectMeta (pkg/api/v1/types.go) has no
    # such field, so 1.1's JSON decoding drops it. 1.1 controllers mark their pods with the
    # kubernetes.io/created-by annotation instead (pkg/controller/controller_utils.go).
    @property
    def owner_references(self) -> bool:
        return self.modern

    # pods/eviction (policy/v1beta1 Eviction) and PodDisruptionBudgets: policy/v1alpha1 in 1.4,
    # policy/v1beta1 from 1.5 (pkg/registry/core/pod/storage/eviction.go); 1.1 has no policy group.
    @property
    def eviction(self) -> bool:
        return self.modern

    # apps/v1 DaemonSet: GA in 1.9. 1.1 had extensions/v1beta1 daemonsets disabled by
    # default (1.1 release notes: on only with --runtime-config=extensions/v1beta1/daemonsets=true;
    # horizontalpodautoscalers, ingresses and jobs were on).
    @property
    def daemonsets(self) -> bool:
        return self.modern

    # coordination.k8s.io/v1 Lease and node heartbeats through it (NodeLease, GA in 1.17;
    # pkg/kubelet/nodelease, pkg/controller/nodelifecycle at v1.18.20).
    @property
    def node_leases(self) -> bool:
        return self.modern


def parse(tag: str) -> Release:
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.]+)?", tag.strip())
    if not m:
        raise UnsupportedRelease(f"KUBE_VERSION {tag!r} is not a version (want e.g. v1.1.2 or v1.18.20)")
    major, minor, patch = (int(g) for g in m.groups())
    rel = Release(f"v{major}.{minor}.{patch}", major, minor, patch)
    if rel.line not in SUPPORTED_LINES:
        raise UnsupportedRelease(f"KUBE_VERSION {tag!r}: this hyperkube stand-in emulates only the "
                                 f"{' and '.join(SUPPORTED_LINES)} lines")
    return rel


def current() -> Release:
    return parse(os.environ.get("KUBE_VERSION") or DEFAULT_VERSION)
