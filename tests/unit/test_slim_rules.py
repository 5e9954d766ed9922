"""Globs and the user's --include-* rules over small merged trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocislim.errors import InputNotFoundError, UsageError
from ocislim.slim.patterns import PatternSet, matches
from ocislim.slim.plan import Planner
from ocislim.slim.rules import KeepOptions, read_path_file, user_seeds
from tests.synth import M
from tests.unit.slim_synth import tree_from


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/usr/share/doc/**", "/usr/share/doc", True),
        ("/usr/share/doc/**", "/usr/share/doc/a/b/c", True),
        ("/usr/share/doc/**", "/usr/share/docs", False),
        ("/**/__pycache__", "/__pycache__", True),
        ("/**/__pycache__", "/a/b/__pycache__", True),
        ("/**/__pycache__", "/a/b/__pycache__/x.pyc", False),
        ("*.pyc", "/a/b/c.pyc", True),
        ("*.pyc", "/a/b/c.py", False),
        ("/a/*.txt", "/a/b/c.txt", False),
        ("/a/?.txt", "/a/b.txt", True),
        ("/a/[!b].txt", "/a/c.txt", True),
        ("/a/[!b].txt", "/a/b.txt", False),
        ("/a/[bc].txt", "/a/c.txt", True),
        ("/a/**/z", "/a/z", True),
        ("/a/**/z", "/a/x/y/z", True),
        ("/a/b+c(d).txt", "/a/b+c(d).txt", True),
    ],
)
def test_globs(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


def test_literal_patterns_match_as_globs_do_and_the_first_match_is_reported() -> None:
    patterns = ["/a/**", "/a/b.txt", "//a//c.txt/", "/a/b+c(d).txt", "*.txt", "/z"]
    paths = ["/a", "/a/b.txt", "/a/c.txt", "/a/b+c(d).txt", "/q/b.txt", "/z", "/z/y", "/y"]
    for order in (patterns, patterns[::-1]):
        found = PatternSet(order)
        for path in paths:
            first = next((p for p in order if matches(p, path)), None)
            assert found.match(path) == first, (order, path)
    many = PatternSet([f"/skip/{i}.po" for i in range(5000)])
    assert many.match("/skip/4999.po") == "/skip/4999.po"
    assert many.match("/skip/5000.po") is None


def test_pattern_set_reports_the_pattern_that_matched_and_rejects_empty_ones() -> None:
    patterns = PatternSet(["/x/**", "*.log"])
    assert patterns.match("/var/app.log") == "*.log"
    assert patterns.match("/y") is None
    assert not PatternSet([])
    with pytest.raises(UsageError):
        PatternSet(["/"])


def image() -> list[M]:
    return [
        M("bin/sh", "symlink", link="busybox"),
        M("bin/busybox", data=b"\x7fELF", mode=0o755),
        M("bin/ls", "symlink", link="busybox"),
        M("usr/local/bin/tool", data=b"#!/bin/sh\n", mode=0o755),
        M("etc/ssl/certs/ca-certificates.crt", data=b"PEM"),
        M("etc/ssl/certs/abc.0", "symlink", link="/usr/share/ca-certificates/x.crt"),
        M("usr/share/ca-certificates/x.crt", data=b"PEM"),
        M("opt/venv/lib/python3.11/site-packages/certifi/cacert.pem", data=b"PEM"),
        M("usr/share/zoneinfo/UTC", data=b"TZif"),
        M("etc/localtime", "symlink", link="/usr/share/zoneinfo/UTC"),
        M("srv/app/main.py", data=b"print()"),
        M("srv/app/static/logo.png", data=b"png"),
        M("srv/app/static/debug.log", data=b"log"),
        M("data/a/1.json", data=b"{}"),
        M("data/b/2.json", data=b"{}"),
    ]


def kept(options: KeepOptions, notes: list[str] | None = None) -> set[str]:
    tree = tree_from(image())
    programs = {"sh": "/bin/sh", "ls": "/bin/ls", "tool": "/usr/local/bin/tool"}
    seeds = user_seeds(
        options, tree, programs.get, "/srv/app", (notes if notes is not None else []).append
    )
    planner = Planner(tree, options.exclude_patterns)
    planner.add(seeds)
    return set(planner.kept_paths)


NOTHING = KeepOptions(include_cert_all=False)


def test_include_path_keeps_a_file_or_a_whole_directory_and_globs() -> None:
    out = kept(KeepOptions(include_cert_all=False, include_paths=("/srv/app", "/data/*/1.json")))
    assert {"/srv/app/main.py", "/srv/app/static/logo.png", "/data/a/1.json"} <= out
    assert "/data/b/2.json" not in out


def test_exclude_pattern_wins_over_include_path() -> None:
    out = kept(
        KeepOptions(
            include_cert_all=False, include_paths=("/srv/app",), exclude_patterns=("**/*.log",)
        )
    )
    assert "/srv/app/static/logo.png" in out
    assert "/srv/app/static/debug.log" not in out


def test_certificates_are_kept_by_default_including_language_bundles() -> None:
    out = kept(KeepOptions())
    assert {
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/certs/abc.0",
        "/usr/share/ca-certificates/x.crt",
        "/opt/venv/lib/python3.11/site-packages/certifi/cacert.pem",
    } <= out
    assert "/etc/ssl/certs/ca-certificates.crt" not in kept(NOTHING)


def test_shell_exe_bin_zoneinfo_workdir() -> None:
    notes: list[str] = []
    out = kept(
        KeepOptions(
            include_cert_all=False,
            include_shell=True,
            include_exes=("tool", "missing-tool"),
            include_bins=("/bin/busybox",),
            include_zoneinfo=True,
            include_workdir=True,
        ),
        notes,
    )
    assert {"/bin/sh", "/bin/ls", "/bin/busybox", "/usr/local/bin/tool"} <= out
    assert {"/usr/share/zoneinfo/UTC", "/etc/localtime"} <= out
    assert "/srv/app/static/logo.png" in out
    assert notes == ["--include-exe missing-tool: not found on the image's PATH"]


def test_missing_user_paths_are_noted_not_fatal() -> None:
    notes: list[str] = []
    out = kept(KeepOptions(include_cert_all=False, include_paths=("/nowhere",)), notes)
    assert out == set()
    assert notes == ["--include-path /nowhere: not in the image"]


def test_include_path_file(tmp_path: Path) -> None:
    listing = tmp_path / "paths.txt"
    listing.write_text("# keep these\n/data/a\n\n  /srv/app/main.py  \n")
    assert read_path_file(listing) == ["/data/a", "/srv/app/main.py"]
    out = kept(KeepOptions(include_cert_all=False, include_path_files=(listing,)))
    assert {"/data/a/1.json", "/srv/app/main.py"} <= out
    with pytest.raises(InputNotFoundError):
        read_path_file(tmp_path / "absent.txt")
