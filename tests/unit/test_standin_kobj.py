"""Pure helpers of the hyperkube stand-in: selectors, patches, ages, flags."""

from __future__ import annotations


import pytest

from piprov_lab.images import testsupport

testsupport.standins_on_path()
from standins import kobj  # noqa: E402
from standins.common import Flag, parse_duration, parse_flags  # noqa: E402


@pytest.mark.parametrize("selector, labels, match", [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "fe"}, True),
    ("app=web,tier!=db", {"app": "web", "tier": "db"}, False),
    ("env in (a, b)", {"env": "b"}, True),
    ("env notin (a,b)", {"env": "b"}, False),
    ("env notin (a,b)", {}, True),
    ("app", {"app": ""}, True),
    ("!app", {"app": "x"}, False),
    ("", {"anything": "x"}, True),
])
def test_label_selectors(selector: str, labels: dict[str, str], match: bool) -> None:
    assert kobj.match_requirements(kobj.parse_label_selector(selector), labels) is match


def test_bad_selector_is_an_error() -> None:
    with pytest.raises(kobj.SelectorError):
        kobj.parse_label_selector("a b c")


def test_label_selector_object() -> None:
    reqs = kobj.selector_requirements({"matchLabels": {"app": "x"},
                                       "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]})
    assert kobj.match_requirements(reqs, {"app": "x", "tier": "a"})
    assert not kobj.match_requirements(reqs, {"app": "x", "tier": "b"})


def test_field_selectors() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert kobj.match_fields(kobj.parse_field_selector("spec.nodeName=n1,status.phase!=Failed"), pod)
    assert not kobj.match_fields(kobj.parse_field_selector("spec.nodeName="), pod)
    assert kobj.match_fields(kobj.parse_field_selector("spec.nodeName="), {"spec": {}})


def test_strategic_merge_patch_merges_lists_by_key_and_deletes_nulls() -> None:
    node = {"spec": {"unschedulable": True, "podCIDR": "x"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Disk", "status": "False"}]}}
    patched = kobj.strategic_merge_patch(node, {
        "spec": {"unschedulable": None},
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Mem", "status": "False"}],
                   "$setElementOrder/conditions": [{"type": "Ready"}]}})
    assert patched["spec"] == {"podCIDR": "x"}
    assert patched["status"]["conditions"] == [{"type": "Ready", "status": "False"}, {"type": "Disk", "status": "False"},
                                               {"type": "Mem", "status": "False"}]
    deleted = kobj.strategic_merge_patch(patched, {"status": {"conditions": [{"type": "Disk", "$patch": "delete"}]}})
    assert [c["type"] for c in deleted["status"]["conditions"]] == ["Ready", "Mem"]
    assert node["spec"]["unschedulable"] is True, "the input is not modified"


def test_json_merge_and_json_patch() -> None:
    assert kobj.json_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    doc = {"spec": {"replicas": 1, "list": [1, 2]}}
    out = kobj.json_patch(doc, [{"op": "replace", "path": "/spec/replicas", "value": 3},
                                {"op": "add", "path": "/spec/list/-", "value": 9},
                                {"op": "remove", "path": "/spec/list/0"},
                                {"op": "test", "path": "/spec/replicas", "value": 3}])
    assert out == {"spec": {"replicas": 3, "list": [2, 9]}}
    with pytest.raises(ValueError):
        kobj.json_patch(doc, [{"op": "test", "path": "/spec/replicas", "value": 7}])
    with pytest.raises(ValueError):
        kobj.json_patch(doc, [{"op": "remove", "path": "/nope/x"}])


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"),
                                           (30 * 3600, "30h"), (3 * 86400, "3d")])
def test_human_age_like_kubectl(seconds: int, text: str) -> None:
    now = kobj.parse_time("2016-01-10T00:00:00Z")
    assert now is not None
    import datetime as dt
    ts = dt.datetime.fromtimestamp(now - seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert kobj.human_age(ts, now) == text


def test_pdb_int_or_percent() -> None:
    assert kobj.int_or_percent("50%", 3, round_up=True) == 2
    assert kobj.int_or_percent("50%", 3, round_up=False) == 1
    assert kobj.int_or_percent(2, 3, round_up=True) == 2


def test_flags_parse_like_pflag_and_refuse_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    flags = [Flag("master", ""), Flag("port", 1, int), Flag("allow-privileged", False, bool), Flag("grace", 40.0, float),
             Flag("admission-control", "")]
    got = parse_flags("t", ["--master", "http://m:8080", "--port=9", "--allow-privileged", "--grace=1m30s",
                            "--admission_control=X", "positional"], flags, strict=True)
    assert got == {"master": "http://m:8080", "port": 9, "allow-privileged": True, "grace": 90.0,
                   "admission-control": "X"}
    for argv, message in ((["--port=x"], 'invalid argument "x" for --port'), (["--v=2"], "unknown flag: --v"),
                          (["-v=2"], "unknown shorthand flag: 'v' in -v=2"), (["--master"], "needs an argument")):
        with pytest.raises(SystemExit) as exc:
            parse_flags("t", argv, flags, strict=True)
        assert exc.value.code == 1 and message in capsys.readouterr().err
    # A hand-made list (flanneld's, Go's flag package) stays lenient: unknown flags are ignored.
    assert parse_flags("t", ["-master=x", "--v=3"], flags)["master"] == "x"
    assert parse_duration("500ms") == 0.5 and parse_duration("20") == 20.0
