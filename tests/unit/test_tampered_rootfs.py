"""A probed program that changed the unpacked tree on disk (a sandbox the kernel gave no
overlay writes straight into it) cannot make ocislim read, link or block on anything
outside that tree: the host-side readers reach each file one component at a time
without following links, and open nothing but regular files."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocislim.errors import OutputError
from ocislim.image import open_image
from ocislim.layers.pathwalk import DiskTree
from ocislim.layers.unpack import UnpackResult, unpack
from ocislim.slim import pkgdb
from ocislim.slim.materialize import SlimRoot
from tests.synth import M, layer, oci_archive

SECRET = b"host secret\n"
STATUS = b"Package: demo\nStatus: install ok installed\nVersion: 1\n\n"


@pytest.fixture
def unpacked(tmp_path: Path) -> Iterator[UnpackResult]:
    members = [
        M("app", "dir"),
        M("app/data", "dir"),
        M("app/data/key.txt", data=b"image's own\n"),
        M("var", "dir"),
        M("var/lib", "dir"),
        M("var/lib/dpkg", "dir"),
        M("var/lib/dpkg/status", data=STATUS),
    ]
    with open_image(oci_archive(tmp_path, [layer(members)])) as image:
        yield unpack(image, tmp_path / "rootfs")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host directory holding files of the names the tree's paths end in."""
    host = tmp_path / "host"
    (host / "data").mkdir(parents=True)
    (host / "data" / "key.txt").write_bytes(SECRET)
    (host / "status").write_bytes(SECRET)
    return host


def _replace_with_link(directory: Path, target: Path) -> None:
    for child in directory.iterdir():
        child.unlink() if not child.is_dir() else _remove(child)
    directory.rmdir()
    directory.symlink_to(target)


def _remove(path: Path) -> None:
    for child in path.iterdir():
        child.unlink() if not child.is_dir() else _remove(child)
    path.rmdir()


def test_untouched_tree_reads_and_links_as_before(unpacked: UnpackResult, tmp_path: Path) -> None:
    read = pkgdb.disk_reader(unpacked.root, unpacked.tree)
    assert read("/var/lib/dpkg/status") == STATUS
    slim = SlimRoot(tmp_path / "slim", unpacked.root, unpacked.tree)
    slim.add(["/app", "/app/data", "/app/data/key.txt"])
    linked = tmp_path / "slim/app/data/key.txt"
    assert linked.read_bytes() == b"image's own\n"
    assert linked.stat().st_ino == (unpacked.root / "app/data/key.txt").stat().st_ino


def test_a_directory_turned_into_a_link_out_is_not_followed(
    unpacked: UnpackResult, outside: Path, tmp_path: Path
) -> None:
    _replace_with_link(unpacked.root / "var/lib/dpkg", outside)
    _replace_with_link(unpacked.root / "app", outside)
    read = pkgdb.disk_reader(unpacked.root, unpacked.tree)
    assert read("/var/lib/dpkg/status") is None
    assert DiskTree(unpacked.root).open_file("/app/data/key.txt") is None
    slim = SlimRoot(tmp_path / "slim", unpacked.root, unpacked.tree)
    with pytest.raises(OutputError, match=r"/app/data/key\.txt: no longer a regular file"):
        slim.add(["/app", "/app/data", "/app/data/key.txt"])
    assert not (tmp_path / "slim/app/data/key.txt").exists()
    assert (outside / "data" / "key.txt").stat().st_nlink == 1  # never linked


def test_a_fifo_in_place_of_a_file_is_not_opened(unpacked: UnpackResult, tmp_path: Path) -> None:
    status = unpacked.root / "var/lib/dpkg/status"
    status.unlink()
    os.mkfifo(status)
    got: list[object] = []
    reader = threading.Thread(
        target=lambda: got.append(
            pkgdb.disk_reader(unpacked.root, unpacked.tree)("/var/lib/dpkg/status")
        ),
        daemon=True,
    )
    reader.start()
    reader.join(timeout=30)
    assert got == [None]  # returned (a blocking open would never have), and read nothing


def test_a_file_turned_into_a_link_is_not_linked(
    unpacked: UnpackResult, outside: Path, tmp_path: Path
) -> None:
    key = unpacked.root / "app/data/key.txt"
    key.unlink()
    key.symlink_to(outside / "data" / "key.txt")
    slim = SlimRoot(tmp_path / "slim", unpacked.root, unpacked.tree)
    with pytest.raises(OutputError, match="no longer a regular file"):
        slim.add(["/app", "/app/data", "/app/data/key.txt"])
    assert (outside / "data" / "key.txt").stat().st_nlink == 1
