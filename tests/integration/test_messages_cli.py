"""Messages that say what happened, through the real CLI on the demo image.

``run`` names a program that could not start (127, 126) in one line even with ``-q``;
two builds into one directory keep their own reports; a build's summary, its report,
the slim image's history and ``xray`` give the same numbers under the same words.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.clirun import run_cli
from tests.images import DEMO_IMAGE
from tests.synth import M, layer, oci_archive

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


@pytest.mark.parametrize(
    "command, code, message",
    [
        (["/nope"], 127, "/nope: not found in the image"),
        (["nope"], 127, "nope: not found in the image"),
        (["/etc/passwd"], 126, "/etc/passwd: cannot be executed (Permission denied"),
        (["/demo"], 126, "/demo: cannot be executed"),
    ],
)
def test_a_program_that_cannot_start_is_one_line(
    command: list[str], code: int, message: str, tmp_path: Path
) -> None:
    result = run_cli(
        "run", "-q", "--rootfs", str(tmp_path / "root"), str(DEMO_IMAGE), "--", *command
    )
    assert result.code == code, result.stderr
    assert result.stderr.strip() == result.error  # the only line, with -q
    assert result.error.startswith(f"ocislim: error: {message}"), result.error


def test_a_program_that_exits_127_itself_is_not_an_error(tmp_path: Path) -> None:
    result = run_cli(
        "run", "-q", "--rootfs", str(tmp_path / "root"), str(DEMO_IMAGE), "--",
        "/bin/sh", "-c", "exit 127",
    )  # fmt: skip
    assert result.code == 127
    assert "ocislim: error" not in result.stderr, result.stderr


def test_a_missing_interpreter_is_named_as_such(tmp_path: Path) -> None:
    members = [M("app", "dir"), M("app/s", data=b"#!/no/such/interpreter\n", mode=0o755)]
    image = oci_archive(tmp_path, [layer(members)])
    result = run_cli("run", "-q", str(image), "--", "/app/s")
    assert result.code == 127, result.stderr
    assert result.error == (
        "ocislim: error: /app/s: its interpreter or loader is not in the image "
        "(No such file or directory)"
    )


def test_builds_into_one_directory_keep_their_reports_and_numbers_agree(tmp_path: Path) -> None:
    summaries = {}
    for name in ("a.tar", "b.tar"):
        result = run_cli("build", "-q", str(DEMO_IMAGE), "-o", str(tmp_path / name), "--json")
        assert result.code == 0, result.stderr
        summaries[name] = json.loads(result.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.report.json",
        "a.tar",
        "b.report.json",
        "b.tar",
    ]
    for name in ("a", "b"):
        report = json.loads((tmp_path / f"{name}.report.json").read_text())
        assert report["output"]["image"] == str(tmp_path / f"{name}.tar")
        assert summaries[f"{name}.tar"]["report"] == str(tmp_path / f"{name}.report.json")
    short = summaries["a.tar"]
    report = json.loads((tmp_path / "a.report.json").read_text())
    src, out = report["source"], report["output"]
    # one definition of paths: every kind but /, kept + removed = the source's
    assert out["paths"] == len(report["kept"]) == short["kept"] == short["output"]["paths"]
    assert src["paths"] == len(report["kept"]) + len(report["removed"])
    assert "/" not in {k["path"] for k in report["kept"]}
    # the slim image's history says the same
    inspected = json.loads(run_cli("inspect", "--json", str(tmp_path / "a.tar")).stdout)
    step = inspected["history"][-1]["created_by"]
    assert step == f"ocislim build (kept {out['paths']} of {src['paths']} paths)"
    # and xray counts files and paths of both images as the report does
    for image, side in ((DEMO_IMAGE, src), (tmp_path / "a.tar", out)):
        xray = json.loads(run_cli("xray", "--json", str(image)).stdout)
        assert (xray["files"], xray["paths"]) == (side["files"], side["paths"])
        assert xray["files_size"] == side["content_size"]
    # the text summary uses the same words and numbers
    text = run_cli("build", "-q", str(DEMO_IMAGE), "-o", str(tmp_path / "c.tar")).stdout
    assert f"files:       {src['files']} -> {out['files']}\n" in text
    assert re.search(rf"paths:\s+{src['paths']} -> {out['paths']} ", text), text
    assert "layers:      " in text and "gzip -> " in text


def test_docker_archive_with_zstd_says_uncompressed(tmp_path: Path) -> None:
    out = tmp_path / "slim.docker.tar"
    result = run_cli(
        "build", str(DEMO_IMAGE), "-o", str(out), "--format", "docker-archive",
        "--compression", "zstd", "--no-verify",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "ocislim: note: docker-archive layers are stored uncompressed" in result.stderr
    layers = next(line for line in result.stdout.splitlines() if line.startswith("layers:"))
    assert layers.split("->")[1].split("(")[0].strip().endswith("uncompressed"), layers
    assert "compressed" not in result.stdout.replace("uncompressed", "")
    report = json.loads((tmp_path / "slim.docker.report.json").read_text())
    assert report["output"]["compression"] == "none"
    assert any("stored uncompressed" in note for note in report["notes"])
