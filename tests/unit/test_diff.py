"""diff on synthetic images whose differences are known by construction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ocislim.errors import UsageError
from ocislim.image import open_image
from ocislim.inspect.diff import diff, parse_types, render_text
from tests.clirun import run_cli
from tests.synth import M, config_for, docker_archive, layer, oci_archive


def status(*packages: tuple[str, str]) -> bytes:
    return "\n".join(
        f"Package: {n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {v}\n"
        for n, v in packages
    ).encode()


LAYERS_A = [
    layer(
        [
            M("etc", "dir"),
            M("etc/one", data=b"one"),
            M("etc/two", data=b"two"),
            M("etc/same", data=b"same"),
            M("bin/link", "symlink", link="one"),
            M("usr/x", data=b"x", uid=0),
            M("t", data=b"file becomes dir"),
            M("gone", "dir"),
            M("gone/sub/file", data=b"12345"),
            M("var/lib/dpkg/status", data=status(("a", "1"), ("b", "1"), ("c", "1"))),
            M("py/site-packages/req-2.0.dist-info/METADATA", data=b"Name: req\nVersion: 2.0\n"),
        ]
    )
]

LAYERS_B = [
    layer(
        [
            M("etc", "dir"),
            M("etc/one", data=b"ONE"),
            M("etc/two", data=b"two", mode=0o600),
            M("etc/same", data=b"same"),
            M("bin/link", "symlink", link="two"),
            M("usr/x", data=b"x", uid=1000),
            M("t", "dir"),
            M("gone", "dir"),
            M("gone/sub/file", data=b"12345"),
            M("var/lib/dpkg/status", data=status(("a", "1"), ("b", "2"))),
        ]
    ),
    layer(
        [
            M(".wh.gone"),
            M("new", data=b"0123456789"),
            M("var/lib/dpkg/status", data=status(("a", "1"), ("b", "2"), ("d", "4"))),
            M("app/node_modules/@s/pkg/package.json", data=b'{"name":"@s/pkg","version":"1"}'),
        ]
    ),
]


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = oci_archive(tmp_path / "a", LAYERS_A, config=config_for(LAYERS_A, Cmd=["sh"], Env=["A=1"]))
    b = docker_archive(tmp_path / "b", LAYERS_B)
    return a, b


def run_diff(a: Path, b: Path, types: list[str] | None = None) -> dict[str, Any]:
    with open_image(a) as img_a, open_image(b) as img_b:
        return diff(img_a, img_b, types or parse_types(None))


def test_files(images: tuple[Path, Path]) -> None:
    rep = run_diff(*images)
    files = rep["files"]
    assert files["added"] == [
        {"path": "/app", "type": "dir", "size": 0},
        {"path": "/app/node_modules", "type": "dir", "size": 0},
        {"path": "/app/node_modules/@s", "type": "dir", "size": 0},
        {"path": "/app/node_modules/@s/pkg", "type": "dir", "size": 0},
        {"path": "/app/node_modules/@s/pkg/package.json", "type": "file", "size": 31},
        {"path": "/new", "type": "file", "size": 10},
    ]
    assert [f["path"] for f in files["removed"]] == [
        "/gone",
        "/gone/sub",
        "/gone/sub/file",
        "/py",
        "/py/site-packages",
        "/py/site-packages/req-2.0.dist-info",
        "/py/site-packages/req-2.0.dist-info/METADATA",
    ]
    assert files["removed"][2]["size"] == 5
    modified = {f["path"]: f for f in files["modified"]}
    assert {p: f["changes"] for p, f in modified.items()} == {
        "/bin/link": ["link"],
        "/etc/one": ["content"],
        "/etc/two": ["mode"],
        "/t": ["type"],
        "/usr/x": ["owner"],
        "/var/lib/dpkg/status": ["content"],
    }
    assert modified["/t"]["type"] == "file -> dir"
    assert modified["/t"]["size_a"] == len(b"file becomes dir") and modified["/t"]["size_b"] == 0


def test_packages(images: tuple[Path, Path]) -> None:
    rep = run_diff(*images)
    apt = rep["packages"]["apt"]
    assert apt["added"] == [{"name": "d", "version": "4"}]
    assert apt["removed"] == [{"name": "c", "version": "1"}]
    assert apt["changed"] == [{"name": "b", "from": "1", "to": "2"}]
    assert rep["packages"]["pip"]["removed"] == [{"name": "req", "version": "2.0"}]
    assert rep["packages"]["npm"]["added"] == [{"name": "@s/pkg", "version": "1"}]
    assert rep["packages"]["apk"] == {
        "added": [],
        "removed": [],
        "changed": [],
        "in_a": False,
        "in_b": False,
    }


def test_config_history_size(images: tuple[Path, Path]) -> None:
    rep = run_diff(*images)
    assert rep["config"] == {
        "cmd": {"from": ["sh"], "to": None},
        "env": {"from": ["A=1"], "to": []},
    }
    assert rep["history"] == {
        "steps_a": 1,
        "steps_b": 2,
        "common_prefix": 1,
        "removed": [],
        "added": ["layer 1"],
    }
    assert rep["size"]["a"]["layers"] == 1 and rep["size"]["b"]["layers"] == 2
    assert rep["size"]["delta"]["uncompressed"] == sum(map(len, LAYERS_B)) - len(LAYERS_A[0])
    assert rep["differences"] == ["file", "apt", "pip", "npm", "size", "config", "history"]
    assert rep["identical"] is False


def test_same_layers_in_two_formats_are_identical_but_for_size(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = oci_archive(tmp_path / "a", LAYERS_B)
    b = docker_archive(tmp_path / "b", LAYERS_B)
    rep = run_diff(a, b)
    assert rep["files"] == {"added": [], "removed": [], "modified": []}
    assert rep["config"] == {} and rep["history"]["added"] == []
    # gzip-compressed against uncompressed layers: only the compressed size differs.
    assert rep["differences"] == ["size"]
    assert rep["size"]["delta"]["uncompressed"] == 0 and rep["size"]["delta"]["files_size"] == 0
    only = run_diff(a, b, ["file", "apt", "config"])
    assert only["identical"] is True
    expected_keys = {"a", "b", "types", "files", "packages", "config", "differences", "identical"}
    assert set(only) == expected_keys
    assert "No differences in what was compared." in render_text(only)


def test_selected_types_only(images: tuple[Path, Path]) -> None:
    rep = run_diff(*images, ["apt"])
    assert set(rep["packages"]) == {"apt"}
    assert "files" not in rep and "size" not in rep and "config" not in rep


def test_parse_types() -> None:
    assert parse_types("history,file") == ["file", "history"]
    assert parse_types(None)[0] == "file"
    with pytest.raises(UsageError, match="unknown type"):
        parse_types("file,rpm")
    with pytest.raises(UsageError):
        parse_types(",")


def test_text_output(images: tuple[Path, Path]) -> None:
    text = render_text(run_diff(*images))
    assert "Files: 6 added, 7 removed, 6 modified" in text
    assert "Packages (apt): 1 added, 1 removed, 1 changed" in text
    assert "Packages (apk)\n  no database in either image" in text
    assert "Differences in: file, apt, pip, npm, size, config, history" in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_cli_exit_codes(images: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = images
    result = run_cli("diff", "--json", str(a), str(b))
    assert result.code == 0, result.stderr  # differences are not an error
    assert '"identical": false' in result.stdout
    bad = run_cli("diff", "--type", "file,bogus", str(a), str(b))
    assert bad.code == 2
    assert "unknown type(s) bogus" in bad.error
    missing = run_cli("diff", str(a), str(tmp_path / "nope.tar"))
    assert missing.code == 3
    assert "nope.tar" in missing.error
