"""The foundation against real images and real consumers.

ocislim's unpack must equal ``umoci unpack``; what ``convert`` writes must pass
the OCI schemas, ``skopeo inspect``/``skopeo copy``, ``umoci unpack`` and
``podman load`` + ``podman run``, in every output format, and must keep the
merged tree (paths, types, modes, owners, content, link targets) unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from ocislim.image import open_image
from ocislim.layers.merge import merge
from ocislim.layers.tree import Entry
from tests import oci_schema
from tests.clirun import run_cli
from tests.images import fixture_image, image_reference
from tests.tools import require_tool

pytestmark = pytest.mark.integration

APP_OUTPUT = '{"app": "ocislim-fixture", "cwd": "/app", "version": "1.0.0"}'


class _HashSink:
    """A tree sink that records the sha256 of every regular file's content."""

    def __init__(self) -> None:
        self.content: dict[str, str] = {}

    def removed(self, entry: Entry) -> None:
        self.content.pop(entry.path, None)

    def directory(self, entry: Entry, created: bool) -> None:
        return None

    def file(self, entry: Entry, data: BinaryIO | None) -> None:
        if data is not None:
            digest = hashlib.sha256()
            while chunk := data.read(1 << 20):
                digest.update(chunk)
            self.content[entry.path] = digest.hexdigest()

    def hardlink(self, entry: Entry, target: Entry) -> None:
        if target.path in self.content:
            self.content[entry.path] = self.content[target.path]


@functools.cache
def source_signature(name: str) -> dict[str, tuple[Any, ...]]:
    """The tree signature of a fixture image, computed once per test session."""
    return tree_signature(fixture_image(name))


def tree_signature(path: Path) -> dict[str, tuple[Any, ...]]:
    """Everything the merged tree of an image says about each path."""
    sink = _HashSink()
    with open_image(path) as image:
        tree = merge(image, sink=sink)
    return {
        e.path: (
            e.kind,
            e.info.mode,
            e.info.uid,
            e.info.gid,
            e.linkname,
            e.info.devmajor,
            e.info.devminor,
            tuple(sorted(e.xattrs.items())),
            sink.content.get(e.path),
        )
        for e in tree.walk()
        if e.path != "/"
    }


def disk_signature(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, ...]]:
    """Paths, types, modes, owners, content digests and link targets of a directory tree."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(full, root)
            if rel in ignore:
                continue
            st = os.lstat(full)
            if os.path.islink(full):
                out[rel] = ("symlink", st.st_uid, st.st_gid, os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("dir", st.st_mode & 0o7777, st.st_uid, st.st_gid)
            else:
                digest = hashlib.sha256(Path(full).read_bytes()).hexdigest()
                out[rel] = ("file", st.st_mode & 0o7777, st.st_uid, st.st_gid, digest)
    return out


def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (umoci unpack without --rootless, podman)")


def test_unpack_equals_umoci(tmp_path: Path) -> None:
    _root_only()
    require_tool("umoci")
    layout = fixture_image("python-app", "oci-dir")
    ours = tmp_path / "ours"
    result = run_cli("unpack", "-q", str(fixture_image("python-app")), str(ours))
    assert result.code == 0, result.stderr
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{image_reference('python-app')}", str(bundle)],
        check=True,
        capture_output=True,
    )
    expected = disk_signature(bundle / "rootfs")
    got = disk_signature(ours, ignore=("/.ocislim-unpack.json",))
    assert len(expected) > 5000
    assert got.keys() == expected.keys()
    assert got == expected


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive", "oci-dir"])
def test_every_input_format_reads_the_same_image(fmt: str) -> None:
    baseline = source_signature("python-app")
    with open_image(fixture_image("python-app", fmt)) as image:
        assert len(image.layers) == 3
        assert image.config.entrypoint == ["python3", "/app/app.py"]
    assert tree_signature(fixture_image("python-app", fmt)) == baseline


def _validate_layout_json(index: dict[str, Any], blob: Any) -> None:
    oci_schema.validate("index", index)
    for desc in index["manifests"]:
        manifest = json.loads(blob(desc["digest"]))
        oci_schema.validate("manifest", manifest)
        oci_schema.validate("config", json.loads(blob(manifest["config"]["digest"])))


def validate_oci_output(path: Path) -> None:
    """Schema-check index, manifests and configs of an oci-archive or layout directory."""
    if path.is_dir():
        index = json.loads((path / "index.json").read_text())
        _validate_layout_json(index, lambda d: (path / "blobs" / d.replace(":", "/")).read_bytes())
        return
    with tarfile.open(path) as tar:

        def member(name: str) -> bytes:
            fh = tar.extractfile(name)
            assert fh is not None
            return fh.read()

        oci_schema.validate("layout", json.loads(member("oci-layout")))
        _validate_layout_json(
            json.loads(member("index.json")), lambda d: member("blobs/" + d.replace(":", "/"))
        )


# Each format and each compression at least once, flattened and not.
CASES = [
    ("oci-archive", "gzip", True),
    ("oci-archive", "none", False),
    ("docker-archive", None, True),
    ("oci-dir", "zstd", False),
    ("oci-dir", "zstd", True),
]


@pytest.mark.parametrize(("fmt", "compression", "flatten"), CASES)
def test_convert_output_is_accepted_and_lossless(
    tmp_path: Path, fmt: str, compression: str | None, flatten: bool
) -> None:
    skopeo = require_tool("skopeo")
    source = fixture_image("python-app")
    out = tmp_path / ("out" if fmt == "oci-dir" else "out.tar")
    args = ["convert", "-q", str(source), str(out), "--format", fmt, "--tag", "localhost/t:1"]
    args += ["--compression", compression] if compression else []
    args += ["--flatten"] if flatten else []
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"

    if fmt != "docker-archive" and oci_schema.available():
        validate_oci_output(out)
    transport = {"oci-archive": "oci-archive:", "docker-archive": "docker-archive:"}.get(
        fmt, "oci:"
    )
    inspected = json.loads(
        subprocess.run(
            [skopeo, "inspect", f"{transport}{out}"], check=True, capture_output=True, text=True
        ).stdout
    )
    assert len(inspected["Layers"]) == (1 if flatten else 3)
    copied = tmp_path / "copied"
    subprocess.run(
        [skopeo, "copy", "-q", f"{transport}{out}", f"oci:{copied}:t"],
        check=True,
        capture_output=True,
    )
    # skopeo's copy is what a consumer sees; it must hold the source's tree.
    assert tree_signature(copied) == source_signature("python-app")


def test_flattened_layout_unpacks_with_umoci_like_the_source(tmp_path: Path) -> None:
    _root_only()
    require_tool("umoci")
    out = tmp_path / "flat"
    assert (
        run_cli(
            "convert",
            "-q",
            "--flatten",
            "--format",
            "oci-dir",
            "--tag",
            "flat",
            str(fixture_image("python-app")),
            str(out),
        ).code
        == 0
    )
    subprocess.run(
        ["umoci", "unpack", "--image", f"{out}:flat", str(tmp_path / "b")],
        check=True,
        capture_output=True,
    )
    ours = tmp_path / "ours"
    assert run_cli("unpack", "-q", str(fixture_image("python-app")), str(ours)).code == 0
    assert disk_signature(tmp_path / "b" / "rootfs") == disk_signature(
        ours, ignore=("/.ocislim-unpack.json",)
    )


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_podman_loads_and_runs_converted_image(tmp_path: Path, fmt: str) -> None:
    _root_only()
    podman = require_tool("podman")
    require_tool("runc")
    tag = f"localhost/ocislim-test/{fmt}:flat"
    out = tmp_path / "out.tar"
    assert (
        run_cli(
            "convert",
            "-q",
            "--flatten",
            "--format",
            fmt,
            "--tag",
            tag,
            str(fixture_image("python-app")),
            str(out),
        ).code
        == 0
    )
    subprocess.run([podman, "load", "-q", "-i", str(out)], check=True, capture_output=True)
    try:
        run = subprocess.run(
            [
                podman,
                "--cgroup-manager=cgroupfs",
                "run",
                "--rm",
                "--runtime",
                "runc",
                "--network",
                "none",
                tag,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == APP_OUTPUT
    finally:
        subprocess.run([podman, "rmi", "-f", tag], capture_output=True)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_convert_is_deterministic(tmp_path: Path, compression: str) -> None:
    source = str(fixture_image("python-app"))
    outputs = []
    for name in ("a.tar", "b.tar"):
        out = tmp_path / name
        result = run_cli(
            "convert",
            "-q",
            "--flatten",
            "--compression",
            compression,
            source,
            str(out),
            env={"SOURCE_DATE_EPOCH": "1700000000"},
        )
        assert result.code == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
