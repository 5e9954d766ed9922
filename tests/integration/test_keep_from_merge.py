"""Probing split across jobs: two builds probe different commands; one build with both
reports (``--keep-from A --keep-from B``) writes an image where both commands work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images import fixture_image
from tests.integration.build_support import Podman, build, podman_fixture  # noqa: F401

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

PROGRAM = ("--", "/bin/sleep", "600")  # runs while the exec probes do, stopped after them


def test_two_reports_merge_into_an_image_running_both_probes(
    tmp_path: Path, podman: Podman
) -> None:
    source = fixture_image("curl")
    a_dir, b_dir, merged_dir = (tmp_path / n for n in ("a", "b", "merged"))
    for d in (a_dir, b_dir, merged_dir):
        d.mkdir()
    tag = "localhost/ocislim-test/merge-{}:slim".format  # one name each: podman keeps them apart
    a = build(source, a_dir, "--tag", tag("a"), "--exec", "tac /etc/hostname", *PROGRAM)
    b = build(source, b_dir, "--tag", tag("b"), "--exec", "base64 /etc/hostname", *PROGRAM)
    merged = build(
        source, merged_dir, "--tag", tag("merged"),
        "--keep-from", str(a.report_path), "--keep-from", str(b.report_path),
        "--exec", "true", *PROGRAM,
    )  # fmt: skip
    report = merged.report
    assert report["keep_from"] == [str(a.report_path), str(b.report_path)]
    kept = merged.kept()
    for path, reports in (("/usr/bin/tac", [a]), ("/usr/bin/base64", [b])):
        details = [r["detail"] for r in kept[path]["reasons"] if r.get("flag") == "--keep-from"]
        assert details == [str(r.report_path) for r in reports]
    both = [r["detail"] for r in kept["/usr/bin/dash"]["reasons"] if r.get("flag") == "--keep-from"]
    assert sorted(both) == sorted([str(a.report_path), str(b.report_path)])  # reasons merged
    tags = {}
    for name, built in (("a", a), ("merged", merged)):
        tags[name] = podman.load(built.image, tag(name))
    for program in ("/usr/bin/tac", "/usr/bin/base64"):
        ran = podman.run(tags["merged"], "/etc/hostname", entrypoint=program)
        assert ran.returncode == 0, (program, ran.stderr)
    # A's image alone cannot run B's probe: the merge is what brought it in.
    alone = podman.run(tags["a"], "/etc/hostname", entrypoint="/usr/bin/base64")
    assert alone.returncode != 0
