"""Every rendered unit and manifest x every supported version x master/worker, checked flag by flag.

Each command line a unit runs (ExecStart=/ExecStop=, the docker daemon, the
containers' programs) and each static pod's command is taken apart, and every
flag must be one the support matrix (playbooks/versions.yaml) lists for that
program in the version line that will run it: the flags there are the cited
ones, so a flag a release does not have fails here, not on a Pi.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path
from typing import Iterator

import pytest

from piprov.graph import ComponentGraph, load_graph
from piprov.graph.versions import Matrix, load_matrix
from piprov.inventory import Inventory, check_images, load
from piprov.render import desired_state
from piprov.version import parse_version

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example.yaml"
# Across the docker lines: 1.11 (docker daemon, --graph), 1.12-17.04 (dockerd, --graph), 17.05+ (--data-root).
DOCKERS = ["1.11.2", "1.12.6", "1.13.1", "17.03.2-ce", "17.05.0-ce", "18.09.1", "20.10.24+dfsg1"]
# The docker client's flags that take their value as the next word, and short names.
CLIENT_VALUE_FLAGS = {"-H", "--name", "-v"}
SHORT = {"-p": "pidfile", "-H": "host", "-v": "volume", "-g": "graph", "-b": "bridge"}


def _sets(matrix: Matrix) -> Iterator[tuple[str, dict[str, str]]]:
    """(profile, image tags) for every profile with each etcd line it allows."""
    for p in matrix.profiles.values():
        for etcd_line in p.lines["etcd"]:
            line = matrix.component("etcd").line(etcd_line)
            tag = p.images["etcd"] if line.contains(parse_version(p.images["etcd"]) or line.low) else str(line.low)
            yield p.name, {**p.images, "etcd": tag}


def _inventory(tmp: Path, tags: dict[str, str]) -> Inventory:
    text = EXAMPLE.read_text()
    for image, tag in tags.items():
        text, n = re.subn(rf'^(  {image}: +{{repository: {image}, +tag: )"[^"]*"', rf'\g<1>"{tag}"', text, flags=re.M)
        assert n == 1, image
    text, n = re.subn(r'(hyperkube: {repository: hyperkube, tag: )"v1.1.3"', rf'\g<1>"{tags["hyperkube"]}"', text)
    assert n == 1
    path = tmp / "inventory.yaml"
    path.write_text(text)
    return load(path)


def _commands(text: str) -> Iterator[list[str]]:
    """The command lines of a unit's Exec* settings, continuations joined, shell wrappers left out."""
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.startswith("Exec"):
            continue
        words = shlex.split(value.lstrip("-"))
        if words and words[0] not in ("/bin/sh", "/bin/rm", "/bin/mkdir"):
            yield words


def _flag(word: str) -> str:
    return SHORT.get(word, word.lstrip("-").split("=", 1)[0])


def _program_flags(words: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(program, its flags) in one command line: the docker daemon, or a docker run's program."""
    if words[0].endswith("dockerd"):
        yield "docker:daemon", words[1:]
        return
    if words[0].endswith("/docker") and len(words) > 1 and words[1] == "daemon":
        yield "docker:daemon", words[2:]
        return
    assert words[0].endswith("/docker"), words
    i = 1
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in CLIENT_VALUE_FLAGS else 1
    if i >= len(words) or words[i] != "run":
        return  # rm, stop, version, exec: no program of ours
    i += 1
    start = i
    while words[i].startswith("-"):
        i += 2 if words[i] in CLIENT_VALUE_FLAGS else 1
    yield "docker:run", words[start:i]
    image, program, rest = words[i], words[i + 1], words[i + 2:]
    assert ":" in image, words
    if program == "/hyperkube":
        yield f"hyperkube:{rest[0]}", rest[1:]
    else:
        yield {"/usr/local/bin/etcd": "etcd:etcd", "/opt/bin/flanneld": "flannel:flanneld"}[program], rest


def _manifest_flags(content: bytes) -> Iterator[tuple[str, list[str]]]:
    pod = json.loads(content)
    for c in pod["spec"]["containers"]:
        cmd = c["command"]
        assert cmd[0] == "/hyperkube", cmd
        yield f"hyperkube:{cmd[1]}", cmd[2:]


CASES = [(name, tags, docker, role)
         for (name, tags), docker, role in itertools.product(_sets(load_matrix()), DOCKERS, ["master", "worker"])]


@pytest.fixture(scope="module")
def graph() -> ComponentGraph:
    return load_graph()


@pytest.mark.parametrize(("profile", "tags", "docker", "role"), CASES,
                         ids=[f"{p}-etcd{t['etcd']}-docker{d}-{r}" for p, t, d, r in CASES])
def test_every_flag_exists_in_the_version_that_runs_it(profile: str, tags: dict[str, str], docker: str, role: str,
                                                      graph: ComponentGraph, tmp_path: Path) -> None:
    matrix = load_matrix()
    prof = matrix.profiles[profile]
    dv = parse_version(docker)
    assert dv is not None
    dline = matrix.component("docker").line_of(dv)
    assert dline is not None
    if not prof.allows("docker", dline, dv):
        pytest.skip(f"docker {docker} is outside profile {profile}")
    inv = _inventory(tmp_path, tags)
    check_images(inv, graph.image_names())  # the set is supported
    lines = {c: matrix.component(c).line_of(parse_version(tags[c]) or dv) for c in ("etcd", "flannel", "hyperkube")}
    node = inv.master if role == "master" else inv.workers[0]
    for arch in ("armv7l", "aarch64"):
        desired = desired_state(inv, graph, node, arch, binaries={"docker": "/usr/bin/docker"}, docker=docker)
        checked: set[str] = set()
        for f in desired.files:
            pairs = (list(_manifest_flags(f.content)) if f.path.endswith(".json") and "manifests" in f.path
                     else [p for words in _commands(f.content.decode()) for p in _program_flags(words)])
            for program, flags in pairs:
                comp, prog = program.split(":")
                line = dline if comp == "docker" else lines[comp]
                assert line is not None
                known = line.flags.get(prog)
                assert known is not None, f"{f.path}: {comp} {line.name} lists no flags of {prog!r}"
                for word in flags:
                    if word.startswith("-"):
                        assert _flag(word) in known, (
                            f"{f.path} ({f.template}): {prog} {word} is not a flag of {comp} {line.name}; "
                            f"it has {sorted(known)}")
                checked.add(program)
        if desired.etcdctl:
            words = desired.etcdctl.split()
            flags = words[words.index("etcdctl") + 1:]
            assert flags and all(_flag(w) in lines["etcd"].flags["etcdctl"] for w in flags), desired.etcdctl
        expected = {"docker:daemon", "docker:run", "flannel:flanneld", "hyperkube:kubelet"}
        if role == "master":
            expected |= {"etcd:etcd", f"hyperkube:{lines['hyperkube'].features['apiserver']}"}
        assert expected <= checked, sorted(checked)


def test_status_names_what_only_the_firewall_guards() -> None:
    """1.1 cannot authenticate its kubelet API: `status` says the firewall alone guards it; 1.18 can."""
    from piprov.graph.support import security_notes, select

    matrix = load_matrix()
    for tags, expected in (({"hyperkube": "v1.1.2", "etcd": "2.1.1", "flannel": "0.5.5", "pause": "2.0"}, 1),
                           ({"hyperkube": "v1.18.20", "etcd": "3.4.23", "flannel": "v0.12.0", "pause": "3.2"}, 0)):
        notes = security_notes(select(matrix, {k: (v, None) for k, v in tags.items()}, None))
        assert len(notes) == expected, notes
        assert all("10250" in n and "piprov-firewall" in n for n in notes)
