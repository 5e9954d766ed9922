"""SBOMs, the HTML report, and diff/xray on a trimmed package database, on small images."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from ocislim import htmlreport
from ocislim.image import open_image
from ocislim.inspect.diff import diff, diff_packages, render_text
from ocislim.inspect.packages import parse_dpkg_partial
from ocislim.inspect.xray import xray
from ocislim.slim import pkgdb, sbom
from tests.clirun import run_cli
from tests.synth import M, layer, oci_archive

STATUS_SLIM = b"""Package: hello
Status: install ok installed
Architecture: amd64
Version: 1:1.0+b1
Ocislim-Partial: kept 1 of 3 files

Package: whole
Status: install ok installed
Architecture: all
Version: 2
"""
STATUS_FULL = STATUS_SLIM.replace(b"Ocislim-Partial: kept 1 of 3 files\n", b"")


def _image(tmp: Path, status: bytes, name: str) -> Path:
    members = [
        M("etc/os-release", data=b'ID=debian\nVERSION_ID="12"\n'),
        M("var/lib/dpkg/status", data=status),
        M("var/lib/dpkg/info/hello:amd64.list", data=b"/usr/bin/hello\n"),
        M("var/lib/dpkg/info/whole.list", data=b"/usr/share/whole\n"),
        M("usr/bin/hello", data=b"hello", mode=0o755),
        M("usr/share/whole", data=b""),
        M(
            "app/node_modules/@scope/left/package.json",
            data=b'{"name":"@scope/left","version":"1.0.0"}',
        ),
        M("app/node_modules/@scope/left/index.js", data=b"1"),
        M("app/loose.txt", data=b"not owned"),
    ]
    d = tmp / name
    d.mkdir()
    return oci_archive(d, [layer(members)], ref="demo:1")


def test_parse_dpkg_partial_reads_the_mark() -> None:
    assert parse_dpkg_partial(STATUS_SLIM.decode()) == {"hello": (1, 3)}
    assert parse_dpkg_partial(STATUS_FULL.decode()) == {}


def test_diff_shows_packages_kept_in_part() -> None:
    result = diff_packages({"a": "1", "b": "2"}, {"a": "1", "b": "3"}, {}, {"a": (2, 5)})
    assert result["changed"] == [
        {"name": "a", "from": "1", "to": "1", "kept": 2, "removed": 3},
        {"name": "b", "from": "2", "to": "3"},
    ]
    assert diff_packages({"a": "1"}, {"a": "1"})["changed"] == []


def test_diff_and_xray_of_a_trimmed_database(tmp_path: Path) -> None:
    full, slim = _image(tmp_path, STATUS_FULL, "full"), _image(tmp_path, STATUS_SLIM, "slim")
    with open_image(full) as a, open_image(slim) as b:
        rep = diff(a, b, ["apt"])
    apt = rep["packages"]["apt"]
    assert apt["changed"] == [
        {"name": "hello", "from": "1:1.0+b1", "to": "1:1.0+b1", "kept": 1, "removed": 2}
    ]
    assert "kept 1, removed 2 files" in render_text(rep)
    with open_image(slim) as img:
        managers = {m["name"]: m for m in xray(img)["package_managers"]}
    assert managers["dpkg"]["packages"] == 2 and managers["dpkg"]["partial"] == 1


def test_purls() -> None:
    deb = pkgdb.PackageAccount("dpkg", "hello", "1:1.0+b1", "amd64", 3, 1)
    assert sbom.purl(deb, ("debian", "12")) == (
        "pkg:deb/debian/hello@1%3A1.0%2Bb1?arch=amd64&distro=debian-12"
    )
    npm = pkgdb.PackageAccount("npm", "@scope/left", "1.0.0")
    assert sbom.purl(npm, ("", "")) == "pkg:npm/%40scope/left@1.0.0"
    pip = pkgdb.PackageAccount("pip", "req", "2.0")
    assert sbom.purl(pip, ("", "")) == "pkg:pypi/req@2.0"


def _sboms(tmp_path: Path, image: Path) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    result = run_cli(
        "sbom", str(image), "-o", str(out / "a.spdx.json"), "-o", str(out / "a.cdx.json"), "-q"
    )
    assert result.code == 0, result.stderr
    return (
        json.loads((out / "a.spdx.json").read_text()),
        json.loads((out / "a.cdx.json").read_text()),
        (out / "a.cdx.json").read_bytes() + (out / "a.spdx.json").read_bytes(),
    )


def test_sbom_command_writes_valid_deterministic_documents(tmp_path: Path) -> None:
    image = _image(tmp_path, STATUS_SLIM, "slim")
    spdx_doc, cdx_doc, first = _sboms(tmp_path, image)
    assert _sboms(tmp_path, image)[2] == first
    names = {p["name"]: p for p in spdx_doc["packages"]}
    assert names["hello"]["comment"] == "ocislim: partial, kept 1 of 3 files"
    assert names["whole"]["comment"] == "ocislim: whole, kept 1 of 1 files"
    files = {f["fileName"]: f for f in spdx_doc["files"]}
    assert {"./usr/bin/hello", "./app/loose.txt"} <= set(files)
    hello = {c["algorithm"]: c["checksumValue"] for c in files["./usr/bin/hello"]["checksums"]}
    assert hello["SHA256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    comps = {c["name"]: c for c in cdx_doc["components"]}
    props = {p["name"]: p["value"] for p in comps["hello"]["properties"]}
    assert props["ocislim:state"] == "partial" and props["ocislim:files:removed"] == "2"
    assert [f["name"] for f in comps["hello"]["components"]] == ["/usr/bin/hello"]
    assert comps["@scope/left"]["purl"] == "pkg:npm/%40scope/left@1.0.0"
    with open_image(image) as img:
        assert cdx_doc["metadata"]["component"]["version"] == str(img.manifest_digest)
    _official_validation(tmp_path / "out")


def _official_validation(out: Path) -> None:
    spdx_tools = pytest.importorskip("spdx_tools.spdx.parser.parse_anything")
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    doc = spdx_tools.parse_file(str(out / "a.spdx.json"))
    assert [m.validation_message for m in validate_full_spdx_document(doc)] == []
    pytest.importorskip("cyclonedx")
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(
            (out / "a.cdx.json").read_text()
        )
    assert error is None


def test_sbom_names_must_say_the_format(tmp_path: Path) -> None:
    image = _image(tmp_path, STATUS_SLIM, "slim")
    result = run_cli("sbom", str(image), "-o", str(tmp_path / "a.json"))
    assert result.code == 2 and ".spdx.json" in result.stderr


def test_squarify_tiles_the_rectangle_in_proportion() -> None:
    sizes = [60.0, 30.0, 6.0, 3.0, 1.0]
    rects = htmlreport.squarify(sizes, (0.0, 0.0, 100.0, 50.0))
    areas = [w * h for _, _, w, h in rects]
    assert sum(areas) == pytest.approx(5000.0)
    for size, area in zip(sizes, areas, strict=True):
        assert area == pytest.approx(size * 50.0)
    for x, y, w, h in rects:
        assert x >= 0 and y >= 0 and x + w <= 100.0001 and y + h <= 50.0001


def _report() -> dict[str, Any]:
    return {
        "version": 1,
        "ocislim": "0",
        "source": {"image": "src.tar", "reference": "demo:1", "manifest_digest": "sha256:aa",
                   "files": 3, "content_size": 300},
        "output": {"manifest_digest": "sha256:bb", "files": 1, "content_size": 100},
        "kept": [
            {"path": "/usr/bin/hello", "kind": "file", "size": 100,
             "reasons": [{"source": "trace", "process": "hello", "access": ["exec"]}]},
        ],
        "removed": [{"path": "/usr/share/doc/x", "kind": "file", "size": 200, "package": None}],
        "packages": {"mode": "trim", "counts": {"whole": 1, "partial": 0, "removed": 2},
                     "list": []},
        "verification": {"passed": True, "rounds": []},
        "timings": {"total": 1.5},
    }  # fmt: skip


def test_html_page_is_self_contained_and_carries_the_numbers() -> None:
    page = htmlreport.render(_report())
    assert page == htmlreport.render(_report())
    assert "<script src" not in page and "https://" not in page
    assert 'data-key="kept-paths" data-n="1"' in page
    assert 'data-key="treemap-total" data-n="300"' in page
    assert 'data-key="packages-removed" data-n="2"' in page
    assert page.count('<rect class="kept"') == 2  # before and after
    assert page.count('<rect class="removed"') == 1
