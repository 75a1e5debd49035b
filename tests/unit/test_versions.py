"""The support matrix: versions from tags, profiles from inventories, refusals with file:line, node facts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from piprov.errors import ProblemList
from piprov.graph import load_graph
from piprov.graph.support import check_inventory_versions, node_problem
from piprov.graph.versions import load_matrix
from piprov.inventory import check_images, load
from piprov.version import Version, parse_version

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example.yaml"


@pytest.mark.parametrize(("text", "want"), [
    ("v1.1.2", Version(1, 1, 2)), ("3.4.13-0", Version(3, 4, 13)), ("2.1.1", Version(2, 1, 1)),
    ("v0.12.0", Version(0, 12, 0)), ("17.05.0-ce", Version(17, 5, 0)), ("20.10.24+dfsg1", Version(20, 10, 24)),
    ("252", Version(252)), ("2.1", Version(2, 1)), ("latest", None), ("", None), ("v", None),
    ("1.2.3.4", None), ("command'not", None), ("3.4.23", Version(3, 4, 23)),
])
def test_versions_from_tags_and_version_words(text: str, want: Version | None) -> None:
    assert parse_version(text) == want


def test_the_matrix_loads_and_every_line_cites_its_sources() -> None:
    m = load_matrix()
    assert set(m.components) == {"etcd", "flannel", "hyperkube", "docker", "systemd"}
    assert set(m.profiles) == {"seed", "last-hyperkube"} and m.default_profile.name == "seed"
    for comp in m.components.values():
        for line in comp.lines:
            assert line.sources and all(re.match(r"^[\w.-]+/[\w.-]+[ #]", s) for s in line.sources), line


def test_the_playbooks_defaults_are_the_seed_profile() -> None:
    defaults = {k: v.tag for k, v in load_graph().image_defaults().items()}
    assert defaults == dict(load_matrix().profiles["seed"].images)


def _inv(tmp_path: Path, **tags: str) -> Path:
    text = EXAMPLE.read_text()
    for image, tag in tags.items():
        if image == "arm64":
            text = text.replace('tag: "v1.1.3"', f'tag: "{tag}"')
            continue
        text, n = re.subn(rf'^(  {image}: +{{repository: {image}, +tag: )"[^"]*"', rf'\g<1>"{tag}"', text, flags=re.M)
        assert n == 1
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _refusal(path: Path) -> ProblemList:
    inv = load(path)
    with pytest.raises(ProblemList) as e:
        check_images(inv, load_graph().image_names())
    return e.value


def test_the_example_is_the_seed(tmp_path: Path) -> None:
    assert check_inventory_versions(load(EXAMPLE)).profile.name == "seed"


def test_the_last_hyperkube_set_is_supported(tmp_path: Path) -> None:
    path = _inv(tmp_path, etcd="3.4.23", flannel="v0.12.0", hyperkube="v1.18.20", pause="3.2", arm64="v1.18.20")
    sel = check_inventory_versions(load(path))
    assert sel.profile.name == "last-hyperkube" and sel.picks["etcd"].line.name == "3.3-3.5"


def test_hyperkube_118_with_etcd_2_is_refused_at_the_etcd_line(tmp_path: Path) -> None:
    path = _inv(tmp_path, hyperkube="v1.18.20", flannel="v0.12.0", arm64="v1.18.20")
    e = _refusal(path)
    (p,) = e.problems
    assert p.location is not None and p.location.file == str(path)
    assert p.location.line == _line_of(path, "etcd:      {repository: etcd")
    assert "etcd 2.1.1 does not go with hyperkube v1.18.20 (profile last-hyperkube)" in p.message
    assert "3.3-3.5" in p.message and p.hint and "'3.4.23'" in p.hint and "seed:" in p.hint


def test_an_etcd_the_matrix_does_not_know_is_refused_with_what_is_supported(tmp_path: Path) -> None:
    path = _inv(tmp_path, etcd="3.6.0")
    (p,) = _refusal(path).problems
    assert p.location and p.location.line == _line_of(path, "etcd:      {repository: etcd")
    assert "etcd 3.6.0 is outside the support matrix" in p.message
    assert p.hint and "2.x (>= 2.1.0, < 3.0.0)" in p.hint and "3.3-3.5" in p.hint


def test_a_tag_without_a_version_is_refused(tmp_path: Path) -> None:
    path = _inv(tmp_path, flannel="latest")
    (p,) = _refusal(path).problems
    assert "images.flannel: tag 'latest' names no version" in p.message
    assert p.location and p.location.line == _line_of(path, "flannel:   {repository: flannel")


def test_an_arch_override_may_not_change_the_profile(tmp_path: Path) -> None:
    path = _inv(tmp_path, arm64="v1.18.20")
    problems = _refusal(path).problems
    assert problems and all(p.location and p.location.file == str(path) for p in problems)
    assert any(p.location and p.location.line == _line_of(path, 'tag: "v1.18.20"') for p in problems)


def test_the_old_example_override_v120_is_outside_the_matrix(tmp_path: Path) -> None:
    path = _inv(tmp_path, arm64="v1.2.0")
    (p,) = _refusal(path).problems
    assert "hyperkube 1.2.0 is outside the support matrix" in p.message


def test_a_default_tag_at_fault_is_reported_at_the_hyperkube_that_chose_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("cluster: {name: c}\nimages:\n  hyperkube: {repository: hyperkube, tag: v1.18.20}\n"
                    "nodes:\n  - {name: m, address: 192.168.1.2, role: master}\n")
    problems = _refusal(path).problems
    assert {p.message.split(":")[0] for p in problems} == {"images.etcd", "images.flannel"}
    assert all(p.location and p.location.line == 3 and p.location.column for p in problems)


@pytest.mark.parametrize(("profile", "versions", "error"), [
    ("seed", {"docker": "1.11.2", "systemd": "215"}, None),
    ("seed", {"docker": "20.10.24+dfsg1", "systemd": "252"}, None),
    ("seed", {"docker": None, "systemd": "215"}, None),
    ("seed", {"docker": "1.10.3", "systemd": "215"}, "docker 1.10.3 is outside the support matrix of profile seed"),
    ("seed", {"docker": "command'not", "systemd": "215"}, "cannot tell the docker version from \"command'not\""),
    ("seed", {"docker": "1.12.6", "systemd": "44"}, "systemd 44 is outside the support matrix"),
    ("last-hyperkube", {"docker": "1.12.6", "systemd": "252"}, "docker 1.12.6 is outside"),
    ("last-hyperkube", {"docker": "1.13.1", "systemd": "252"}, None),
])
def test_node_versions_against_the_profile(profile: str, versions: dict[str, str | None], error: str | None) -> None:
    m = load_matrix()
    got = node_problem(m, m.profiles[profile], "rpi-node-1", versions)
    if error is None:
        assert got is None
    else:
        assert got is not None and error in got.message and got.host == "rpi-node-1" and got.hint


DATA = Path(__file__).parent / "data" / "versions"
RUNNING = [("etcd-2.1.1.json", "etcd", "2.1.1"), ("etcd-3.4.23.json", "etcd", "3.4.23"),
           ("apiserver-v1.1.2.json", "hyperkube", "v1.1.2"), ("apiserver-v1.18.20.json", "hyperkube", "v1.18.20"),
           *[(f, c, None) for f in ("garbage-html.json", "garbage-number.json", "garbage-bytes.json",
                                    "garbage-list.json", "garbage-noversion.json") for c in ("etcd", "hyperkube")]]


@pytest.mark.parametrize(("name", "component", "want"), RUNNING, ids=[f"{c}-{n}" for n, c, _ in RUNNING])
def test_running_versions_from_version_answers(name: str, component: str, want: str | None) -> None:
    from piprov.graph.support import running_version

    assert running_version(component, (DATA / name).read_bytes()) == want


def test_running_notes_name_what_differs() -> None:
    from piprov.graph.support import running_notes

    sel = check_inventory_versions(load(EXAMPLE))
    assert running_notes(sel, {"etcd": "2.1.1", "hyperkube": "v1.1.2"}) == []
    assert running_notes(sel, {"etcd": None, "hyperkube": None}) == []
    (etcd, kube) = running_notes(sel, {"etcd": "3.4.23", "hyperkube": "v1.1.3"})
    assert "etcd on the master runs 3.4.23, the inventory asks for 2.1.1" in etcd and "downgrade" in etcd
    assert "the apiserver on the master runs v1.1.3, the inventory asks for v1.1.2" in kube


@pytest.mark.parametrize(("docker", "error", "needs_dockerd"), [
    ("1.10.3", "docker 1.10.3 is outside the support matrix of profile seed", None),
    ("1.11.2", None, False),  # no dockerd before 1.12: `docker daemon`
    ("20.10.24+dfsg1", None, True),
])
def test_a_nodes_docker_decides_its_plan(docker: str, error: str | None, needs_dockerd: bool | None) -> None:
    from piprov.facts import NodeFacts
    from piprov.errors import PiprovError
    from piprov.provision import plan_one

    inv, graph = load(EXAMPLE), load_graph()
    facts = NodeFacts("rpi-node-1", "armv7l", "rpi-node-1", "raspbian", "8",
                      binaries={"docker": "/usr/bin/docker", "dockerd": None},
                      versions={"docker": docker, "systemd": "215"})
    got = plan_one(inv, graph, inv.node("rpi-node-1"), facts)
    if error:
        assert isinstance(got, PiprovError) and error in got.message and got.host == "rpi-node-1"
        assert got.hint and "upgrade docker" in got.hint
    elif needs_dockerd:
        assert isinstance(got, PiprovError) and "no dockerd" in got.message
    else:
        assert not isinstance(got, PiprovError), got
        unit = next(f for f in got.all_files if f.path.endswith("/docker.service"))
        assert "ExecStart=/usr/bin/docker daemon -H fd://" in unit.content.decode()
