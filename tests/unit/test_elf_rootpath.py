"""In-image path resolution never leaves the root."""

from __future__ import annotations

from pathlib import Path

from ocislim.elf.rootpath import RootFS
from ocislim.layers.pathwalk import lexical
from tests.unit.elf_synth import symlink, write


def test_normalize_clamps_dotdot_at_root() -> None:
    assert lexical("../../etc/./passwd") == "/etc/passwd"
    assert lexical("/a//b/../c/") == "/a/c"
    assert lexical("") == "/"


def test_relative_and_absolute_links_are_recorded_in_order(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/x/libfoo.so.1.2.3", b"data")
    symlink(tmp_path, "/lib", "usr/lib")
    symlink(tmp_path, "/usr/lib/x/libfoo.so.1.2", "libfoo.so.1.2.3")
    symlink(tmp_path, "/usr/lib/x/libfoo.so.1", "/lib/x/libfoo.so.1.2")
    fs = RootFS(tmp_path)
    res = fs.resolve("/lib/x/libfoo.so.1")
    assert res.exists
    assert res.path == "/usr/lib/x/libfoo.so.1.2.3"
    assert res.symlinks == ("/lib", "/usr/lib/x/libfoo.so.1", "/lib", "/usr/lib/x/libfoo.so.1.2")


def test_absolute_link_to_a_host_only_file_does_not_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside.txt"
    outside.write_text("host secret")
    symlink(root, "/escape", str(outside))
    symlink(root, "/up", "../../../../" + str(outside))
    fs = RootFS(root)
    for name in ("/escape", "/up"):
        res = fs.resolve(name)
        assert not res.exists
        assert fs.read_bytes(name) is None
    # The same path, present inside the root, is what the link reaches.
    write(root, str(outside), b"inside")
    assert fs.read_bytes("/escape") is None  # cached answer: a RootFS is a snapshot
    assert RootFS(root).read_bytes("/escape") == b"inside"


def test_dotdot_through_a_symlinked_directory_uses_the_target(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/file", b"x")
    write(tmp_path, "/usr/file2", b"y")
    symlink(tmp_path, "/lib", "usr/lib")
    fs = RootFS(tmp_path)
    # Like the kernel: /lib/.. is /usr (the link's target's parent), not /.
    assert fs.resolve("/lib/../file2").path == "/usr/file2"


def test_loops_and_file_as_directory_do_not_exist(tmp_path: Path) -> None:
    symlink(tmp_path, "/a", "b")
    symlink(tmp_path, "/b", "a")
    write(tmp_path, "/f", b"x")
    fs = RootFS(tmp_path)
    assert not fs.resolve("/a").exists
    assert not fs.resolve("/f/child").exists
    assert fs.listdir("/a") == frozenset()


def test_glob_is_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for name in ("b.conf", "a.conf", ".hidden.conf", "c.txt"):
        write(tmp_path, f"/etc/d/{name}", b"")
    symlink(tmp_path, "/etc/link", "d")
    fs = RootFS(tmp_path)
    assert fs.glob("/etc/link/*.conf") == ["/etc/link/a.conf", "/etc/link/b.conf"]
    assert fs.glob("/etc/*/.h*") == ["/etc/d/.hidden.conf", "/etc/link/.hidden.conf"]
    assert fs.glob("/nowhere/*.conf") == []


def test_read_text_stops_at_its_limit_on_a_huge_file(tmp_path: Path) -> None:
    # A hostile image's "script" of many GB (sparse here, so it costs no disk) must not
    # be read into memory whole.
    from ocislim.elf.rootpath import TEXT_LIMIT

    huge = tmp_path / "entry.sh"
    with open(huge, "wb") as fh:
        fh.write(b"#!/bin/sh\n")
        fh.truncate(TEXT_LIMIT * 4)
    text = RootFS(tmp_path).read_text("/entry.sh")
    assert text is not None and text.startswith("#!/bin/sh\n")
    assert len(text) == TEXT_LIMIT
