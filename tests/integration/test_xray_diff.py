"""xray and diff against real fixture images, checked with oracles outside ocislim's scan:

* file diffs equal the set differences of the two trees unpacked on disk
  (``ocislim unpack``, compared with ``os.lstat`` and file hashes);
* package diffs equal what ``dpkg-query`` reads from each unpacked tree;
* xray's setuid files, duplicates, totals, CA certificate count and the
  deleted counts of the whiteout layer equal what the unpacked trees show.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ocislim.image import open_image
from ocislim.inspect.diff import diff
from ocislim.inspect.xray import xray
from ocislim.layers.unpack import unpack
from tests.clirun import run_cli
from tests.images import fixture_image
from tests.synth import walk_disk
from tests.tools import require_tool

pytestmark = pytest.mark.integration

AS_ROOT = os.geteuid() == 0  # only root's unpack keeps owners


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``unpacked(name)``: the fixture image's merged tree on disk, unpacked once per module."""
    base = tmp_path_factory.mktemp("unpacked")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            dest = base / name
            with open_image(fixture_image(name, "oci-archive")) as img:
                unpack(img, dest)
            cache[name] = dest
        return cache[name]

    return get


def disk_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """``{path: (kind, mode, uid, gid, content, size, inode)}`` for every entry below ``root``."""
    out: dict[str, tuple[Any, ...]] = {}
    for rel, full, st in walk_disk(root):
        if stat.S_ISLNK(st.st_mode):
            kind, content = "symlink", os.readlink(full)
        elif stat.S_ISDIR(st.st_mode):
            kind, content = "dir", None
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256()
            with open(full, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            kind, content = "file", digest.hexdigest()
        else:
            kind, content = "other", None
        mode = None if kind == "symlink" else stat.S_IMODE(st.st_mode)
        owner = (st.st_uid, st.st_gid) if AS_ROOT else (None, None)
        size = st.st_size if kind == "file" else 0
        out[rel] = (kind, mode, *owner, content, size, st.st_ino)
    return out


def expected_changes(a: tuple[Any, ...], b: tuple[Any, ...]) -> list[str]:
    changes = []
    if a[0] != b[0]:
        changes.append("type")
    elif a[4] != b[4]:
        changes.append("link" if a[0] == "symlink" else "content")
    if a[0] == b[0] and a[1] != b[1]:
        changes.append("mode")
    if a[2:4] != b[2:4]:
        changes.append("owner")
    return changes


PAIRS = [
    ("python-app", "oci-archive", "http-server", "docker-archive"),
    ("curl", "oci-dir", "python-app", "docker-archive"),
]


@pytest.mark.parametrize(("name_a", "fmt_a", "name_b", "fmt_b"), PAIRS)
def test_file_diff_equals_unpacked_trees(
    unpacked: Any, name_a: str, fmt_a: str, name_b: str, fmt_b: str
) -> None:
    tree_a, tree_b = disk_tree(unpacked(name_a)), disk_tree(unpacked(name_b))
    with (
        open_image(fixture_image(name_a, fmt_a)) as img_a,
        open_image(fixture_image(name_b, fmt_b)) as img_b,
    ):
        files = diff(img_a, img_b, ["file"])["files"]
    assert {f["path"] for f in files["added"]} == tree_b.keys() - tree_a.keys()
    assert {f["path"] for f in files["removed"]} == tree_a.keys() - tree_b.keys()
    for f in files["added"]:
        assert f["size"] == tree_b[f["path"]][5], f
    for f in files["removed"]:
        assert f["size"] == tree_a[f["path"]][5], f
    want = {
        path: expected_changes(tree_a[path], tree_b[path]) for path in tree_a.keys() & tree_b.keys()
    }
    want = {path: changes for path, changes in want.items() if changes}
    got = {f["path"]: [c for c in f["changes"] if c != "xattrs"] for f in files["modified"]}
    if not AS_ROOT:
        got = {p: [c for c in cs if c != "owner"] for p, cs in got.items()}
        got = {p: cs for p, cs in got.items() if cs}
    assert got == want
    assert files["added"] or files["removed"] or files["modified"]


def dpkg_installed(root: Path) -> dict[str, str]:
    """Installed packages as ``dpkg-query`` reads them from an unpacked tree."""
    require_tool("dpkg-query")
    out = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root}/var/lib/dpkg",
            "-W",
            "-f",
            "${Package}\\t${Version}\\t${db:Status-Status}\\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    return {name: version for name, version, status in rows if status == "installed"}


@pytest.mark.parametrize(
    ("name_a", "name_b"), [("python-app", "curl"), ("bullseye-python", "python-app")]
)
def test_apt_diff_equals_dpkg_status(unpacked: Any, name_a: str, name_b: str) -> None:
    before, after = dpkg_installed(unpacked(name_a)), dpkg_installed(unpacked(name_b))
    with (
        open_image(fixture_image(name_a, "oci-archive")) as img_a,
        open_image(fixture_image(name_b, "docker-archive")) as img_b,
    ):
        apt = diff(img_a, img_b, ["apt"])["packages"]["apt"]
    assert {(p["name"], p["version"]) for p in apt["added"]} == {
        (n, after[n]) for n in after.keys() - before.keys()
    }
    assert {(p["name"], p["version"]) for p in apt["removed"]} == {
        (n, before[n]) for n in before.keys() - after.keys()
    }
    assert {(p["name"], p["from"], p["to"]) for p in apt["changed"]} == {
        (n, before[n], after[n]) for n in before.keys() & after.keys() if before[n] != after[n]
    }
    assert apt["added"] or apt["removed"] or apt["changed"]


@pytest.fixture(scope="module")
def app_report() -> dict[str, Any]:
    with open_image(fixture_image("python-app", "oci-archive")) as img:
        return xray(img, top=5)


def test_xray_matches_unpacked_tree(unpacked: Any, app_report: dict[str, Any]) -> None:
    root = unpacked("python-app")
    tree = disk_tree(root)
    files = {p: t for p, t in tree.items() if t[0] != "dir"}
    assert app_report["files"] == sum(1 for t in files.values() if t[0] == "file")
    assert app_report["paths"] == len(tree) - (1 if "/" in tree else 0)
    inodes = {t[6]: t[5] for t in files.values() if t[0] == "file"}
    assert app_report["files_size"] == sum(inodes.values())
    if AS_ROOT:
        special = {p for p, t in files.items() if t[0] == "file" and t[1] & 0o6000}
        assert {s["path"] for s in app_report["special_files"]} == special
        assert special  # passwd, su, mount, ... in a Debian base
    groups: dict[str, dict[int, list[str]]] = {}
    for path, t in files.items():
        if t[0] == "file" and t[5] > 0:
            groups.setdefault(t[4], {}).setdefault(t[6], []).append(path)
    dup_sets = {
        frozenset(p for paths in by_inode.values() for p in paths)
        for by_inode in groups.values()
        if len(by_inode) > 1
    }
    reported = app_report["duplicates"]["groups"]
    assert {frozenset(g["paths"]) for g in reported} == dup_sets
    wasted = sum(
        files[next(iter(group))][5] * (len({files[p][6] for p in group}) - 1) for group in dup_sets
    )
    assert app_report["duplicates"]["wasted_bytes"] == wasted
    bundle = (root / "etc/ssl/certs/ca-certificates.crt").read_bytes()
    certs = {c["path"]: c["certificates"] for c in app_report["ca_bundles"]}
    assert certs["/etc/ssl/certs/ca-certificates.crt"] == bundle.count(b"BEGIN CERTIFICATE")
    dpkg = {p["name"]: p["packages"] for p in app_report["package_managers"]}
    assert dpkg["dpkg"] == len(dpkg_installed(root))
    for shell in app_report["shells"]:
        assert os.path.isfile(os.path.realpath(root / shell["path"].lstrip("/")))
    names = [line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()]
    assert [u["name"] for u in app_report["users"]] == names


def test_whiteout_layer_counts(unpacked: Any, app_report: dict[str, Any]) -> None:
    # http-server is python-app without its top layer: the tree that layer changed.
    lower = disk_tree(unpacked("http-server"))
    hidden_roots = ("/usr/bin/pydoc3", "/usr/bin/pydoc3.11", "/usr/lib/python3.11/pydoc_data/")
    hidden = {
        path: t
        for path, t in lower.items()
        if t[0] != "dir" and (path.startswith(hidden_roots) or path.startswith("/usr/share/doc/"))
    }
    top = app_report["layers"][2]
    assert top["deleted"] == len(hidden)
    assert top["deleted_bytes"] == sum({t[6]: t[5] for t in hidden.values()}.values())
    # app.py, VERSION, RELEASE (hardlink), python (symlink), usr/share/doc/app/README
    assert (top["added"], top["modified"]) == (5, 0)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-dir"])
def test_xray_same_in_every_format(app_report: dict[str, Any], fmt: str) -> None:
    with open_image(fixture_image("python-app", fmt)) as img:
        other = xray(img, top=5)
    skip = {"image", "size", "layers"}
    assert {k: v for k, v in other.items() if k not in skip} == {
        k: v for k, v in app_report.items() if k not in skip
    }
    layer_skip = {"digest", "size", "media_type"}
    for a, b in zip(other["layers"], app_report["layers"], strict=True):
        assert {k: v for k, v in a.items() if k not in layer_skip} == {
            k: v for k, v in b.items() if k not in layer_skip
        }


def test_cli_on_real_image(tmp_path: Path) -> None:
    image = fixture_image("python-app", "oci-archive")
    dockerfile = tmp_path / "Dockerfile"
    result = run_cli("xray", "-q", "--top", "2", "--dockerfile", str(dockerfile), str(image))
    assert result.code == 0, result.stderr
    assert "Layers" in result.stdout and "dpkg" in result.stdout
    assert 'ENTRYPOINT ["python3", "/app/app.py"]' in dockerfile.read_text()
    other = fixture_image("http-server", "docker-archive")
    result = run_cli("diff", "--json", "--type", "config,history", str(image), str(other))
    assert result.code == 0, result.stderr
    rep = json.loads(result.stdout)
    assert rep["config"]["entrypoint"] == {"from": ["python3", "/app/app.py"], "to": None}
    assert rep["config"]["exposed_ports"] == {"from": [], "to": ["8080/tcp"]}
    assert set(rep) == {"a", "b", "types", "config", "history", "differences", "identical"}
