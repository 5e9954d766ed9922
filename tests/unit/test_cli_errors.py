"""Bad input to every command: one ``ocislim: error:`` line, the README's exit code, no leftovers.

Each case runs the real CLI in a subprocess on a small synthetic image.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path

import pytest

from tests.clirun import CliResult, run_cli
from tests.synth import M, layer, oci_archive

USAGE, MISSING, BAD_IMAGE, OUTPUT = 2, 3, 4, 8


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    work = tmp_path / "src"
    work.mkdir()
    return oci_archive(work, [layer([M("etc", "dir"), M("etc/hello", data=b"hi\n")])])


def fails(result: CliResult, code: int, *needles: str) -> str:
    """The one error line, after checking the exit code and what the line names."""
    assert result.code == code, result.stderr
    line = result.error
    for needle in needles:
        assert needle in line, line
    return line


def entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# --- flags and arguments (exit 2) ------------------------------------------------------


@pytest.mark.parametrize(
    "args, needle",
    [
        (("convert", "{img}", "{out}", "--format", "bogus"), "'--format'"),
        (("convert", "{img}", "{out}", "--compression", "gzip", "--level", "15"), "gzip levels"),
        (("inspect",), "Missing argument 'IMAGE'"),
        (("inspect", "{img}", "--no-such-flag"), "--no-such-flag"),
        (("no-such-command",), "no-such-command"),
        (("inspect", "{img}", "--platform", "x"), "--platform"),
        (("xray", "{img}", "--top", "-1"), "'--top'"),
        (("diff", "{img}", "{img}", "--type", "bogus"), "--type"),
        (("run", "{img}", "--network", "bogus"), "'--network'"),
        (("trace", "{img}", "--timeout", "soon"), "'--timeout'"),
        (("unpack", "{img}", "{file}"), "is a file"),
        (("build", "{img}"), "'--output'"),
        (("build", "{img}", "-o", "{out}", "--level", "15"), "gzip levels"),
        (("build", "{img}", "-o", "{out}", "--disable-rule", "bogus"), "unknown rule"),
    ],
)
def test_wrong_flags_are_one_line_with_exit_2(
    image: Path, tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    values = {"img": str(image), "out": str(tmp_path / "out.tar"), "file": str(afile)}
    result = run_cli(*(a.format(**values) for a in args))
    fails(result, USAGE, needle)
    assert "Usage:" not in result.stderr, result.stderr  # not click's multi-line block
    assert not (tmp_path / "out.tar").exists()


def test_help_and_version_still_exit_0() -> None:
    result = run_cli("convert", "--help")
    assert result.code == 0 and "--flatten" in result.stdout
    result = run_cli("--version")
    assert result.code == 0 and "ocislim" in result.stdout


# --- input (exit 3 / 4) ----------------------------------------------------------------


READERS = [
    ("inspect", "{img}"),
    ("xray", "{img}"),
    ("unpack", "{img}", "{tmp}/rootfs"),
    ("convert", "{img}", "{tmp}/out.tar"),
    ("deps", "{img}"),
    ("run", "{img}", "--", "true"),
    ("trace", "{img}", "--", "true"),
    ("build", "{img}", "-o", "{tmp}/out.tar"),
    ("diff", "{img}", "{img}"),
]


def _bad_inputs(tmp_path: Path, good: Path) -> dict[str, Path]:
    not_image = tmp_path / "plain-dir"
    not_image.mkdir()
    (not_image / "readme").write_text("not an image\n")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(gzip.compress(b"not a tar archive " * 64))
    truncated = tmp_path / "truncated.tar"
    with tarfile.open(good) as tar:  # cut inside the data of the archive's last member
        last = max(tar.getmembers(), key=lambda m: m.offset_data)
    truncated.write_bytes(good.read_bytes()[: last.offset_data + last.size // 2])
    return {"missing": tmp_path / "absent.tar", "dir": not_image, "noise": noise, "cut": truncated}


@pytest.mark.parametrize("args", READERS, ids=[a[0] for a in READERS])
def test_unreadable_images(image: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    bad = _bad_inputs(tmp_path, image)
    expected = {"missing": MISSING, "dir": BAD_IMAGE, "noise": BAD_IMAGE, "cut": BAD_IMAGE}
    before = entries(tmp_path)
    for kind, path in bad.items():
        cmd = [a.format(img=path, tmp=tmp_path) for a in args]
        fails(run_cli(*cmd), expected[kind], str(path))
        assert entries(tmp_path) == before, f"{kind}: left {entries(tmp_path)}"


# --- outputs (exit 8) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("convert", "{img}", "{tmp}/nowhere/out.tar"),
        ("unpack", "{img}", "{tmp}/nowhere/rootfs"),
        ("build", "{img}", "-o", "{tmp}/nowhere/out.tar"),
        ("build", "{img}", "-o", "{tmp}/out.tar", "--report", "{tmp}/nowhere/r.json"),
        ("build", "{img}", "-o", "{tmp}/out.tar", "--seccomp-profile", "{tmp}/nowhere/s.json"),
        ("deps", "{img}", "--rootfs", "{tmp}/nowhere/rootfs"),
    ],
    ids=["convert", "unpack", "build", "build-report", "build-seccomp", "deps-rootfs"],
)
def test_output_in_a_missing_directory(image: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    before = entries(tmp_path)
    result = run_cli(*(a.format(img=image, tmp=tmp_path) for a in args))
    line = fails(result, OUTPUT, f"{tmp_path}/nowhere")
    assert ".ocislim-" not in line, line  # names the user's path, not a temporary one
    assert entries(tmp_path) == before


@pytest.mark.parametrize(
    "args",
    [
        ("unpack", "{img}", "{full}"),
        ("convert", "{img}", "{full}", "--format", "oci-dir"),
        ("build", "{img}", "-o", "{full}", "--format", "oci-dir"),
        ("run", "{img}", "--rootfs", "{full}", "--", "true"),
    ],
    ids=["unpack", "convert", "build", "run-rootfs"],
)
def test_existing_non_empty_directory_is_refused(
    image: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep-me").write_text("precious\n")
    before = entries(tmp_path)
    result = run_cli(*(a.format(img=image, full=full) for a in args))
    fails(result, OUTPUT, str(full))
    assert entries(full) == ["keep-me"] and entries(tmp_path) == before
    assert "ocislim: write" not in result.stderr  # refused before any work was done


@pytest.mark.parametrize("command", ["convert", "build"])
def test_output_naming_the_source_is_refused(image: Path, command: str) -> None:
    before = image.read_bytes()
    args = [str(image), str(image)] if command == "convert" else [str(image), "-o", str(image)]
    fails(run_cli(command, *args), OUTPUT, "is the source image")
    assert image.read_bytes() == before
