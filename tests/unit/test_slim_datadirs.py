"""program-data-dirs: a file read from one source package's data directory keeps it whole."""

from __future__ import annotations

import pytest

from ocislim.inspect.packages import parse_dpkg_sources
from ocislim.slim import datadirs
from ocislim.slim.datadirs import ProgramDataDirs
from ocislim.slim.pkgrules import DpkgIndex
from ocislim.slim.plan import Planner
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from

STATUS = b"""Package: pandoc
Status: install ok installed
Version: 2.17

Package: pandoc-data
Status: install ok installed
Source: pandoc (2.17-1)
Version: 2.17

Package: fonts-a
Status: install ok installed
Source: fonts-a

Package: fonts-b
Status: install ok installed

Package: big-data
Status: install ok installed

Package: removed-thing
Status: deinstall ok config-files
Source: other
"""


def _list(*paths: str) -> bytes:
    return "".join(f"{p}\n" for p in paths).encode()


def members(big: int = 10) -> list[M]:
    return [
        M("usr/bin/pandoc", data=b"\x7fELF", mode=0o755),
        M("usr/share/pandoc/data/abbreviations", data=b"Mr.\n"),
        M("usr/share/pandoc/data/templates/default.html5", data=b"<html>$body$</html>"),
        M("usr/share/pandoc/data/templates/default.latex", data=b"\\documentclass{}"),
        M("usr/share/pandoc/data/made-at-install.cache", data=b"x"),  # no package lists it
        M("usr/share/pandoc/doc/notes.txt", data=b"docs"),
        M("usr/share/fonts/a/A.ttf", data=b"a"),
        M("usr/share/fonts/a/A-Bold.ttf", data=b"a"),
        M("usr/share/fonts/b/B.ttf", data=b"b"),
        M("usr/share/big/one", data=b"1" * big),
        M("usr/share/big/sub/two", data=b"2"),
        M("usr/share/big/sub/three", data=b"3"),
        M("usr/share/bigger/more", data=b"4" * 50),
        M("usr/share/unowned/x", data=b"x"),
        M("usr/share/unowned/y", data=b"y"),
        M("usr/share/doc/pandoc/copyright", data=b"GPL"),
        M("usr/share/doc/pandoc/README", data=b"read me"),
        M("usr/lib/x86_64-linux-gnu/pandocx/tool", data=b"t"),
        M("usr/lib/x86_64-linux-gnu/pandocx/more", data=b"m"),
        M("usr/lib/x86_64-linux-gnu/libpandocx.so.1", data=b"\x7fELF"),
        M("var/lib/dpkg/status", data=STATUS),
        M(
            "var/lib/dpkg/info/pandoc.list",
            data=_list(
                "/usr/bin/pandoc",
                "/usr/share/doc/pandoc",
                "/usr/share/doc/pandoc/copyright",
                "/usr/share/doc/pandoc/README",
            ),
        ),
        M(
            "var/lib/dpkg/info/pandoc-data.list",
            data=_list(
                "/usr/share/pandoc",
                "/usr/share/pandoc/data",
                "/usr/share/pandoc/data/abbreviations",
                "/usr/share/pandoc/data/templates/default.html5",
                "/usr/share/pandoc/data/templates/default.latex",
                "/usr/share/pandoc/doc/notes.txt",
                "/usr/lib/x86_64-linux-gnu/pandocx/tool",
                "/usr/lib/x86_64-linux-gnu/pandocx/more",
                "/usr/lib/x86_64-linux-gnu/libpandocx.so.1",
            ),
        ),
        M(
            "var/lib/dpkg/info/fonts-a.list",
            data=_list("/usr/share/fonts/a/A.ttf", "/usr/share/fonts/a/A-Bold.ttf"),
        ),
        M("var/lib/dpkg/info/fonts-b.list", data=_list("/usr/share/fonts/b/B.ttf")),
        M(
            "var/lib/dpkg/info/big-data.list",
            data=_list(
                "/usr/share/big/one",
                "/usr/share/big/sub/two",
                "/usr/share/big/sub/three",
                "/usr/share/bigger/more",
            ),
        ),
    ]


def kept(
    touched: list[str],
    big: int = 10,
    enabled: set[str] | None = None,
    programs: tuple[str, ...] = (),
) -> set[str]:
    files = members(big)
    tree = tree_from(files)
    index = DpkgIndex(tree, reader(files))
    rule = ProgramDataDirs(index, {"program-data-dirs"} if enabled is None else enabled)
    planner = Planner(tree)
    planner.add(rule.seeds(touched, programs))
    return {p for p in planner.kept_paths if tree.get(p) is not None and not tree.get(p).is_dir}


def test_a_read_file_keeps_its_source_packages_data_directory_whole() -> None:
    out = kept(["/usr/share/pandoc/data/abbreviations"])
    assert "/usr/share/pandoc/data/templates/default.latex" in out
    assert "/usr/share/pandoc/data/made-at-install.cache" in out  # made by its scripts
    assert "/usr/share/pandoc/doc/notes.txt" not in out  # documentation is left out
    assert not any(p.startswith("/usr/share/doc/") for p in out)


def test_a_directory_several_sources_install_into_is_looked_into() -> None:
    out = kept(["/usr/share/fonts/a/A.ttf"])
    assert out == {"/usr/share/fonts/a/A.ttf", "/usr/share/fonts/a/A-Bold.ttf"}


def test_a_directory_past_the_size_cap_is_looked_into(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datadirs, "MAX_DATA_DIR", 100)
    assert kept(["/usr/share/big/sub/two"]) >= {"/usr/share/big/one", "/usr/share/big/sub/three"}
    out = kept(["/usr/share/big/sub/two"], big=101)
    assert out == {"/usr/share/big/sub/two", "/usr/share/big/sub/three"}


def test_a_source_whose_directories_together_pass_the_cap_keeps_only_those_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(datadirs, "MAX_DATA_DIR", 100)
    assert "/usr/share/bigger/more" in kept([], big=40, programs=("/usr/share/big/one",))
    assert kept([], big=60, programs=("/usr/share/big/one",)) == set()  # 62 + 50 bytes
    assert "/usr/share/big/sub/two" in kept(["/usr/share/big/one"], big=60)


def test_a_triplet_directory_is_a_root_not_a_data_directory() -> None:
    out = kept(["/usr/lib/x86_64-linux-gnu/pandocx/tool"])
    assert out == {
        "/usr/lib/x86_64-linux-gnu/pandocx/tool",
        "/usr/lib/x86_64-linux-gnu/pandocx/more",
    }


def test_nothing_without_a_package_a_file_or_the_rule() -> None:
    assert kept(["/usr/share/unowned/x"]) == set()  # no package installed it
    assert kept(["/usr/share/pandoc/data"]) == set()  # a directory read is no file read
    assert kept(["/usr/share/doc/pandoc/README"]) == set()  # documentation is no data
    assert kept(["/usr/share/pandoc/data/abbreviations"], enabled=set()) == set()


def test_packaged_under_stops_at_the_directory() -> None:
    files = members()
    index = DpkgIndex(tree_from(files), reader(files))
    assert [p for p, _ in index.packaged_under("/usr/share/big")] == [
        "/usr/share/big/one",
        "/usr/share/big/sub/three",
        "/usr/share/big/sub/two",
    ]  # not /usr/share/bigger, which sorts after /usr/share/big/
    assert index.packaged_under("/usr/share/bi") == []


def test_sources_come_from_the_status_file() -> None:
    sources = parse_dpkg_sources(STATUS.decode())
    assert sources["pandoc-data"] == "pandoc"  # the version is dropped
    assert sources["fonts-b"] == "fonts-b"  # no Source field: its own
    assert "removed-thing" not in sources  # not installed


def test_a_program_that_ran_keeps_the_data_directories_of_its_source() -> None:
    out = kept([], programs=("/usr/bin/pandoc",))  # pandoc-data is built from pandoc too
    assert "/usr/share/pandoc/data/templates/default.html5" in out
    assert "/usr/lib/x86_64-linux-gnu/pandocx/more" in out
    assert "/usr/lib/x86_64-linux-gnu/libpandocx.so.1" not in out  # no directory of its own
    assert not any(p.startswith(("/usr/share/fonts", "/usr/share/big")) for p in out)
    assert kept([], programs=("/usr/share/unowned/x",)) == set()
