"""The one in-image path resolver, over the layer tree and over a directory on disk."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ocislim.elf.rootpath import RootFS
from ocislim.errors import UnsafeArchiveError
from ocislim.layers import pathwalk
from ocislim.layers.pathwalk import MAX_SYMLINKS, DiskTree, PathResolver, TreeView, resolve
from ocislim.layers.tree import FileTree
from ocislim.sandbox.analysis import DirTree
from ocislim.sandbox.analysis import resolve as analysis_resolve
from tests.synth import LEGACY_MARKER

# path -> "dir", "file", or "-> target" for a symlink; parents listed first.
Spec = dict[str, str]

IMAGE: Spec = {
    "/usr": "dir",
    "/usr/lib": "dir",
    "/usr/lib/libz.so.1.2": "file",
    "/usr/lib/libz.so.1": "-> libz.so.1.2",
    "/lib": "-> usr/lib",
    "/etc": "dir",
    "/etc/abs": "-> /usr/lib/libz.so.1",
    "/etc/up": "-> ../../../../usr/lib",
    "/etc/file": "file",
    "/etc/self": "-> self",
}


def tree_of(spec: Spec) -> FileTree:
    tree = FileTree()
    for ordinal, (path, what) in enumerate(spec.items()):
        info = tarfile.TarInfo(path.lstrip("/"))
        data = None
        if what == "dir":
            info.type = tarfile.DIRTYPE
        elif what.startswith("-> "):
            info.type = tarfile.SYMTYPE
            info.linkname = what[3:]
        else:
            data = io.BytesIO(b"")
        tree.add(path, info, 0, ordinal, data, "test")
    return tree


def disk_of(spec: Spec, root: Path) -> Path:
    root.mkdir(exist_ok=True)
    for path, what in spec.items():
        host = root / path.lstrip("/")
        if what == "dir":
            host.mkdir()
        elif what.startswith("-> "):
            os.symlink(what[3:], host)
        else:
            host.write_bytes(b"")
    return root


@pytest.fixture(params=["tree", "disk"])
def view(request: pytest.FixtureRequest, tmp_path: Path) -> TreeView:
    """The same image as the layer tree in memory and as an unpacked directory."""
    if request.param == "tree":
        return tree_of(IMAGE)
    return DiskTree(disk_of(IMAGE, tmp_path / "root"))


def chain(length: int) -> Spec:
    """``/l0 -> l1 -> ... -> l{length-1} -> f``: ``length`` links to reach /f."""
    spec: Spec = {"/f": "file"}
    for i in range(length):
        spec[f"/l{i}"] = f"-> l{i + 1}" if i + 1 < length else "-> f"
    return spec


def test_relative_and_absolute_links_stay_in_the_root(view: TreeView) -> None:
    res = resolve(view, "/lib/libz.so.1")
    assert (res.path, res.status, res.kind) == ("/usr/lib/libz.so.1.2", "found", "file")
    assert res.symlinks == ("/lib", "/usr/lib/libz.so.1")
    # An absolute target starts again at the image root, not at the host's.
    res = resolve(view, "/etc/abs")
    assert (res.path, res.status) == ("/usr/lib/libz.so.1.2", "found")
    assert res.symlinks == ("/etc/abs", "/usr/lib/libz.so.1")


def test_dotdot_is_clamped_at_the_root(view: TreeView) -> None:
    assert resolve(view, "/../../etc/../usr/./lib").path == "/usr/lib"
    res = resolve(view, "/etc/up/libz.so.1.2")
    assert (res.path, res.status) == ("/usr/lib/libz.so.1.2", "found")
    assert resolve(view, "/..").kind == "dir"


def test_dotdot_after_a_link_applies_to_its_target(view: TreeView) -> None:
    # /lib is usr/lib, so /lib/.. is /usr, not /.
    assert resolve(view, "/lib/../lib/libz.so.1.2").path == "/usr/lib/libz.so.1.2"
    assert resolve(view, "/lib/..").path == "/usr"


def test_final_link_is_kept_without_follow(view: TreeView) -> None:
    res = resolve(view, "/lib/libz.so.1", follow=False)
    assert (res.path, res.kind, res.symlinks) == ("/usr/lib/libz.so.1", "symlink", ("/lib",))


def test_missing_and_file_as_directory_stop_the_walk(view: TreeView) -> None:
    res = resolve(view, "/lib/nope/x/../y")
    assert (res.path, res.status, res.exists) == ("/usr/lib/nope/y", "missing", False)
    assert resolve(view, "/etc/file/x").status == "missing"
    assert resolve(view, "/etc/file/.").status == "missing"


def test_through_missing_goes_on_past_a_missing_component(view: TreeView) -> None:
    # After "nope/..", /lib is a link again: the root-scoped join follows it, the
    # stopping walk applies the rest lexically.
    stopped = resolve(view, "/nope/../lib/libz.so.1")
    assert (stopped.path, stopped.status) == ("/lib/libz.so.1", "missing")
    joined = resolve(view, "/nope/../lib/libz.so.1", through_missing=True)
    assert (joined.path, joined.status) == ("/usr/lib/libz.so.1.2", "found")
    missing = resolve(view, "/lib/new/dir", through_missing=True)
    assert (missing.path, missing.status) == ("/usr/lib/new/dir", "missing")


def test_runtime_mounts_stop_the_walk(view: TreeView) -> None:
    res = resolve(view, "/lib/libz.so.1/x/../y", runtime=("/usr/lib/",))
    assert (res.path, res.status, res.symlinks) == ("/usr/lib/libz.so.1/y", "runtime", ("/lib",))


def test_self_loop_is_a_loop(view: TreeView) -> None:
    res = resolve(view, "/etc/self/x")
    assert (res.status, res.path, res.exists) == ("loop", "/etc/self", False)
    assert len(res.symlinks) == MAX_SYMLINKS


@pytest.mark.parametrize("where", ["tree", "disk"])
def test_the_hop_limit_is_the_kernels(where: str, tmp_path: Path) -> None:
    assert MAX_SYMLINKS == 40
    ok, too_long = chain(MAX_SYMLINKS), chain(MAX_SYMLINKS + 1)
    views: tuple[TreeView, TreeView]
    if where == "tree":
        views = (tree_of(ok), tree_of(too_long))
    else:
        views = (
            DiskTree(disk_of(ok, tmp_path / "ok")),
            DiskTree(disk_of(too_long, tmp_path / "x")),
        )
    assert resolve(views[0], "/l0").path == "/f"
    res = resolve(views[1], "/l0")
    assert res.status == "loop"
    assert len(res.symlinks) == MAX_SYMLINKS


def test_each_caller_turns_a_loop_into_what_it_expects(tmp_path: Path) -> None:
    spec = chain(MAX_SYMLINKS + 1)
    # The layer tree refuses the archive...
    tree = tree_of(chain(MAX_SYMLINKS))
    assert tree.resolve("/l0/x") == "/f/x"
    with pytest.raises(UnsafeArchiveError, match="too many levels of symbolic links"):
        tree_of(spec).resolve("/l0/x")
    # ...the keep rules' lookups see nothing there...
    entry = tree.follow("/l0")
    assert entry is not None and entry.path == "/f"
    assert tree_of(spec).follow("/l0") is None and tree.follow("/missing") is None
    # ...nor do the ELF lookups and the trace analysis.
    root = disk_of(spec, tmp_path / "root")
    assert not RootFS(root).resolve("/l0").exists
    assert RootFS(root).read_bytes("/l0") is None
    assert analysis_resolve(DirTree(root), "/l0").status == "loop"


def test_the_keep_plan_and_the_trace_use_the_same_walk(tmp_path: Path) -> None:
    tree = tree_of(IMAGE)
    disk = DiskTree(disk_of(IMAGE, tmp_path / "root"))
    for path in ("/lib/libz.so.1", "/etc/up/x", "/etc/self", "/etc/file/y", "/lib/.."):
        for follow in (True, False):
            assert resolve(tree, path, follow=follow) == resolve(disk, path, follow=follow)


def test_cached_resolver_answers_as_the_walk(tmp_path: Path) -> None:
    disk = DiskTree(disk_of(IMAGE, tmp_path / "root"))
    cached = PathResolver(disk, runtime=("/usr/lib",))
    for path in ("/lib/libz.so.1", "/etc/abs", "/etc/file"):
        want = resolve(disk, path, runtime=("/usr/lib",))
        assert cached.resolve(path) == want
        assert cached.resolve(path) is cached.resolve(path)


def test_disk_tree_never_leaves_its_root(tmp_path: Path) -> None:
    root = disk_of(IMAGE, tmp_path / "root")
    (tmp_path / "secret").write_text("host")
    os.symlink(str(tmp_path / "secret"), root / "etc/host")
    disk = DiskTree(root)
    assert disk.kind("/etc") == "dir"
    assert pathwalk.resolve(disk, "/etc/host").status == "missing"
    # A file named like the record earlier versions wrote is the image's own now.
    (root / LEGACY_MARKER).write_text("")
    assert DirTree(root).kind("/" + LEGACY_MARKER) == "file"
