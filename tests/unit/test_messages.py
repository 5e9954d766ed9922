"""Messages and exit codes say what happened: usage errors are 2, numbers agree, layers count
from 1, references are checked, levels match their compression.

The CLI runs in-process with click's runner on small synthetic images.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ocislim import errors
from ocislim.cli import main
from ocislim.cliflags import LEVEL_HELP
from ocislim.errors import UsageError
from ocislim.humanize import plural
from ocislim.image import outlayers
from ocislim.image.reference import check_tag, reference_problem
from ocislim.slim import report as report_mod
from tests.synth import M, docker_archive, layer, oci_archive

README = Path(__file__).resolve().parents[2] / "README.md"
LAYERS = [
    layer([M("etc", "dir"), M("etc/hello", data=b"hi\n"), M("bin", "symlink", link="etc")]),
    layer([M("etc/second", data=b"2\n")]),
]


def invoke(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def error_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("ocislim: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    work = tmp_path / "src"
    work.mkdir()
    return oci_archive(work, LAYERS, ref="localhost/app:1")


# --- --ref and --platform are usage errors -------------------------------------------


def test_unknown_ref_is_a_usage_error_listing_what_is_there(image: Path, tmp_path: Path) -> None:
    for command in (["inspect"], ["xray"], ["unpack"]):
        extra = [str(tmp_path / "dir")] if command == ["unpack"] else []
        result = invoke(*command, "-q", "--ref", "nope", str(image), *extra, code=2)
        line = error_line(result)
        assert "no image named 'nope'; available: localhost/app:1" in line
    docker = docker_archive(tmp_path, LAYERS, tag="demo:2")
    line = error_line(invoke("inspect", "--ref", "nope", str(docker), code=2))
    assert line.endswith("available: demo:2")


def test_unavailable_platform_is_a_usage_error(image: Path) -> None:
    line = error_line(invoke("inspect", "--platform", "linux/s390x", str(image), code=2))
    assert "image is for linux/amd64, not linux/s390x" in line
    assert issubclass(errors.RefNotFoundError, UsageError)


# --- --tag follows the reference grammar ---------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["localhost/app:1", "docker.io/library/busybox:1.36", "a/b/c", "reg.example:5000/x_y__z-w:v1.2",
     "[::1]:5000/a:b", "app", "localhost/v2.slim:latest", "a:" + "t" * 128],
)  # fmt: skip
def test_valid_references(value: str) -> None:
    assert reference_problem(value) is None
    check_tag(value)


@pytest.mark.parametrize(
    "value, rule",
    [("Bad Tag!!", "lower-case"), ("Upper/x:1", "upper case"), ("ghcr.io/Foo/bar", "'Foo'"),
     ("app:", "tag ''"), ("app:bad tag", "tag 'bad tag'"), ("a..b", "'a..b'"),
     ("a:" + "t" * 129, "{0,127}"), ("app@sha256:" + "0" * 64, "digest"),
     ("bad_host.:5000/a", "registry"), ("x" * 256, "255"), ("", "empty"), ("a//b", "''")],
)  # fmt: skip
def test_invalid_references_name_the_rule(value: str, rule: str) -> None:
    problem = reference_problem(value)
    assert problem is not None and rule in problem
    with pytest.raises(UsageError, match=r"--tag .*not an image reference"):
        check_tag(value)


def test_bad_tag_is_refused_by_build_and_convert_before_any_work(
    image: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for args in (
        ["convert", str(image), str(out / "c.tar"), "--tag", "Bad Tag!!"],
        ["build", str(image), "-o", str(out / "b.tar"), "--tag", "Bad Tag!!"],
    ):
        line = error_line(invoke(*args, code=2))
        assert "--tag 'Bad Tag!!': not an image reference" in line
        assert "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}" in line  # the rule, in one line
    assert list(out.iterdir()) == []
    invoke("convert", "-q", str(image), str(out / "ok.tar"), "--tag", "localhost/ok:2")


# --- --level matches each compression -------------------------------------------------


def test_levels_are_each_compressions_own() -> None:
    for compression, good, bad in (("gzip", (1, 9), (0, 10, -1)), ("zstd", (1, 22), (0, 23))):
        for level in good:
            outlayers.check_level(compression, level)
        for level in bad:
            levels = outlayers.level_range(compression)
            with pytest.raises(UsageError, match=f"{compression} levels are {levels}"):
                outlayers.check_level(compression, level)
    outlayers.check_level("none", 15)  # no level to have, so a note says it does nothing
    noted = outlayers.output_compression("oci-archive", "none", "gzip", 5)
    assert noted == outlayers.LayerCompression("none", outlayers.NO_LEVEL.format(level=5))
    assert "--level 5 has no effect" in str(noted.note)
    assert outlayers.output_compression("oci-archive", "zstd", "gzip", 5).note is None
    assert LEVEL_HELP == outlayers.LEVEL_HELP  # --help quotes the rule without importing it


def test_level_help_and_errors(image: Path, tmp_path: Path) -> None:
    help_text = " ".join(invoke("build", "--help").stdout.split())
    assert "gzip 1-9 (default 6), zstd 1-22 (default 3)" in help_text
    assert "0<=x<=22" not in help_text
    out = str(tmp_path / "o.tar")
    for args, needle in (
        (["--compression", "gzip", "--level", "0"], "--level 0: gzip levels are 1-9"),
        (["--compression", "zstd", "--level", "23"], "--level 23: zstd levels are 1-22"),
        (["--flatten", "--level", "12"], "--level 12: gzip levels are 1-9"),
    ):
        assert needle in error_line(invoke("convert", str(image), out, *args, code=2))
    # keeping each layer's compression (gzip here): checked against the layer's own
    line = error_line(invoke("convert", "-q", str(image), out, "--level", "15", code=2))
    assert "gzip levels are 1-9" in line
    assert not Path(out).exists()


def test_uncompressed_layers_are_never_called_compressed() -> None:
    short = {
        "source": {"image": "s", "reference": None, "files": 2, "paths": 4, "content_size": 9,
                   "compressed_size": 50, "compression": "gzip"},
        "output": {"image": "o", "format": "docker-archive", "reference": "r", "files": 1,
                   "paths": 2, "content_size": 3, "compressed_size": 2048, "compression": "none"},
        "ratio": {"content_size": 0.33, "compressed_size": 40.96, "files": 0.5},
        "kept": 2, "verification": {"passed": True, "rounds": 1}, "report": "r.json",
    }  # fmt: skip
    text = report_mod.render_summary(short)
    assert "compressed" not in text.replace("uncompressed", "")
    assert "layers:      50 B gzip -> 2.0 kB uncompressed" in text
    assert report_mod.layer_compressions(["x.tar+gzip", "x.tar", "y+gzip"]) == "gzip+none"


# --- counts: one definition -----------------------------------------------------------


def test_plural() -> None:
    assert [plural(1, "object"), plural(2, "object"), plural(0, "path")] == [
        "1 object",
        "2 objects",
        "0 paths",
    ]
    assert plural(1, "library", "libraries") == "1 library"
    assert plural(3, "library", "libraries") == "3 libraries"


def test_xray_counts_files_and_paths_as_build_does(image: Path) -> None:
    from ocislim.image import open_image
    from ocislim.inspect.xray import xray
    from ocislim.layers.merge import merge
    from ocislim.layers.stats import content_stats

    with open_image(image) as img:
        rep = xray(img)
        stats = content_stats(merge(img))
    assert rep["files"] == stats["files"] == 2  # the symlink is a path, not a file
    assert rep["paths"] == report_mod.paths(stats) == 4  # /etc, /etc/hello, /etc/second, /bin
    assert rep["files_size"] == stats["content_size"]
    assert "4 paths, 2 files holding" in invoke("xray", "-q", str(image)).stdout


# --- layers are numbered from 1 -------------------------------------------------------


def test_inspect_and_xray_number_layers_from_1(image: Path) -> None:
    rows = invoke("inspect", "-q", str(image)).stdout.splitlines()
    start = next(i for i, line in enumerate(rows) if line.lstrip().startswith("#"))
    numbers = [row.split()[0] for row in rows[start + 1 : start + 3]]
    assert numbers == ["1", "2"]
    text = invoke("xray", "-q", str(image)).stdout
    table = text.split("Layers", 1)[1].splitlines()[2:4]
    assert [row.split()[0] for row in table] == ["1", "2"]
    assert "Largest files in layer 1" in text and "in layer 0" not in text


# --- the README's exit-code table is errors.py's -------------------------------------


def _readme_exit_codes() -> dict[int, tuple[str, set[str]]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[int, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            rows[int(cells[0])] = (cells[1], set(re.findall(r"`(\w+Error)`", cells[2])))
    return rows


def test_readme_exit_code_table_matches_errors_py() -> None:
    rows = _readme_exit_codes()
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.OcislimError)
    }
    named = {name for _, names in rows.values() for name in names}
    assert named == set(classes), "every error class in one row, no row naming another"
    for code, (_meaning, names) in rows.items():
        for name in names:
            assert classes[name].exit_code == code, (name, code)
    codes = {cls.exit_code for cls in classes.values()}
    assert codes <= set(rows) and {0, 126, 127, 130} <= set(rows)


# --- errors name the user's directory, never ocislim's scratch ------------------------


def test_error_text_names_the_directory_of_a_scratch_path() -> None:
    from ocislim.clisupport import error_text
    from ocislim.errors import OutputError

    scratch = "/out/.ocislim-build-486ae994-17218-5c56c2e6"
    denied = PermissionError(13, "Permission denied", scratch + "/rootfs/etc")
    assert error_text(denied) == "cannot write to /out: Permission denied"
    full = OutputError(f"{scratch}: No space left on device (scratch files)")
    assert error_text(full) == "/out: No space left on device (scratch files)"
    staged = OSError(28, "No space left on device", "/o/.x.tar.ocislim-out-486ae994-1-5c56c2e6")
    assert error_text(staged) == "cannot write to /o: No space left on device"
    assert error_text(FileNotFoundError(2, "No such file or directory", "/a/b")) == (
        "/a/b: No such file or directory"
    )


def test_unwritable_output_directories_are_named_before_any_work(image: Path) -> None:
    import os
    import shutil

    from tests.clirun import PLAIN_USER, plain_user_dir, plain_user_python, run_cli

    python, source = plain_user_python()
    base = plain_user_dir("messages-")
    try:
        shutil.copy(image, base / "image.tar")
        locked = base / "locked"
        locked.mkdir(mode=0o755)  # root's: the plain user cannot create files in it
        os.chown(base / "image.tar", *(os.stat(base)[4:6]))
        img = str(base / "image.tar")
        for args, what in (
            (["convert", img, str(locked / "o.tar")], ""),
            (["unpack", img, str(locked / "dir")], ""),
            (["build", img, "-o", str(locked / "o.tar")], "(-o "),
            (["build", img, "-o", str(base / "o.tar"), "--html", str(locked / "r.html")], "--html"),
        ):
            result = run_cli(*args, "-q", python=python, user=PLAIN_USER, pythonpath=source)
            assert result.code == 8, result.stderr
            line = result.error
            assert f"cannot write to {locked}: Permission denied" in line and what in line, line
            assert ".ocislim-" not in line, line  # no scratch name
        assert list(locked.iterdir()) == [] and sorted(p.name for p in base.iterdir()) == [
            "image.tar",
            "locked",
        ]
    finally:
        shutil.rmtree(base)


# --- the default report is named after the output -------------------------------------


def test_default_report_is_named_after_the_output(tmp_path: Path) -> None:
    from ocislim.slim.options import OutputOptions, default_report_path

    assert default_report_path(Path("/o/out.tar")) == Path("/o/out.report.json")
    assert default_report_path(Path("/o/app.oci.tar")) == Path("/o/app.oci.report.json")
    assert default_report_path(Path("/o/layout/")) == Path("/o/layout.report.json")
    assert default_report_path(Path("slim.tar")) == Path("slim.report.json")
    a, b = OutputOptions(tmp_path / "a.tar"), OutputOptions(tmp_path / "b.tar")
    assert a.report_path != b.report_path  # two builds into one directory
    given = OutputOptions(tmp_path / "a.tar", report=tmp_path / "mine.json")
    assert given.report_path == tmp_path / "mine.json"


def test_start_error_only_for_a_program_the_sandbox_could_not_start() -> None:
    from ocislim.clisupport import start_error

    missing = ("executable not found in the image: nope",)
    assert start_error(127, missing, "nope") == "nope: not found in the image (exit code 127)"
    enoent = ("cannot execute /nope: No such file or directory",)
    assert start_error(127, enoent, "/nope") == "/nope: not found in the image (exit code 127)"
    assert start_error(127, enoent, "/nope", is_file=True) == (
        "/nope: its interpreter or loader is not in the image (No such file or directory)"
    )
    denied = ("cannot execute /etc: Permission denied",)
    assert (
        start_error(126, denied, "/etc")
        == "/etc: cannot be executed (Permission denied; exit code 126)"
    )
    assert start_error(127, (), "/bin/sh") is None  # the program's own 127
    assert start_error(0, enoent, "/nope") is None
    assert start_error(127, ("cannot execute /probe: No such file or directory",), "/app") is None


def test_xray_and_sbom_check_their_output_directories_first(image: Path, tmp_path: Path) -> None:
    from ocislim.clisupport import check_output_dirs
    from ocislim.errors import OutputError

    absent = tmp_path / "absent" / "Dockerfile"
    line = error_line(invoke("xray", "-q", str(image), "--dockerfile", str(absent), code=8))
    assert f"--dockerfile {absent}: directory {absent.parent} does not exist" in line
    assert (
        "Image:" not in invoke("xray", "-q", str(image), "--dockerfile", str(absent), code=8).stdout
    )
    line = error_line(
        invoke("sbom", "-q", str(image), "-o", str(tmp_path / "no/x.spdx.json"), code=8)
    )
    assert "does not exist" in line
    with pytest.raises(OutputError, match="does not exist"):
        check_output_dirs([("--html", str(tmp_path / "no" / "r.html")), ("--x", None)])
    check_output_dirs([("--html", str(tmp_path / "r.html")), ("--x", None)])


def test_unpack_counts_paths_as_build_does(image: Path, tmp_path: Path) -> None:
    import json

    summary = json.loads(invoke("unpack", "--json", str(image), str(tmp_path / "a")).stdout)
    assert (summary["paths"], summary["entries"]) == (4, 5)  # entries: the tree with /
    text = invoke("unpack", str(image), str(tmp_path / "b")).stderr
    assert f"unpacked 4 paths into {tmp_path / 'b'}" in text


def test_html_report_counts_paths_without_the_root() -> None:
    from ocislim import htmlreport
    from tests.unit.test_accounting_outputs import _report

    old = _report()  # a report from before: the root was listed in kept
    root = {"path": "/", "kind": "dir", "size": 0, "reasons": [{"source": "parent", "by": "/x"}]}
    old["kept"] = [root, *old["kept"]]
    old["source"] |= {"paths": 7}
    page = htmlreport.render(old)
    assert 'data-key="kept-paths" data-n="1"' in page
    assert 'data-key="source-paths" data-n="7"' in page
    assert "<td>/</td>" not in page
