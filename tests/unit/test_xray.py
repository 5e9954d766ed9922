"""xray on synthetic layered images whose answers are known by construction."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ocislim.image import open_image
from ocislim.inspect.scan import scan
from ocislim.inspect.xray import render_text, xray
from tests.clirun import run_cli
from tests.synth import M, config_for, docker_archive, layer, oci_archive

PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/bash\n# note\n"
GROUP = b"root:x:0:\nwheel:x:10:root,app\nbad line\n"
CERT = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
DPKG_STATUS = b"""Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2
Description: shell
 continuation line: not a field

Package: oldpkg
Status: deinstall ok config-files
Version: 1.0
"""
METADATA = b"Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.2.3\n\nName: not-this\n"
PACKAGE_JSON = b'{"name": "left-pad", "version": "1.3.0"}'
BIG = b"a" * 5000
COPY = b"c" * 300


def base_layer() -> bytes:
    return layer(
        [
            M("etc", "dir"),
            M("etc/passwd", data=PASSWD),
            M("etc/group", data=GROUP),
            M("etc/ssl/certs/ca-certificates.crt", data=CERT * 2),
            M("bin", "dir"),
            M("bin/busybox", data=b"B" * 100, mode=0o755),
            M("bin/sh", "symlink", link="busybox"),
            M("usr/bin/su", data=b"S" * 40, mode=0o4755),
            M("usr/bin/wall", data=b"W" * 30, mode=0o2755, gid=5),
            M("data/big", data=BIG),
            M("data/copy1", data=COPY),
            M("data/copy2", data=COPY),
            M("data/empty1"),
            M("data/empty2"),
            M("opt/old", "dir"),
            M("opt/old/x", data=b"x" * 100),
            M("opt/old/y", data=b"y" * 50),
            M("var/lib/dpkg/status", data=DPKG_STATUS),
            M("usr/lib/python3/dist-packages/Foo_Bar-1.2.3.dist-info/METADATA", data=METADATA),
            M("app/node_modules/left-pad/package.json", data=PACKAGE_JSON),
            M("app/node_modules/left-pad/lib/package.json", data=b'{"name": "inner"}'),
        ]
    )


def second_layer() -> bytes:
    return layer(
        [
            M("data", "dir"),
            M("data/big", data=b"b" * 2000),
            M("data/new", data=b"n" * 10),
            M("opt", "dir"),
            M("opt/.wh.old"),
        ]
    )


def third_layer() -> bytes:
    return layer(
        [
            M("data/hl", "hardlink", link="data/new"),
            M("data/copy3", data=COPY),
        ]
    )


LAYERS = [base_layer(), second_layer(), third_layer()]


def _config() -> dict[str, Any]:
    cfg = config_for(LAYERS, Entrypoint=["/bin/sh"])
    cfg["history"] = [
        {"created_by": "/bin/sh -c #(nop) ADD file:0123abcd in / "},
        {"created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": True},
        {"created_by": "/bin/sh -c rm -rf /opt/old && echo b > /data/big"},
        {"created_by": "COPY copy3 /data/ # buildkit"},
    ]
    return cfg


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    path = oci_archive(tmp_path, LAYERS, config=_config())
    with open_image(path) as img:
        return xray(img, top=3)


def test_layer_changes(report: dict[str, Any]) -> None:
    layers = report["layers"]
    assert len(layers) == 3
    # Base layer: every non-directory entry is new (21 members, 3 listed dirs).
    assert (layers[0]["added"], layers[0]["modified"], layers[0]["deleted"]) == (18, 0, 0)
    assert layers[0]["files"] == 18
    # Second: /data/big overwritten, /data/new added, /opt/old (2 files, 150 bytes) deleted.
    assert (layers[1]["added"], layers[1]["modified"], layers[1]["deleted"]) == (1, 1, 2)
    assert layers[1]["deleted_bytes"] == 150
    assert layers[1]["whiteouts"] == 1
    assert (layers[2]["added"], layers[2]["modified"], layers[2]["deleted"]) == (2, 0, 0)


def test_history_skips_empty_layers(report: dict[str, Any]) -> None:
    made_by = [layer["created_by"] for layer in report["layers"]]
    assert made_by == [
        "/bin/sh -c #(nop) ADD file:0123abcd in / ",
        "/bin/sh -c rm -rf /opt/old && echo b > /data/big",
        "COPY copy3 /data/ # buildkit",
    ]


def test_top_files(report: dict[str, Any]) -> None:
    assert report["layers"][0]["top"] == [
        {"path": "/data/big", "size": 5000},
        {"path": "/data/copy1", "size": 300},
        {"path": "/data/copy2", "size": 300},
    ]
    assert report["layers"][1]["top"] == [
        {"path": "/data/big", "size": 2000},
        {"path": "/data/new", "size": 10},
    ]
    # A hardlink carries no bytes of its own.
    assert report["layers"][2]["top"] == [{"path": "/data/copy3", "size": 300}]


def test_dive_wasted_space_and_efficiency(report: dict[str, Any]) -> None:
    # Leaf sizes per layer as dive sees them.  Only /data/big is in two layers.
    base_files = [PASSWD, GROUP, CERT * 2, b"B" * 100, b"S" * 40, b"W" * 30, BIG, COPY, COPY]
    base_files += [b"x" * 100, b"y" * 50, DPKG_STATUS, METADATA, PACKAGE_JSON]
    base_files += [b'{"name": "inner"}']
    cumulative = sum(map(len, base_files))
    cumulative += 2000 + 10  # layer 1 files
    cumulative += 150  # the whiteout of /opt/old: everything it hid
    cumulative += 300  # layer 2: copy3 (the hardlink has size 0)
    assert report["wasted_bytes"] == 5000 + 2000
    minimum = cumulative - 5000  # /data/big's smallest copy is 2000
    assert report["efficiency"] == pytest.approx(minimum / cumulative)
    assert report["inefficiencies"][0] == {"path": "/data/big", "layers": 2, "size": 7000}


def test_duplicates_in_merged_tree(report: dict[str, Any]) -> None:
    groups = report["duplicates"]["groups"]
    assert groups == [
        {
            "size": 300,
            "digest": "sha256:" + hashlib.sha256(COPY).hexdigest(),
            "copies": 3,
            "paths": ["/data/copy1", "/data/copy2", "/data/copy3"],
            "wasted_bytes": 600,
        }
    ]
    # Empty files and the hardlink pair /data/new + /data/hl are not duplicates.
    assert report["duplicates"]["wasted_bytes"] == 600


def test_special_files_shells_bundles(report: dict[str, Any]) -> None:
    special = {s["path"]: s for s in report["special_files"]}
    assert set(special) == {"/usr/bin/su", "/usr/bin/wall"}
    assert special["/usr/bin/su"]["setuid"] and not special["/usr/bin/su"]["setgid"]
    assert special["/usr/bin/wall"]["mode"] == "2755" and special["/usr/bin/wall"]["gid"] == 5
    assert report["shells"] == [
        {"path": "/bin/busybox", "target": "/bin/busybox"},
        {"path": "/bin/sh", "target": "/bin/busybox"},
    ]
    assert report["ca_bundles"] == [
        {
            "path": "/etc/ssl/certs/ca-certificates.crt",
            "target": "/etc/ssl/certs/ca-certificates.crt",
            "size": len(CERT) * 2,
            "certificates": 2,
        }
    ]


def test_packages_and_accounts(report: dict[str, Any]) -> None:
    managers = {p["name"]: p for p in report["package_managers"]}
    assert managers["dpkg"]["packages"] == 2
    assert managers["pip"] == {
        "name": "pip",
        "databases": ["/usr/lib/python3/dist-packages"],
        "packages": 1,
    }
    assert managers["npm"]["packages"] == 1
    assert managers["npm"]["databases"] == ["/app/node_modules"]
    assert set(managers) == {"dpkg", "pip", "npm"}
    assert [u["name"] for u in report["users"]] == ["root", "app"]
    assert report["users"][1] == {
        "name": "app",
        "uid": 1000,
        "gid": 1000,
        "home": "/home/app",
        "shell": "/bin/bash",
    }
    assert report["groups"] == [
        {"name": "root", "gid": 0, "members": []},
        {"name": "wheel", "gid": 10, "members": ["root", "app"]},
    ]


def test_totals(report: dict[str, Any]) -> None:
    assert report["size"] == sum(layer["size"] for layer in report["layers"])
    assert report["uncompressed_size"] == sum(map(len, LAYERS))
    # Merged tree: /opt/old is gone, /data/big is the 2000-byte copy, /data/hl shares /data/new.
    # Regular files only (bin/sh is a symlink), as build's report counts them.
    assert report["files"] == 17 - 2 + 1 + 2
    assert report["paths"] == report["files"] + 1 + 19  # the symlink, 19 directories
    base_bytes = sum(len(m) for m in [PASSWD, GROUP, CERT * 2, b"B" * 100, b"S" * 40, b"W" * 30])
    base_bytes += 3 * 300 + len(DPKG_STATUS) + len(METADATA) + len(PACKAGE_JSON)
    base_bytes += len(b'{"name": "inner"}')
    assert report["files_size"] == base_bytes - 300 + 2000 + 10 + 300


def test_same_answers_from_docker_archive(tmp_path: Path, report: dict[str, Any]) -> None:
    path = docker_archive(tmp_path, LAYERS)
    with open_image(path) as img:
        other = xray(img, top=3)
    for key in ("wasted_bytes", "efficiency", "duplicates", "special_files", "files"):
        assert other[key] == report[key], key
    strip = ("digest", "media_type", "size", "created_by")
    for a, b in zip(other["layers"], report["layers"], strict=True):
        assert {k: v for k, v in a.items() if k not in strip} == {
            k: v for k, v in b.items() if k not in strip
        }


def test_text_output_is_aligned(report: dict[str, Any]) -> None:
    text = render_text(report, top=3)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("#  DIGEST"))
    rows = lines[header : header + 4]
    # Right-aligned numeric columns end where their heading ends, in every row.
    for heading in ("SIZE", "ADDED", "DELETED"):
        end = rows[0].index(heading) + len(heading)
        for row in rows[1:]:
            assert row[end - 1] != " " and row[end] == " ", (heading, row)
    assert all(line == line.rstrip() for line in lines)
    assert "/data/copy1, /data/copy2, /data/copy3" in text
    assert "Wasted:     7.0 kB" in text


def test_scan_without_hashing_reads_only_captured_files(tmp_path: Path) -> None:
    path = oci_archive(tmp_path, LAYERS, config=_config())
    with open_image(path) as img:
        result = scan(img, hash_contents=False)
    entry = result.tree.get("/data/copy1")
    assert entry is not None and result.content_digest(entry) is None
    assert result.file_bytes("/etc/passwd") == PASSWD
    assert result.file_bytes("/data/copy1") is None  # not a file of interest


def test_captured_file_overwritten_later_shows_final_bytes(tmp_path: Path) -> None:
    layers = [
        layer([M("etc/passwd", data=b"old:x:1:1::/:/bin/sh\n")]),
        layer([M("etc/passwd", data=b"new:x:2:2::/:/bin/sh\n")]),
        layer([M("etc/.wh.group"), M("etc/shells", "symlink", link="passwd")]),
    ]
    path = oci_archive(tmp_path, [layer([M("etc/group", data=b"g:x:1:\n")]), *layers])
    with open_image(path) as img:
        result = scan(img)
        rep = xray(img)
    assert result.file_bytes("/etc/passwd") == b"new:x:2:2::/:/bin/sh\n"
    assert result.file_bytes("/etc/group") is None
    assert [u["name"] for u in rep["users"]] == ["new"]
    assert rep["groups"] == []
    assert rep["layers"][2]["modified"] == 1
    assert rep["layers"][3]["deleted"] == 1


def test_whiteout_through_symlinked_parent(tmp_path: Path) -> None:
    layers = [
        layer(
            [
                M("usr/bin/tool", data=b"t" * 7),
                M("bin", "symlink", link="usr/bin"),
            ]
        ),
        layer([M("bin/.wh.tool"), M("bin/other", data=b"o")]),
    ]
    path = oci_archive(tmp_path, layers)
    with open_image(path) as img:
        rep = xray(img)
    assert rep["layers"][1]["deleted"] == 1
    assert rep["layers"][1]["deleted_bytes"] == 7
    assert rep["layers"][1]["added"] == 1


def test_empty_image_efficiency_is_one(tmp_path: Path) -> None:
    path = oci_archive(tmp_path, [layer([M("d", "dir")])])
    with open_image(path) as img:
        rep = xray(img)
    assert rep["efficiency"] == 1.0
    assert rep["wasted_bytes"] == 0
    assert rep["duplicates"] == {"groups": [], "wasted_bytes": 0}
    assert rep["users"] == [] and rep["shells"] == [] and rep["package_managers"] == []


def test_cli_json_and_dockerfile(tmp_path: Path) -> None:
    path = oci_archive(tmp_path, LAYERS, config=_config())
    dockerfile = tmp_path / "out" / "Dockerfile"
    dockerfile.parent.mkdir()
    result = run_cli("xray", "--json", "--top", "1", "--dockerfile", str(dockerfile), str(path))
    assert result.code == 0, result.stderr
    rep = json.loads(result.stdout)
    for key in ("layers", "wasted_bytes", "efficiency", "duplicates"):
        assert key in rep
    assert {"digest", "size", "files", "top"} <= set(rep["layers"][0])
    assert rep["layers"][0]["top"] == [{"path": "/data/big", "size": 5000}]
    assert set(rep["duplicates"]) == {"groups", "wasted_bytes"}
    text = dockerfile.read_text()
    assert "ADD file:0123abcd /\nENV A=1\nRUN rm -rf /opt/old \\\n    && echo b" in text
    assert 'ENTRYPOINT ["/bin/sh"]' in text
    assert os.listdir(dockerfile.parent) == ["Dockerfile"]


def test_cli_errors(tmp_path: Path) -> None:
    missing = run_cli("xray", str(tmp_path / "absent.tar"))
    assert missing.code == 3 and "absent.tar" in missing.error
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar")
    bad = run_cli("xray", str(junk))
    assert bad.code == 4 and "junk.tar" in bad.error
    path = oci_archive(tmp_path, LAYERS, config=_config())
    nowhere = run_cli("xray", "--dockerfile", str(tmp_path / "no" / "Dockerfile"), str(path))
    assert nowhere.code == 8 and "does not exist" in nowhere.error
