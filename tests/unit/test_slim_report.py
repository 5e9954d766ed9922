"""Report (schema shipped in the package), output config, default tag, slim rootfs and
verification rounds, on a small synthetic image unpacked for real."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ocislim.cliflags import parse_command_list
from ocislim.errors import UsageError
from ocislim.image import open_image
from ocislim.image.digest import Digest
from ocislim.image.mutate import ConfigOverrides, default_tag, flattened_config
from ocislim.image.source import Image
from ocislim.layers.unpack import unpack
from ocislim.sandbox.analysis import FileAccess
from ocislim.slim import report as report_mod
from ocislim.slim.materialize import SlimRoot
from ocislim.slim.plan import Planner, Reason, Seed
from ocislim.slim.probes import Outcome, ProbeOptions, ProbePlan
from ocislim.slim.verify import Verification, missing_in_slim, verify
from tests.synth import M, config_for, layer, oci_archive

TRACE = Reason("trace", process="/app/run", access=("read",))


def members() -> list[M]:
    return [
        M("app/run", data=b"#!/bin/sh\necho hi\n", mode=0o755),
        M("app/conf/settings.ini", data=b"[a]\n", mode=0o640, uid=1000, gid=1000),
        M("app/conf/extra.ini", data=b"[b]\n"),
        M("app/current", "symlink", link="conf"),
        M("app/run-again", "hardlink", link="app/run"),
        M("app/private", "dir", mode=0o700),
        M("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n"),
    ]


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Image]:
    layers = [layer(members())]
    config = config_for(
        layers,
        Entrypoint=["/app/run"],
        Env=["PATH=/bin", "MODE=prod"],
        Labels={"a": "1"},
        ExposedPorts={"80/tcp": {}},
    )
    archive = oci_archive(tmp_path, layers, ref="example.com/team/app:1.2", config=config)
    with open_image(archive) as img:
        yield img


def test_default_tag_follows_the_source_reference(image: Image, tmp_path: Path) -> None:
    assert default_tag(image) == "example.com/team/app.slim:1.2"
    (tmp_path / "x").mkdir()
    with open_image(oci_archive(tmp_path / "x", [layer(members())])) as img:
        assert default_tag(img) == "localhost/image.slim:latest"


def test_output_config_keeps_the_source_settings_and_applies_overrides(image: Image) -> None:
    diff_id = Digest("sha256", "0" * 64)
    raw = json.loads(flattened_config(image, diff_id, "ocislim build", ConfigOverrides()))
    assert raw["rootfs"]["diff_ids"] == [str(diff_id)]
    assert raw["config"]["Entrypoint"] == ["/app/run"]
    assert raw["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert raw["history"][-1]["created_by"] == "ocislim build"
    overrides = ConfigOverrides(
        entrypoint=parse_command_list('["/bin/sh", "-c"]'),
        cmd=parse_command_list("echo 'a b'"),
        env=("MODE=dev", "NEW=1"),
        workdir="/app",
        labels=("a=2", "b=3"),
    )
    changed = json.loads(flattened_config(image, diff_id, "x", overrides))["config"]
    assert changed["Entrypoint"] == ["/bin/sh", "-c"]
    assert changed["Cmd"] == ["echo", "a b"]
    assert changed["Env"] == ["PATH=/bin", "MODE=dev", "NEW=1"]
    assert changed["WorkingDir"] == "/app"
    assert changed["Labels"] == {"a": "2", "b": "3"}
    with pytest.raises(UsageError):
        flattened_config(image, diff_id, "x", ConfigOverrides(env=("NOEQUALS",)))
    with pytest.raises(UsageError):
        parse_command_list('["unterminated"')


@pytest.fixture
def unpacked(image: Image, tmp_path: Path) -> Any:
    return unpack(image, tmp_path / "rootfs")


def test_slim_root_mirrors_kept_entries_with_their_metadata(unpacked: Any, tmp_path: Path) -> None:
    planner = Planner(unpacked.tree)
    planner.add([Seed("/app/current/settings.ini", TRACE), Seed("/app/run", TRACE)])
    planner.add([Seed("/app/private", TRACE)])
    slim = SlimRoot(tmp_path / "slim", unpacked.root, unpacked.tree)
    try:
        assert slim.add(planner.kept_paths) == len(planner.kept_paths) - 1  # not "/"
        root = slim.root
        assert (root / "app/conf/settings.ini").read_bytes() == b"[a]\n"
        assert not (root / "app/conf/extra.ini").exists()
        assert os.readlink(root / "app/current") == "conf"
        assert os.stat(root / "app/run").st_ino == os.stat(root / "app/run-again").st_ino
        assert (root / "app/run").stat().st_mode & 0o111
        assert (root / "app/private").stat().st_mode & 0o777 == 0o700
        if os.geteuid() == 0:
            owner = (root / "app/conf/settings.ini").stat()
            assert (owner.st_uid, owner.st_gid) == (1000, 1000)
        planner.add([Seed("/app/conf/extra.ini", TRACE)])
        assert slim.add(planner.kept_paths) == 1
        assert (root / "app/conf/extra.ini").read_bytes() == b"[b]\n"
    finally:
        slim.remove()
    assert not (tmp_path / "slim").exists()


def test_verification_adds_what_the_slim_run_missed_then_passes(
    unpacked: Any, tmp_path: Path
) -> None:
    planner = Planner(unpacked.tree)
    planner.add([Seed("/app/run", TRACE)])
    plan = ProbePlan.from_options(ProbeOptions(), [])
    baseline = Outcome(0, False, ())
    seen: list[bool] = []

    def run_probes(root: Path) -> tuple[Outcome, Sequence[FileAccess]]:
        # The "program" needs settings.ini; it fails while the slim tree lacks it.
        present = (root / "app/conf/settings.ini").exists()
        seen.append(present)
        misses = [] if present else [FileAccess("/app/current/settings.ini", ("read",))]
        misses.append(FileAccess("/not/in/source", ("stat",)))
        return Outcome(0 if present else 1, False, ()), misses

    slim = SlimRoot(tmp_path / "slim", unpacked.root, unpacked.tree)
    slim.add(planner.kept_paths)
    try:
        result = verify(
            baseline,
            plan,
            slim,
            unpacked.tree,
            planner.__contains__,
            planner.add,
            run_probes,
            max_rounds=3,
        )
    finally:
        slim.remove()
    assert result.passed is True
    assert seen == [False, True]
    first, second = result.rounds
    assert first.differences == ("program exit code 0 became 1",)
    assert first.missing == ("/app/current/settings.ini",)
    assert "/app/conf/settings.ini" in first.added
    assert second.differences == () and second.added == ()
    assert planner.reasons("/app/conf/settings.ini")[0].source == "verify"


def test_verification_fails_when_nothing_more_can_be_added(unpacked: Any, tmp_path: Path) -> None:
    planner = Planner(unpacked.tree)
    planner.add([Seed("/app/run", TRACE)])
    plan = ProbePlan.from_options(ProbeOptions(), [])
    slim = SlimRoot(tmp_path / "slim", unpacked.root, unpacked.tree)
    try:
        result = verify(
            Outcome(0, False, ()),
            plan,
            slim,
            unpacked.tree,
            planner.__contains__,
            planner.add,
            lambda root: (Outcome(2, False, ()), []),
            max_rounds=3,
        )
    finally:
        slim.remove()
    assert result.passed is False and len(result.rounds) == 1
    assert "program exit code 0 became 2" in result.failure()
    assert missing_in_slim([FileAccess("/app/run", ())], unpacked.tree, lambda p: True) == []


def build_report(image: Image, unpacked: Any) -> dict[str, Any]:
    planner = Planner(unpacked.tree, ("*.ini",))
    planner.add([Seed("/app/run", TRACE), Seed("/app/conf/extra.ini", TRACE)])
    planner.add([Seed("/nope", Reason("rule", flag="--include-path", detail="/nope"))])
    outcome = Outcome(0, False, ())
    verification = Verification(True, 3)
    stats = {"files": 4, "directories": 3, "symlinks": 1, "other": 0, "content_size": 40}
    return report_mod.build_report(
        image=image,
        source_stats=stats,
        output_stats={**stats, "files": 2, "content_size": 20},
        written=None,
        layer_size=None,
        tag="example.com/team/app.slim:1.2",
        plan=planner.plan(),
        probe_plan=ProbePlan.from_options(ProbeOptions(), []),
        command=["/app/run"],
        baseline=outcome,
        verification=verification,
        timings={"unpack": 0.5, "total": 1.0},
        rules={"enabled": ["python-stdlib"], "disabled": []},
        seccomp_path=None,
        keep_from=None,
        notes=[],
    )


def test_the_report_fits_its_schema_and_the_schema_rejects_damage(
    image: Image, unpacked: Any, tmp_path: Path
) -> None:
    report = build_report(image, unpacked)
    jsonschema.Draft202012Validator.check_schema(report_mod.schema())
    report_mod.validate(report)
    assert report["ratio"]["content_size"] == 0.5
    assert [r["path"] for r in report["refused"]] == ["/app/conf/extra.ini"]
    assert report["unresolved"][0]["path"] == "/nope"
    kept = {k["path"]: k for k in report["kept"]}
    assert kept["/app/run"]["reasons"][0] == TRACE.to_json()

    damaged = json.loads(json.dumps(report))
    damaged["kept"][0]["reasons"] = [{"source": "trace"}]  # no process, no access
    with pytest.raises(UsageError, match="kept"):
        report_mod.validate(damaged)
    del damaged["kept"]
    with pytest.raises(UsageError):
        report_mod.validate(damaged)

    path = tmp_path / "r.json"
    report_mod.write_json_atomic(path, report)
    assert report_mod.load(path) == json.loads(path.read_text())
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UsageError):
        report_mod.load(tmp_path / "bad.json")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_readable_json_is_the_same_data_with_a_line_per_list_item() -> None:
    data = {
        "kept": [{"path": "/b", "reasons": [{"source": "trace"}]}, {"path": "/a"}],
        "timings": {"write": 1.5, "unpack": 2.0},
        "empty": [],
        "tag": "x:1",
        "uni": 'ü\n"',
    }
    text = report_mod.readable_json(data)
    assert json.loads(text) == data
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and text.endswith("}\n")
    assert '    {"path": "/b", "reasons": [{"source": "trace"}]},' in lines
    assert '    {"path": "/a"}' in lines
    assert [line.split(":")[0].strip() for line in lines if line.startswith('  "')] == [
        '"empty"',
        '"kept"',
        '"tag"',
        '"timings"',
        '"uni"',
    ]
    assert report_mod.readable_json([1, 2]) == "[1, 2]\n"
    assert report_mod.readable_json({}) == "{}\n"
