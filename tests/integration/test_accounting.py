"""Accounting for every byte on the fixture images: trimmed package databases checked by
dpkg itself, SBOMs checked by the official SPDX and CycloneDX tools, the removed list.

Each fixture (Debian + curl, the Python app, Debian's Node) is slimmed once with its
default command; the slim image is unpacked and read with ``dpkg-query`` and
``dpkg --verify``, independently of ocislim's own parsers.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ocislim.image import open_image
from ocislim.layers.unpack import unpack
from ocislim.slim.report import validate
from tests.clirun import run_cli
from tests.images import fixture_image
from tests.integration.build_support import Built, build
from tests.tools import require_tool

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

FIXTURES = ("curl", "python-app", "node")


@dataclass(frozen=True)
class Slimmed:
    name: str
    built: Built
    out: Path
    source_root: Path
    slim_root: Path

    @property
    def spdx(self) -> Path:
        return self.out / "slim.spdx.json"

    @property
    def cdx(self) -> Path:
        return self.out / "slim.cdx.json"


@pytest.fixture(scope="module", params=FIXTURES)
def slimmed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Slimmed]:
    name = request.param
    out = tmp_path_factory.mktemp(f"acct-{name}")
    source = fixture_image(name)
    built = build(
        source,
        out,
        "--sbom",
        str(out / "slim.spdx.json"),
        "--sbom",
        str(out / "slim.cdx.json"),
        "--removed-list",
        str(out / "removed.txt"),
        "--html",
        str(out / "report.html"),
    )
    with open_image(source) as img:
        unpack(img, out / "source-root")
    with open_image(built.image) as img:
        unpack(img, out / "slim-root")
    yield Slimmed(name, built, out, out / "source-root", out / "slim-root")


def dpkg_query(root: Path) -> dict[str, str]:
    require_tool("dpkg-query")
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package}\\t${Version}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("\t") for line in out.splitlines())


def owners_of_kept_files(source_root: Path, slim_root: Path) -> set[str]:
    """Packages of the source whose .list names a non-directory the slim tree has."""
    info = source_root / "var/lib/dpkg/info"
    owners = set()
    for listing in info.glob("*.list"):
        for line in listing.read_text(errors="surrogateescape").splitlines():
            path = slim_root / line.lstrip("/")
            if line.startswith("/") and os.path.lexists(path) and not path.is_dir():
                owners.add(listing.name[: -len(".list")].partition(":")[0])
                break
    return owners


def test_dpkg_lists_exactly_the_packages_owning_a_kept_file(slimmed: Slimmed) -> None:
    present = dpkg_query(slimmed.slim_root)
    assert set(present) == owners_of_kept_files(slimmed.source_root, slimmed.slim_root)
    assert len(present) < len(dpkg_query(slimmed.source_root))
    report = slimmed.built.report
    validate(report)
    listed = {p["name"] for p in report["packages"]["list"] if p["manager"] == "dpkg" and p["kept"]}
    assert listed == set(present)
    kept = slimmed.built.kept()
    assert "package-db" in {r["source"] for r in kept["/var/lib/dpkg/status"]["reasons"]}


def test_dpkg_verify_is_clean_and_partial_packages_are_marked(slimmed: Slimmed) -> None:
    require_tool("dpkg")
    result = subprocess.run(
        ["dpkg", f"--root={slimmed.slim_root}", "--verify"], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, ""), result.stdout[:2000]
    marks = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={slimmed.slim_root}/var/lib/dpkg",
            "-W",
            "-f",
            "${Package}\\t${Ocislim-Partial}\\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    partial = {
        p["name"] for p in slimmed.built.report["packages"]["list"] if p["state"] == "partial"
    }
    marked = {line.split("\t")[0] for line in marks.splitlines() if line.split("\t")[1]}
    assert marked == partial and partial


@pytest.mark.parametrize("slimmed", ["curl"], indirect=True)
def test_dpkg_keeps_the_partial_mark_when_it_rewrites_status(
    slimmed: Slimmed, tmp_path: Path
) -> None:
    admin = tmp_path / "dpkg"
    subprocess.run(["cp", "-a", str(slimmed.slim_root / "var/lib/dpkg"), str(admin)], check=True)
    before = (admin / "status").read_text()
    name = next(iter(dpkg_query(slimmed.slim_root)))
    subprocess.run(
        ["dpkg", f"--admindir={admin}", "--force-not-root", "--set-selections"],
        input=f"{name} hold\n",
        text=True,
        check=True,
    )
    after = (admin / "status").read_text()
    assert after != before  # dpkg rewrote it
    assert after.count("Ocislim-Partial:") == before.count("Ocislim-Partial:") > 0


def test_removed_list_is_every_source_path_not_kept(slimmed: Slimmed) -> None:
    report = slimmed.built.report
    listed = (slimmed.out / "removed.txt").read_text().splitlines()
    assert listed == [r["path"] for r in report["removed"]]
    with open_image(fixture_image(slimmed.name)) as img:
        from ocislim.layers.merge import merge

        source = {e.path for e in merge(img).walk() if e.path != "/"}
    assert set(listed) == source - set(slimmed.built.kept())
    owned = [r for r in report["removed"] if r["package"]]
    assert owned and all(r["package"].startswith(("dpkg:", "pip:", "npm:")) for r in owned)
    dirs = report["removed_dirs"]
    assert sum(d["paths"] for d in dirs) == len(listed)


def _validate_spdx(path: Path) -> list[str]:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    return [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)))]


def _validate_cdx(text: str) -> Any:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)


def test_sboms_validate_and_match_dpkg_query(slimmed: Slimmed) -> None:
    assert _validate_spdx(slimmed.spdx) == []
    cdx_text = slimmed.cdx.read_text()
    assert _validate_cdx(cdx_text) is None
    present = dpkg_query(slimmed.slim_root)
    spdx = json.loads(slimmed.spdx.read_text())
    deb = {}
    for p in spdx["packages"]:
        purl = p["externalRefs"][0]["referenceLocator"]
        if purl.startswith("pkg:deb/"):
            deb[p["name"]] = p["versionInfo"]
    assert deb == present
    cdx = json.loads(cdx_text)
    cdx_deb = {
        c["name"]: c["version"]
        for c in cdx["components"]
        if c.get("purl", "").startswith("pkg:deb/")
    }
    assert cdx_deb == present
    states = {
        c["name"]: {p["name"]: p["value"] for p in c["properties"]}
        for c in cdx["components"]
        if "properties" in c
    }
    report = {p["name"]: p for p in slimmed.built.report["packages"]["list"] if p["kept"]}
    for name, props in states.items():
        assert props["ocislim:state"] == report[name]["state"]
        assert int(props["ocislim:files:kept"]) == report[name]["kept"]
    meta = cdx["metadata"]["component"]["properties"]
    identity = {p["name"]: p["value"] for p in meta}
    assert identity["ocislim:manifest_digest"] == slimmed.built.report["output"]["manifest_digest"]
    assert identity["ocislim:config_digest"] == slimmed.built.report["output"]["config_digest"]


def test_sbom_files_carry_the_slim_trees_sha256(slimmed: Slimmed) -> None:
    import hashlib

    spdx = json.loads(slimmed.spdx.read_text())
    files = {f["fileName"][1:]: f for f in spdx["files"]}
    on_disk = {}
    for dirpath, _, names in os.walk(slimmed.slim_root):
        for n in names:
            full = Path(dirpath) / n
            if full.is_file() and not full.is_symlink():
                on_disk["/" + str(full.relative_to(slimmed.slim_root))] = full
    assert set(files) == set(on_disk)
    for path in sorted(files)[:: max(1, len(files) // 50)]:
        sha = {c["algorithm"]: c["checksumValue"] for c in files[path]["checksums"]}
        assert sha["SHA256"] == hashlib.sha256(on_disk[path].read_bytes()).hexdigest()


@pytest.mark.parametrize("slimmed", ["python-app"], indirect=True)
def test_sbom_command_is_deterministic_and_reads_partial_marks(
    slimmed: Slimmed, tmp_path: Path
) -> None:
    outs = []
    for i in range(2):
        target = tmp_path / f"again{i}.cdx.json"
        result = run_cli("sbom", str(slimmed.built.image), "-o", str(target), "--json", "-q")
        assert result.code == 0, result.stderr
        outs.append(target.read_bytes())
        summary = json.loads(result.stdout)
        assert summary["states"].get("partial", 0) > 0
    assert outs[0] == outs[1]
    bad = run_cli("sbom", str(slimmed.built.image), "-o", str(tmp_path / "x.json"))
    assert bad.code == 2 and "spdx.json" in bad.stderr


# --- the HTML report in a real browser -----------------------------------------------

KEPT_RGB = (0x2E, 0x8B, 0x57)


def chromium(page: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page``, no network; console messages go to stderr."""
    exe = require_tool("chromium")
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={work / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit PNG (enough for screenshots)."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        kind, cur = line[0], bytearray(line[1:])
        for i in range(stride):
            a = cur[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                cur[i] = (cur[i] + a) & 0xFF
            elif kind == 2:
                cur[i] = (cur[i] + b) & 0xFF
            elif kind == 3:
                cur[i] = (cur[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[i] = (cur[i] + pred) & 0xFF
        rows.append(
            bytes(cur) if channels == 3 else bytes(cur[j] for j in range(stride) if j % 4 != 3)
        )
        prev = cur
    return width, height, rows


def test_the_console_check_sees_an_error(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><script>console.error('ocislim-check')</script>")
    result = chromium(page, tmp_path, "--dump-dom")
    assert any("ocislim-check" in line for line in console_messages(result.stderr))


def test_html_report_loads_cleanly_and_shows_the_reports_numbers(
    slimmed: Slimmed, tmp_path: Path
) -> None:
    import re

    page = slimmed.out / "report.html"
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text and "<script src" not in text and "<link" not in text
    result = chromium(page, tmp_path, "--dump-dom")
    assert console_messages(result.stderr) == []
    dom = result.stdout
    numbers = dict(re.findall(r'data-key="([^"]+)" data-n="([^"]+)"', dom))
    report = slimmed.built.report
    assert int(numbers["kept-paths"]) == len(report["kept"])
    assert int(numbers["removed-paths"]) == len(report["removed"])
    assert int(numbers["source-files"]) == report["source"]["files"]
    assert int(numbers["output-files"]) == report["output"]["files"]
    assert int(numbers["output-content"]) == report["output"]["content_size"]
    assert int(numbers["verification-rounds"]) == len(report["verification"]["rounds"])
    for state in ("whole", "partial", "removed"):
        assert int(numbers[f"packages-{state}"]) == report["packages"]["counts"][state]
    kept_files = sum(k["size"] for k in report["kept"] if k["kind"] == "file")
    assert int(numbers["treemap-kept"]) == kept_files
    # The table script ran: it counted the rows it shows.
    assert re.search(r'id="shown">(\d+)<', dom).group(1) == str(len(report["kept"]))  # type: ignore[union-attr]
    assert dom.count('<rect class="kept"') > 0 and dom.count('<rect class="removed"') > 0


def test_screenshot_shows_the_treemap(slimmed: Slimmed, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(
        slimmed.out / "report.html", tmp_path, f"--screenshot={shot}", "--window-size=1000,1300"
    )
    width, height, rows = png_pixels(shot)
    kept = bytes(KEPT_RGB)
    green = sum(1 for row in rows for x in range(0, width * 3, 3) if row[x : x + 3] == kept)
    assert green > 0.02 * width * height, green  # the kept cells of the treemaps


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_package_db_keep_and_drop(mode: str, tmp_path: Path) -> None:
    source = fixture_image("curl")
    built = build(source, tmp_path, "--package-db", mode, "--no-verify")
    with open_image(built.image) as img:
        from ocislim.layers.merge import merge

        slim = {e.path: e for e in merge(img).walk()}
    report = built.report
    assert report["packages"]["mode"] == mode
    if mode == "drop":
        assert not any(p.startswith("/var/lib/dpkg/") for p in slim)
        return
    with open_image(source) as img:
        whole = {e.path: e.size for e in merge(img).walk() if e.path.startswith("/var/lib/dpkg/")}
    assert {p: slim[p].size for p in whole} == whole  # every database file, untrimmed


def test_xray_and_diff_read_the_trimmed_database(slimmed: Slimmed) -> None:
    from ocislim.inspect.diff import diff
    from ocislim.inspect.xray import xray

    present = dpkg_query(slimmed.slim_root)
    packages = slimmed.built.report["packages"]["list"]
    partial = {p["name"]: p for p in packages if p["manager"] == "dpkg" and p["state"] == "partial"}
    with open_image(slimmed.built.image) as img:
        managers = {m["name"]: m for m in xray(img, top=1)["package_managers"]}
    assert managers["dpkg"]["packages"] == len(present)
    assert managers["dpkg"]["partial"] == len(partial)
    with open_image(fixture_image(slimmed.name)) as a, open_image(slimmed.built.image) as b:
        apt = diff(a, b, ["apt"])["packages"]["apt"]
    before = dpkg_query(slimmed.source_root)
    assert {p["name"] for p in apt["removed"]} == before.keys() - present.keys()
    changed = {p["name"]: p for p in apt["changed"]}
    assert set(changed) == set(partial)
    for name, p in changed.items():
        assert (p["kept"], p["removed"]) == (partial[name]["kept"], partial[name]["removed"])
