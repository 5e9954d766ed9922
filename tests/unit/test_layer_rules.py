"""OCI layer rules: merging, unpacking, and writing a flattened layer from original headers.

Each test builds small layers, then looks at three results of the same image:
the merged :class:`FileTree`, the tree unpacked on disk, and (where headers
matter) the single layer ``ocislim convert --flatten`` writes, read back with
``tarfile``.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from ocislim.cli import main
from ocislim.errors import ImageError
from ocislim.image import open_image
from ocislim.layers.merge import merge
from ocislim.layers.spool import Spool
from ocislim.layers.tree import FileTree
from ocislim.layers.unpack import unpack
from tests.oci_build import Draft, oci
from tests.synth import LEGACY_MARKER, M, layer, tree_of
from tests.tools import require_tool

IS_ROOT = os.geteuid() == 0
CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep
CAP_TEXT = CAPABILITY.decode("utf-8", "surrogateescape")  # how tarfile keeps binary PAX values
CAP_KEY = "SCHILY.xattr.security.capability"


def image_of(work: Path, *layers: list[M] | bytes) -> Path:
    """An oci-archive of the layers (member lists, or ready-made layer tars)."""
    work.mkdir()
    raws = [m if isinstance(m, bytes) else layer(m) for m in layers]
    return oci(work / "image.tar", Draft(raws))


def merged(tmp: Path, *layers: list[M]) -> FileTree:
    with open_image(image_of(tmp / "merge", *layers)) as img:
        return merge(img)


def unpacked(tmp: Path, *layers: list[M] | bytes) -> Path:
    """Unpack the layers (library call) into ``tmp/unpack/rootfs``."""
    dest = tmp / "unpack" / "rootfs"
    with open_image(image_of(tmp / "unpack", *layers)) as img:
        unpack(img, dest)
    return dest


def disk(tmp: Path, *layers: list[M]) -> dict[str, tuple[str, int, bytes | str]]:
    """The unpacked tree as ``{path: (kind, mode, content)}``; nothing of ocislim's is in it."""
    tree = tree_of(unpacked(tmp, *layers))
    assert "/" + LEGACY_MARKER not in tree
    return tree


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def flattened(tmp: Path, *layers: list[M] | bytes) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """``convert --flatten`` the layers; the one output layer's members by name."""
    image = image_of(tmp / "flatten", *layers)
    out = tmp / "flatten" / "out"
    invoke("convert", "-q", "--flatten", "--format", "oci-dir", str(image), str(out))
    with open_image(out) as img:
        assert len(img.layers) == 1
        blob = img.layers[0]
        members: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
        stream = blob.open()
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                for info in tar:
                    data = tar.extractfile(info).read() if info.isfile() else b""  # type: ignore[union-attr]
                    members[info.name] = (info, data)
            stream.finish()
        finally:
            stream.close()
    return members


def paths(tree: FileTree) -> list[str]:
    return [e.path for e in tree.walk()]


# -- whiteouts ---------------------------------------------------------------------------


def test_whiteout_removes_a_lower_file(tmp_path: Path) -> None:
    tree = disk(tmp_path, [M("etc", "dir"), M("etc/a"), M("etc/b")], [M("etc/.wh.a")])
    assert sorted(tree) == ["/etc", "/etc/b"]


def test_whiteout_removes_a_lower_directory_with_its_contents(tmp_path: Path) -> None:
    tree = disk(tmp_path, [M("d", "dir"), M("d/x", "dir"), M("d/x/y"), M("keep")], [M(".wh.d")])
    assert sorted(tree) == ["/keep"]


@pytest.mark.parametrize("whiteout_first", [True, False])
def test_whiteout_hides_only_lower_layers(tmp_path: Path, whiteout_first: bool) -> None:
    upper = [M(".wh.f"), M("f", data=b"new")]
    if not whiteout_first:
        upper.reverse()
    tree = disk(tmp_path, [M("f", data=b"old")], upper)
    assert tree == {"/f": ("file", 0o644, b"new")}


def test_whiteout_of_a_missing_path_creates_nothing(tmp_path: Path) -> None:
    tree = merged(tmp_path, [M("a")], [M("x/y/.wh.z"), M(".wh.nothing")])
    assert paths(tree) == ["/", "/a"]


def test_whiteout_markers_never_appear_in_the_tree(tmp_path: Path) -> None:
    tree = merged(
        tmp_path,
        [M("d", "dir"), M("d/a"), M("d/b")],
        [M("d/.wh.a"), M("d/.wh..wh..opq"), M("d/.wh..wh.plnk"), M("d/c")],
    )
    assert not [p for p in paths(tree) if ".wh." in p]
    assert paths(tree) == ["/", "/d", "/d/c"]


def test_bare_whiteout_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"layer 1: bare whiteout 'etc/\.wh\.' names nothing"):
        merged(tmp_path, [M("etc", "dir")], [M("etc/.wh.")])


def test_whiteout_and_entry_names_with_dot_slash_are_the_same_path(tmp_path: Path) -> None:
    tree = merged(tmp_path, [M("./etc", "dir"), M("./etc/a")], [M("etc/.wh.a")])
    assert paths(tree) == ["/", "/etc"]


# -- opaque directories ------------------------------------------------------------------

LOWER = [M("d", "dir"), M("d/old"), M("d/sub", "dir"), M("d/sub/deep"), M("other")]


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_hides_lower_children_regardless_of_order(
    tmp_path: Path, marker_first: bool
) -> None:
    upper = [M("d", "dir", mode=0o750), M("d/.wh..wh..opq"), M("d/new", data=b"n")]
    if not marker_first:
        upper = [upper[0], upper[2], upper[1]]
    tree = disk(tmp_path, LOWER, upper)
    assert tree == {
        "/d": ("dir", 0o750, b""),
        "/d/new": ("file", 0o644, b"n"),
        "/other": ("file", 0o644, b""),
    }


def test_opaque_keeps_what_its_own_layer_added_deeper(tmp_path: Path) -> None:
    tree = merged(tmp_path, LOWER, [M("d/sub/newer"), M("d/.wh..wh..opq")])
    assert paths(tree) == ["/", "/d", "/d/sub", "/d/sub/newer", "/other"]


def test_opaque_applies_to_lower_layers_only_when_same_layer_replaced_an_entry(
    tmp_path: Path,
) -> None:
    tree = disk(tmp_path, LOWER, [M("d/old", data=b"again"), M("d/.wh..wh..opq")])
    assert sorted(tree) == ["/d", "/d/old", "/other"]
    assert tree["/d/old"][2] == b"again"


def test_opaque_of_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    tree = merged(tmp_path, [M("a")], [M("nowhere/.wh..wh..opq")])
    assert paths(tree) == ["/", "/a"]


# -- replacement -------------------------------------------------------------------------


def test_directory_over_directory_keeps_children_and_takes_new_attributes(
    tmp_path: Path,
) -> None:
    lower = [M("d", "dir", mode=0o700, uid=1, gid=1, mtime=100), M("d/child", data=b"c")]
    upper = [M("d", "dir", mode=0o751, uid=2, gid=3, mtime=200)]
    tree = merged(tmp_path, lower, upper)
    entry = tree.get("/d")
    assert entry is not None and entry.layer == 1
    assert (entry.mode, entry.info.uid, entry.info.gid, entry.info.mtime) == (0o751, 2, 3, 200)
    assert paths(tree) == ["/", "/d", "/d/child"]
    root = unpacked(tmp_path, lower, upper)
    st = os.stat(root / "d")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o751, 200)
    if IS_ROOT:
        assert (st.st_uid, st.st_gid) == (2, 3)
    assert (root / "d" / "child").read_bytes() == b"c"


@pytest.mark.parametrize(
    ("lower", "upper", "expected"),
    [
        ([M("d", "dir"), M("d/c")], [M("d", data=b"f")], {"/d": ("file", 0o644, b"f")}),
        ([M("f", data=b"x")], [M("f", "dir"), M("f/x")], {"/f": ("dir", 0o755, b""),
                                                          "/f/x": ("file", 0o644, b"")}),
        ([M("d", "dir"), M("d/c")], [M("d", "symlink", link="/t")], {"/d": ("symlink", 0, "/t")}),
        ([M("s", "symlink", link="a")], [M("s", "symlink", link="b")], {"/s": ("symlink", 0, "b")}),
        ([M("f", data=b"x")], [M("f", data=b"y", mode=0o600)], {"/f": ("file", 0o600, b"y")}),
    ],
    ids=["file-over-dir", "dir-over-file", "symlink-over-dir", "symlink-over-symlink",
         "file-over-file"],
)  # fmt: skip
def test_anything_else_replaces_the_path(
    tmp_path: Path,
    lower: list[M],
    upper: list[M],
    expected: dict[str, tuple[str, int, bytes | str]],
) -> None:
    assert disk(tmp_path, lower, upper) == expected


@pytest.mark.parametrize("same_layer", [True, False])
def test_writes_follow_a_symlink_that_was_retargeted(tmp_path: Path, same_layer: bool) -> None:
    first = [M("d1", "dir"), M("d2", "dir"), M("link", "symlink", link="d1"), M("link/f1")]
    second = [M("link", "symlink", link="/d2"), M("link/f2")]
    layers = [first + second] if same_layer else [first, second]
    tree = disk(tmp_path, *layers)
    assert sorted(tree) == ["/d1", "/d1/f1", "/d2", "/d2/f2", "/link"]
    assert tree["/link"] == ("symlink", 0, "/d2")


def test_implied_parent_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    tree = merged(tmp_path, [M("a/b/c", data=b"x")])
    for path in ("/a", "/a/b"):
        entry = tree.get(path)
        assert entry is not None and entry.is_dir
        assert (entry.mode, entry.info.mtime, entry.layer) == (0o755, 1234567890, -1)


# -- hardlinks ---------------------------------------------------------------------------


def test_hardlink_within_a_layer(tmp_path: Path) -> None:
    root = unpacked(tmp_path, [M("a", data=b"same"), M("b", "hardlink", link="a"),
                               M("c", "hardlink", link="./b")])  # fmt: skip
    assert os.path.samefile(root / "a", root / "b")
    assert os.path.samefile(root / "a", root / "c")
    assert os.stat(root / "a").st_nlink == 3


def test_hardlink_to_a_file_from_a_lower_layer(tmp_path: Path) -> None:
    root = unpacked(tmp_path, [M("dir", "dir"), M("dir/a", data=b"lower")],
                    [M("b", "hardlink", link="dir/a")])  # fmt: skip
    assert os.path.samefile(root / "dir" / "a", root / "b")
    assert (root / "b").read_bytes() == b"lower"


@pytest.mark.parametrize("same_layer", [True, False])
def test_hardlink_whose_target_is_replaced_keeps_the_old_content(
    tmp_path: Path, same_layer: bool
) -> None:
    if same_layer:
        layers = [[M("a", data=b"old"), M("b", "hardlink", link="a"), M("a", data=b"new")]]
    else:
        layers = [[M("a", data=b"old")], [M("b", "hardlink", link="a")], [M("a", data=b"new")]]
    root = unpacked(tmp_path, *layers)
    assert (root / "a").read_bytes() == b"new"
    assert (root / "b").read_bytes() == b"old"
    assert not os.path.samefile(root / "a", root / "b")
    members = flattened(tmp_path, *layers)
    assert (members["a"][0].type, members["a"][1]) == (tarfile.REGTYPE, b"new")
    assert (members["b"][0].type, members["b"][1]) == (tarfile.REGTYPE, b"old")


def test_hardlink_survives_a_whiteout_of_its_target(tmp_path: Path) -> None:
    tree = disk(tmp_path, [M("a", data=b"x"), M("b", "hardlink", link="a")], [M(".wh.a")])
    assert tree == {"/b": ("file", 0o644, b"x")}


def test_flatten_writes_a_hardlink_group_as_one_file_and_links(tmp_path: Path) -> None:
    members = flattened(
        tmp_path,
        [M("z", data=b"shared", mode=0o4711, uid=7)],
        [M("m", "hardlink", link="z"), M("a", "hardlink", link="/z")],
    )
    first, _ = members["a"]
    assert (first.type, first.mode, first.uid, members["a"][1]) == (
        tarfile.REGTYPE, 0o4711, 7, b"shared",
    )  # fmt: skip
    for name in ("m", "z"):
        info, _ = members[name]
        assert (info.type, info.linkname, info.size) == (tarfile.LNKTYPE, "a", 0)


# -- headers kept through convert --flatten ----------------------------------------------


def _header_fields(info: tarfile.TarInfo) -> tuple[object, ...]:
    xattrs = {k: v for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr.")}
    return (
        info.type, info.mode, info.uid, info.gid, info.uname, info.gname, int(info.mtime),
        info.linkname, info.devmajor, info.devminor, info.size, xattrs,
    )  # fmt: skip


RICH = [
    M("bin", "dir", mode=0o755, uid=0, gid=0),
    M("bin/ping", data=b"\x7fELF-ping", mode=0o4755, uid=0, gid=0,
      pax={"SCHILY.xattr.security.capability": CAP_TEXT}),
    M("bin/wall", data=b"\x7fELF-wall", mode=0o2755, uid=0, gid=5),
    M("tmp", "dir", mode=0o1777),
    M("home", "dir"),
    M("home/u", "dir", mode=0o700, uid=1000, gid=1000, mtime=1_111_111_111),
    M("home/u/f", data=b"mine", mode=0o640, uid=1000, gid=1000,
      pax={"SCHILY.xattr.user.comment": "hello", "uname": "someone", "gname": "staff"}),
    M("dev", "dir"),
    M("dev/null", "char", mode=0o666, dev=(1, 3)),
    M("dev/sda", "block", mode=0o660, gid=6, dev=(8, 0)),
    M("run", "dir"),
    M("run/fifo", "fifo", mode=0o600),
    M("lib", "symlink", link="usr/lib"),
    M("abs", "symlink", link="/etc/passwd"),
]  # fmt: skip


def test_flatten_keeps_original_headers(tmp_path: Path) -> None:
    members = flattened(tmp_path, RICH)
    with tarfile.open(fileobj=io.BytesIO(layer(RICH))) as tar:
        source = {info.name: info for info in tar}
    assert sorted(members) == sorted(source)
    for name, original in source.items():
        assert _header_fields(members[name][0]) == _header_fields(original), name
    assert members["bin/ping"][0].pax_headers["SCHILY.xattr.security.capability"] == CAP_TEXT
    assert members["bin/ping"][1] == b"\x7fELF-ping"


def test_flatten_keeps_headers_of_entries_from_every_layer(tmp_path: Path) -> None:
    lower = RICH[:4]
    ping_v2 = M("bin/ping", data=b"v2", mode=0o4750, uid=3, gid=4, pax={CAP_KEY: CAP_TEXT})
    upper = [ping_v2, M("extra", data=b"e")]
    members = flattened(tmp_path, lower, upper)
    ping, data = members["bin/ping"]
    assert (ping.mode, ping.uid, ping.gid, data) == (0o4750, 3, 4, b"v2")
    assert ping.pax_headers["SCHILY.xattr.security.capability"] == CAP_TEXT
    assert members["bin/wall"][0].mode == 0o2755


@pytest.mark.skipif(not IS_ROOT, reason="setuid bits, owners and devices need root")
def test_unpack_as_root_keeps_modes_owners_devices_and_xattrs(tmp_path: Path) -> None:
    root = unpacked(tmp_path, RICH)
    ping = os.stat(root / "bin/ping")
    assert (stat.S_IMODE(ping.st_mode), ping.st_uid) == (0o4755, 0)
    assert stat.S_IMODE(os.stat(root / "bin/wall").st_mode) == 0o2755
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    home = os.stat(root / "home/u")
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1000, 1000, 0o700)
    null = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
    sda = os.lstat(root / "dev/sda")
    assert stat.S_ISBLK(sda.st_mode) and (os.major(sda.st_rdev), os.minor(sda.st_rdev)) == (8, 0)
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)
    assert os.readlink(root / "abs") == "/etc/passwd"
    try:
        value = os.getxattr(root / "bin/ping", "security.capability")
    except OSError:
        pytest.skip("this file system does not keep security.capability")
    assert value == CAPABILITY


# -- names -------------------------------------------------------------------------------

LONG_DIR = "d" * 60 + "/" + "e" * 60
LONG_NAME = LONG_DIR + "/" + "f" * 120  # > 100 characters: needs a PAX path record


def test_long_names_and_link_targets(tmp_path: Path) -> None:
    layers = [
        M(LONG_DIR.split("/")[0], "dir"),
        M(LONG_DIR, "dir"),
        M(LONG_NAME, data=b"long"),
        M("s" * 150, "symlink", link="/" + LONG_NAME),
        M("h" * 150, "hardlink", link=LONG_NAME),
    ]
    root = unpacked(tmp_path, layers)
    assert (root / LONG_NAME).read_bytes() == b"long"
    assert os.readlink(root / ("s" * 150)) == "/" + LONG_NAME
    assert os.path.samefile(root / ("h" * 150), root / LONG_NAME)
    members = flattened(tmp_path, layers)
    assert members[LONG_NAME][1] == b"long"
    assert members["s" * 150][0].linkname == "/" + LONG_NAME
    assert (members["h" * 150][0].type, members["h" * 150][0].linkname) == (
        tarfile.LNKTYPE, LONG_NAME,
    )  # fmt: skip


NON_UTF8 = b"caf\xe9-latin1".decode("utf-8", "surrogateescape")


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    layers = [M("d", "dir"), M("d/" + NON_UTF8, data=b"bytes"), M("l", "symlink", link=NON_UTF8)]
    root = unpacked(tmp_path, layers)
    assert os.listdir(os.fsencode(root / "d")) == [b"caf\xe9-latin1"]
    assert os.readlink(os.fsencode(root / "l")) == b"caf\xe9-latin1"
    members = flattened(tmp_path, layers)
    assert members["d/" + NON_UTF8][1] == b"bytes"
    assert members["l"][0].linkname == NON_UTF8


# -- umoci as an oracle ------------------------------------------------------------------

ORACLE = {
    "opaque-keeps-same-layer-deeper": [
        [M("d", "dir"), M("d/old"), M("d/sub", "dir", mode=0o700), M("d/sub/deep")],
        [M("d/sub/newer"), M("d/.wh..wh..opq")],
    ],
    "opaque-marker-last": [
        [M("d", "dir"), M("d/old")],
        [M("d", "dir", mode=0o750), M("d/new"), M("d/.wh..wh..opq")],
    ],
    "whiteout-of-missing-parent": [[M("a")], [M("x/y/.wh.z")]],
    "whiteout-after-re-adding": [[M("f", data=b"old")], [M("f", data=b"new"), M(".wh.f")]],
    "hardlink-target-replaced": [
        [M("a", data=b"old")], [M("b", "hardlink", link="a")], [M("a", data=b"new")],
    ],
    "hardlink-target-whited-out": [[M("a", data=b"x"), M("b", "hardlink", link="a")], [M(".wh.a")]],
    "write-through-relative-symlink": [[M("d", "dir"), M("l", "symlink", link="d")],
                                       [M("l/f", data=b"x")]],
    "write-through-absolute-symlink": [[M("d", "dir"), M("l", "symlink", link="/d")],
                                       [M("l/f", data=b"x")]],
    "dir-over-symlink": [[M("d", "symlink", link="/x")], [M("d", "dir"), M("d/f")]],
    "implied-parents": [[M("a/b/c", data=b"x", mode=0o600)]],
    "whiteout-through-symlink": [
        [M("real", "dir"), M("real/f"), M("real/g"), M("s", "symlink", link="real")],
        [M("s/.wh.f")],
    ],
    "file-over-dir": [[M("d", "dir"), M("d/c")], [M("d", data=b"f")]],
    "retargeted-symlink": [
        [M("d1", "dir"), M("d2", "dir"), M("link", "symlink", link="d1"), M("link/f1")],
        [M("link", "symlink", link="/d2"), M("link/f2")],
    ],
    "dotdot-in-a-name": [[M("a", "dir"), M("l", "symlink", link="a/b"), M("a/b", "dir")],
                         [M("l/../x", data=b"x")]],
    "modes": [[M("bin", "dir", mode=0o711), M("bin/x", data=b"x", mode=0o751),
               M("etc", "dir", mode=0o700), M("etc/shadow", data=b"s", mode=0o640)]],
}  # fmt: skip


@pytest.mark.parametrize("layers", list(ORACLE.values()), ids=list(ORACLE))
def test_unpack_matches_umoci(tmp_path: Path, layers: list[list[M]]) -> None:
    umoci = require_tool("umoci")
    ours = disk(tmp_path, *layers)
    layout = oci(tmp_path / "layout", Draft([layer(m) for m in layers]), as_dir=True, ref="t")
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout}:t", str(bundle)],
        check=True,
        capture_output=True,
    )
    assert ours == tree_of(bundle / "rootfs")


# -- sparse files ------------------------------------------------------------------------


def sparse_layer(tmp: Path, fmt: str, hole: int) -> tuple[bytes, bytes]:
    """A layer made by GNU tar ``--sparse --format=FMT`` holding ``sparse``: "head", a
    hole of ``hole`` bytes, "tail".  Returns the layer and the file's real bytes."""
    tar = require_tool("tar")
    src = tmp / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as fh:
        fh.write(b"head")
        fh.seek(hole)
        fh.write(b"tail")
    raw_path = tmp / "layer.tar"
    subprocess.run(
        [tar, "--sparse", f"--format={fmt}", "-C", str(src), "-cf", str(raw_path), "sparse"],
        check=True,
    )
    return raw_path.read_bytes(), (src / "sparse").read_bytes()


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_files_unpack_and_flatten_densely(tmp_path: Path, fmt: str) -> None:
    """GNU tar's sparse formats (old GNU, PAX 1.0) are expanded; flatten writes plain data."""
    raw, expected = sparse_layer(tmp_path, fmt, 3 << 20)
    assert (unpacked(tmp_path, raw) / "sparse").read_bytes() == expected
    members = flattened(tmp_path, raw)
    info, data = members["sparse"]
    assert not [key for key in info.pax_headers if key.startswith("GNU.sparse.")]
    assert (info.type, info.size, data) == (tarfile.REGTYPE, len(expected), expected)


# -- spooling while unpacking -------------------------------------------------------------


def test_unpack_spools_each_file_as_it_is_written(tmp_path: Path) -> None:
    """With a spool, one pass both extracts and spools: every regular file of the final
    tree reads back from the spool as on disk (replaced files, hardlinks, a sparse file,
    an empty one), and nothing else was spooled."""
    sparse_raw, sparse_bytes = sparse_layer(tmp_path, "posix", 2 << 20)
    big = os.urandom(3 << 20)  # more than one read of the sink's copy loop
    lower = [
        M("etc", "dir"),
        M("etc/conf", data=b"old"),
        M("etc/gone", data=b"whited out"),
        M("bin", "dir"),
        M("bin/big", data=big),
        M("bin/empty"),
    ]
    upper = [
        M("etc/conf", data=b"new and longer"),
        M("etc/.wh.gone"),
        M("bin/alias", "hardlink", link="bin/big"),
    ]
    dest = tmp_path / "rootfs"
    source = image_of(tmp_path / "img", lower, upper, sparse_raw)
    with open_image(source) as img, Spool(tmp_path) as spool:
        tree = unpack(img, dest, spool=spool).tree
        spooled = {}
        for entry in tree.walk():
            if entry.data is not None:
                assert entry.data.spool_offset is not None, entry.path
                reader = spool.reader(entry.data.spool_offset, entry.data.size)
                spooled[entry.path] = reader.read()
    on_disk = {
        "/" + str(p.relative_to(dest)): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    assert spooled == on_disk
    assert spooled["/etc/conf"] == b"new and longer"
    assert spooled["/bin/alias"] == spooled["/bin/big"] == big
    assert spooled["/sparse"] == sparse_bytes
    assert "/etc/gone" not in spooled
