"""Helpers shared by the consumer and build integration tests: what an image's merged
tree says about each path, the same for a directory on disk, and the OCI schema check
of an output archive or layout."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

from ocislim.image import open_image
from ocislim.layers.merge import merge
from ocislim.layers.tree import Entry
from tests import oci_schema
from tests.images import fixture_image
from tests.synth import walk_disk

# What the python-app fixture's program prints.
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


def disk_signature(root: Path) -> dict[str, tuple[Any, ...]]:
    """Paths, types, modes, owners, content digests and link targets of a directory tree."""
    out: dict[str, tuple[Any, ...]] = {}
    for rel, full, st in walk_disk(root):
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", st.st_uid, st.st_gid, os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", st.st_mode & 0o7777, st.st_uid, st.st_gid)
        else:
            digest = hashlib.sha256(Path(full).read_bytes()).hexdigest()
            out[rel] = ("file", st.st_mode & 0o7777, st.st_uid, st.st_gid, digest)
    return out


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
