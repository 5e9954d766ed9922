"""A hostile corpus, generated here, run through the real ``ocislim unpack`` CLI.

Every case builds an image next to a canary directory, runs
``python -m ocislim unpack -q IMAGE WORK/rootfs`` in a subprocess and asserts:

- the exit code, and for failures the single ``ocislim: error: ...`` line naming
  the object at fault;
- the canary directory (and everything else beside WORK, the image included) is
  byte-for-byte and inode-for-inode what it was;
- nothing outside the destination was read into it (no shared inodes, no canary
  bytes in any unpacked file);
- WORK holds the finished destination (success) or nothing at all (failure): no
  scratch directory is left behind.

Policy for writes through symlinks: they must land inside the destination,
resolved as if the destination were ``/``, or be refused.  The cases that are
accepted check where the write landed.

The escape cases run both as root and as the plain user ``tester`` (whose canary
is writable by that user, so an escape would succeed if the code allowed it).

Two more kinds of run close the file: a 256 MiB layer of zeros (a few KB
compressed) must not cost its size in memory, and unpack/convert killed by
SIGINT or SIGTERM must leave nothing behind.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocislim.layers.unpack import read_marker
from tests import rawtar
from tests.clirun import (
    REPO,
    chown_tree,
    default_sigint,
    inodes,
    plain_user_dir,
    plain_user_python,
    run_cli,
    snapshot,
)
from tests.oci_build import Draft, compress, jdump, oci, write_layout
from tests.synth import LEGACY_MARKER, SLOW_ZEROS, ZEROS, M, layer, sha, write_tar, zero_layer

SECRET = b"canary-secret-7f3a9c"


@dataclass
class Env:
    """Where one case runs: ``base`` holds ``canary/``, the image and ``work/``."""

    base: Path
    user: str | None = None

    @property
    def canary(self) -> Path:
        return self.base / "canary"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def dest(self) -> Path:
        return self.work / "rootfs"

    @property
    def cabs(self) -> str:
        """The canary's absolute path, as a hostile archive would name it."""
        return str(self.canary)

    def inside(self, host_path: str) -> Path:
        """Where an absolute ``host_path`` lands when resolved inside the destination."""
        return self.dest / host_path.lstrip("/")


def make_env(base: Path, user: str | None) -> Env:
    env = Env(base, user)
    env.canary.mkdir()
    (env.canary / "secret").write_bytes(SECRET)
    (env.canary / "sub").mkdir()
    (env.canary / "sub" / "deep").write_bytes(SECRET + b"-deep")
    (env.canary / "lnk").symlink_to("secret")
    env.work.mkdir()
    if user is not None:
        chown_tree(env.canary, user)
        chown_tree(env.work, user)
    return env


# -- image builders ----------------------------------------------------------------------


def layers_image(env: Env, *layers: list[M], compression: str = "gzip") -> Path:
    return oci(env.base / "image.tar", Draft([layer(m) for m in layers], compression))


def gnu_layer(members: list[tarfile.TarInfo]) -> bytes:
    """A GNU-format layer (long names as ././@LongLink, base-256 numbers)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"pwned") if info.isfile() else None)
    return buf.getvalue()


def gnu_member(name: str, kind: bytes = tarfile.REGTYPE, **attrs: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 5 if kind == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


# PAX records of a GNU sparse 1.0 file: its data starts with the sparse map.
SPARSE_1_0 = {
    "GNU.sparse.major": "1",
    "GNU.sparse.minor": "0",
    "GNU.sparse.name": "f",
    "GNU.sparse.realsize": "10",
}


def metadata_bomb(env: Env, kind: str) -> Path:
    """A layer whose PAX header or GNU long name is 16 MiB (a few KB compressed)."""
    huge = "a" * (16 << 20)
    pax = layer([M("f", pax={"comment": huge})]) if kind == "pax" else None
    return oci(env.base / "image.tar", Draft([pax or gnu_layer([gnu_member(huge)])]))


def draft_image(env: Env, draft: Draft, *, as_dir: bool = False) -> Path:
    name = "image-dir" if as_dir else "image.tar"
    return oci(env.base / name, draft, as_dir=as_dir)


def tampered(env: Env, draft: Draft, digest: str, content: bytes) -> Path:
    """An oci-archive of ``draft`` whose blob ``digest`` holds ``content`` instead."""
    blobs, desc = draft.blobs_and_descriptor()
    blobs[digest] = content
    return write_layout(env.base / "image.tar", [(blobs, desc)])


def with_index(env: Env, index: bytes) -> Path:
    draft = Draft([layer([M("f", data=b"x")])])
    return write_layout(env.base / "image.tar", [draft.blobs_and_descriptor()], index=index)


def docker_with(env: Env, config_name: str | None, layer_names: list[str]) -> Path:
    """A docker-archive whose manifest.json names ``config_name`` (default: the real one)."""
    raw = layer([M("f", data=b"x")])
    draft = Draft([raw], "none")
    cfg = draft.config_bytes()
    config_name = config_name or f"{sha(cfg)[7:]}.json"
    files = {
        f"{sha(cfg)[7:]}.json": cfg,
        "0" * 64 + "/layer.tar": raw,
        "manifest.json": jdump([{"Config": config_name, "RepoTags": [], "Layers": layer_names}]),
    }
    return write_tar(files, env.base / "image.docker.tar")


def layout_with_link(env: Env, link_name: str, target: Path) -> Path:
    """An OCI layout directory whose file ``link_name`` is a symlink to ``target``."""
    draft = Draft([layer([M("f", data=b"x")])])
    path = draft_image(env, draft, as_dir=True)
    if link_name == "layer":
        link = path / "blobs" / "sha256" / draft.descs[0]["digest"][7:]
    else:
        link = path / link_name
    link.unlink()
    link.symlink_to(target)
    return path


def layout_with_special_blob(env: Env, kind: str) -> Path:
    """An OCI layout directory whose layer blob is a FIFO or a directory."""
    draft = Draft([layer([M("f", data=b"x")])])
    path = draft_image(env, draft, as_dir=True)
    blob = path / "blobs" / "sha256" / draft.descs[0]["digest"][7:]
    blob.unlink()
    if kind == "fifo":
        os.mkfifo(blob)
    else:
        blob.mkdir()
    return path


def truncated(env: Env, algorithm: str) -> Path:
    raw = layer([M("big", data=os.urandom(64 << 10))])
    blob = compress(raw, algorithm)[:-64]
    draft = Draft([raw], algorithm, blobs=[blob])
    return draft_image(env, draft)


def corrupt_gzip(env: Env) -> Path:
    raw = layer([M("big", data=os.urandom(64 << 10))])
    blob = bytearray(gzip.compress(raw, mtime=0))
    for i in range(200, 260):
        blob[i] ^= 0x55
    return draft_image(env, Draft([raw], "gzip", blobs=[bytes(blob)]))


def truncated_tar(env: Env) -> Path:
    raw = layer([M("big", data=os.urandom(64 << 10)), M("after", data=b"x")])
    cut = raw[: 512 + (32 << 10)]  # ends inside the first file's data
    return draft_image(env, Draft([cut], "none"))


def not_a_tar(env: Env) -> Path:
    junk = b"this is not a tar archive\n" * 100
    return draft_image(env, Draft([junk], "gzip"))


def digest_lie(env: Env, field: str, value: object) -> Path:
    draft = Draft([layer([M("f", data=b"content")])])
    draft.descs[0][field] = value
    return draft_image(env, draft)


def diff_id_lie(env: Env) -> Path:
    draft = Draft([layer([M("f", data=b"content")])])
    draft.config["rootfs"]["diff_ids"] = [sha(b"something else")]
    return draft_image(env, draft)


def layer_count_lie(env: Env) -> Path:
    draft = Draft([layer([M("f", data=b"content")])])
    draft.config["rootfs"]["diff_ids"].append(sha(b"extra"))
    return draft_image(env, draft)


def missing_blob(env: Env, which: str) -> Path:
    draft = Draft([layer([M("f", data=b"content")])])
    if which == "layer":
        draft.missing.add(draft.descs[0]["digest"])
    else:
        draft.missing.add(sha(draft.config_bytes()))
    return draft_image(env, draft)


def tampered_config(env: Env) -> Path:
    draft = Draft([layer([M("f", data=b"content")])])
    cfg = draft.config_bytes()
    return tampered(env, draft, sha(cfg), cfg.replace(b"amd64", b"arm64"))


def tampered_manifest(env: Env) -> Path:
    draft = Draft([layer([M("f", data=b"content")])])
    manifest = draft.manifest_bytes()
    return tampered(env, draft, sha(manifest), manifest.replace(b"schemaVersion", b"schemaVersiom"))


def index_digest(env: Env, digest: str) -> Path:
    index = jdump(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": 10,
                }
            ],
        }
    )
    return with_index(env, index)


def wrong_json_type(env: Env, where: str) -> Path:
    """A field of the wrong JSON type in the manifest, the config or the index."""
    draft = Draft([layer([M("f", data=b"content")])])
    platform = None
    if where == "manifest":
        manifest = json.loads(draft.manifest_bytes())
        manifest["mediaType"] = ["application/vnd.oci.image.manifest.v1+json"]
        draft.manifest_override = jdump(manifest)
    elif where == "config":
        draft.config["variant"] = ["v8"]
    elif where == "platform":
        platform = {"os": "linux", "architecture": "amd64", "variant": {"v": 1}}
    blobs, desc = draft.blobs_and_descriptor(platform=platform)
    if where == "annotation":
        desc["annotations"] = {"org.opencontainers.image.ref.name": ["a", "b"]}
    return write_layout(env.base / "image.tar", [(blobs, desc)])


def archive_member_link(env: Env) -> Path:
    """An oci-archive whose ``index.json`` member is a symlink to a file outside."""
    draft = Draft([layer([M("f", data=b"x")])])
    path = draft_image(env, draft)
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("index.json")
        info.type = tarfile.SYMTYPE
        info.linkname = str(env.canary / "secret")
        tar.addfile(info)
    return path


# -- cases -------------------------------------------------------------------------------


AFTER = rawtar.regular("after", b"x")
SPARSE_DATA = b"h" * 512 + b"t" * 512


def raw_image(env: Env, *members: bytes, compression: str = "gzip") -> Path:
    """An image whose one layer is ``members`` written byte by byte (:mod:`tests.rawtar`)."""
    return oci(env.base / "image.tar", Draft([rawtar.archive(*members)], compression))


def outer_with(env: Env, junk: bytes) -> Path:
    """A valid oci-archive with the header ``junk`` in front of its first member."""
    image = oci(env.base / "image.tar", Draft([layer([M("f", data=b"x")])]))
    image.write_bytes(junk + image.read_bytes())
    return image


def deep_json(depth: int) -> bytes:
    return b'{"schemaVersion":2,"manifests":[],"x":' + b"[" * depth + b"]" * depth + b"}"


def deep_manifest(env: Env) -> Path:
    draft = Draft([layer([M("f", data=b"x")])])
    good = json.loads(draft.manifest_bytes())
    draft.manifest_override = jdump(good)[:-1] + b',"x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    return draft_image(env, draft)


def deep_config(env: Env, inner: bytes) -> Path:
    """An image whose config's ``config`` object is ``inner`` (raw JSON bytes)."""
    draft = Draft([layer([M("f", data=b"x")])])
    raw = jdump(draft.config)
    head, _, _ = raw.partition(b'"config": {}')
    assert head != raw, raw
    draft.config_bytes = lambda: raw.replace(b'"config": {}', b'"config": ' + inner)  # type: ignore[method-assign]
    return draft_image(env, draft)


def check_sparse(env: Env) -> None:
    """Both sparse files have their real size and content, and take (almost) no disk."""
    for name, pieces in (
        ("sp", [(0, b"h" * 512), ((1 << 20) - 512, b"t" * 512)]),
        ("px", [(4096, b"p" * 512)]),
    ):
        path = env.dest / name
        data = path.read_bytes()
        assert len(data) == 1 << 20, name
        expected = bytearray(1 << 20)
        for offset, piece in pieces:
            expected[offset : offset + len(piece)] = piece
        assert data == bytes(expected), name
        assert os.stat(path).st_blocks * 512 < 256 << 10, f"{name}: holes were written"


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Env], Path]
    code: int  # expected exit code; 0: the image is accepted
    message: str = ""  # must appear in the error line
    check: Callable[[Env], None] | None = None  # more assertions about an accepted tree
    plain: bool = True  # also run as the plain user


def landed(env: Env, host_path: str, content: bytes = b"pwned") -> None:
    assert env.inside(host_path).read_bytes() == content


def is_link(path: Path, target: str) -> None:
    assert path.is_symlink(), path
    assert os.readlink(path) == target


def is_fifo(path: Path) -> None:
    assert stat.S_ISFIFO(os.lstat(path).st_mode), path


def same_file(a: Path, b: Path) -> None:
    assert os.path.samefile(a, b), (a, b)


def only(env: Env, *names: str) -> None:
    assert sorted(os.listdir(env.dest)) == sorted(names)


def check_device(env: Env, name: str) -> None:
    """Created as root; skipped (absent) for any other user."""
    path = env.dest / name
    if env.user is None and os.geteuid() == 0:
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode)
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    else:
        assert not os.path.lexists(path)


def _pwned(name: str, **kw: object) -> M:
    return M(name, data=b"pwned", **kw)  # type: ignore[arg-type]


CASES: list[Case] = [
    # --- names that climb out ---
    Case(
        "dotdot-name",
        lambda e: layers_image(e, [_pwned("../../canary/pwned")]),
        5,
        "'../../canary/pwned' escapes the root",
    ),
    Case(
        "dotdot-inside-name",
        lambda e: layers_image(e, [_pwned("a/../../canary/pwned")]),
        5,
        "'a/../../canary/pwned' escapes the root",
    ),
    Case(
        "absolute-name",
        lambda e: layers_image(e, [_pwned(e.cabs + "/pwned")]),
        0,
        "",
        lambda e: landed(e, e.cabs + "/pwned"),
    ),
    Case(
        "pax-path-escape",
        lambda e: layers_image(e, [_pwned("innocent", pax={"path": "../../canary/pwned"})]),
        5,
        "'../../canary/pwned' escapes the root",
    ),
    Case(
        "pax-path-absolute",
        lambda e: layers_image(e, [_pwned("innocent", pax={"path": e.cabs + "/pwned"})]),
        0,
        "",
        lambda e: landed(e, e.cabs + "/pwned"),
    ),
    Case(
        "gnu-longname-escape",
        lambda e: oci(
            e.base / "image.tar", Draft([gnu_layer([gnu_member("../" * 40 + "canary/pwned")])])
        ),
        5,
        "escapes the root",
    ),
    Case(
        "pax-linkpath-hardlink-escape",
        lambda e: layers_image(
            e, [M("h", "hardlink", link="x", pax={"linkpath": "../../canary/secret"})]
        ),
        5,
        "'../../canary/secret' escapes the root",
    ),
    # --- writes through symlinks ---
    Case(
        "symlink-then-write-same-layer",
        lambda e: layers_image(e, [M("link", "symlink", link=e.cabs), _pwned("link/pwned")]),
        0,
        "",
        lambda e: (landed(e, e.cabs + "/pwned"), is_link(e.dest / "link", e.cabs)),
    ),
    Case(
        "symlink-then-write-across-layers",
        lambda e: layers_image(e, [M("link", "symlink", link=e.cabs)], [_pwned("link/pwned")]),
        0,
        "",
        lambda e: (landed(e, e.cabs + "/pwned"), is_link(e.dest / "link", e.cabs)),
    ),
    Case(
        "relative-symlink-escape",
        lambda e: layers_image(
            e, [M("a", "dir"), M("a/up", "symlink", link="../" * 12 + e.cabs), _pwned("a/up/pwned")]
        ),
        0,
        "",
        lambda e: landed(e, e.cabs + "/pwned"),
    ),
    Case(
        "relative-symlink-to-parent",
        lambda e: layers_image(e, [M("up", "symlink", link="../.."), _pwned("up/canary/pwned")]),
        0,
        "",
        lambda e: landed(e, "/canary/pwned"),
    ),
    Case(
        "relative-symlink-escape-across-layers",
        lambda e: layers_image(
            e,
            [M("d", "dir"), M("d/up", "symlink", link="../../..")],
            [_pwned("d/up/canary/secret")],
        ),
        0,
        "",
        lambda e: landed(e, "/canary/secret"),
    ),
    Case(
        "symlink-chain",
        lambda e: layers_image(
            e,
            [
                M("l1", "symlink", link="l2"),
                M("l2", "symlink", link="/l3"),
                M("l3", "symlink", link=e.cabs),
                _pwned("l1/pwned"),
            ],
        ),
        0,
        "",
        lambda e: landed(e, e.cabs + "/pwned"),
    ),
    Case(
        "symlink-chain-across-layers",
        lambda e: layers_image(
            e,
            [M("a", "symlink", link="b")],
            [M("b", "symlink", link="../../../canary")],
            [_pwned("a/pwned")],
        ),
        0,
        "",
        lambda e: landed(e, "/canary/pwned"),
    ),
    Case(
        "symlink-loop",
        lambda e: layers_image(
            e, [M("a", "symlink", link="b"), M("b", "symlink", link="a"), _pwned("a/pwned")]
        ),
        5,
        "too many levels of symbolic links",
    ),
    Case(
        "symlink-self-loop",
        lambda e: layers_image(e, [M("a", "symlink", link="./a"), _pwned("a/pwned")]),
        5,
        "too many levels of symbolic links",
    ),
    Case(
        "symlink-loop-stored-as-is",
        lambda e: layers_image(e, [M("a", "symlink", link="b"), M("b", "symlink", link="a")]),
        0,
        "",
        lambda e: (is_link(e.dest / "a", "b"), is_link(e.dest / "b", "a")),
    ),
    Case(
        "file-over-planted-symlink",
        lambda e: layers_image(e, [M("f", "symlink", link=e.cabs + "/secret")], [_pwned("f")]),
        0,
        "",
        lambda e: (landed(e, "/f"), only(e, "f")),
    ),
    Case(
        "file-over-symlink-same-layer",
        lambda e: layers_image(e, [M("f", "symlink", link=e.cabs + "/secret"), _pwned("f")]),
        0,
        "",
        lambda e: landed(e, "/f"),
    ),
    Case(
        "dir-over-planted-symlink",
        lambda e: layers_image(
            e, [M("d", "symlink", link=e.cabs)], [M("d", "dir"), _pwned("d/pwned")]
        ),
        0,
        "",
        lambda e: (landed(e, "/d/pwned"), only(e, "d")),
    ),
    Case(
        "dir-over-symlink-same-layer",
        lambda e: layers_image(
            e, [M("d", "symlink", link=e.cabs), M("d", "dir", mode=0o700), _pwned("d/pwned")]
        ),
        0,
        "",
        lambda e: (landed(e, "/d/pwned"), only(e, "d")),
    ),
    Case(
        "hardlink-over-planted-symlink",
        lambda e: layers_image(
            e,
            [M("s", "symlink", link=e.cabs + "/secret"), M("f", data=b"inside")],
            [M("s", "hardlink", link="f")],
        ),
        0,
        "",
        lambda e: landed(e, "/s", b"inside"),
    ),
    Case(
        "fifo-over-planted-symlink",
        lambda e: layers_image(e, [M("p", "symlink", link=e.cabs + "/secret")], [M("p", "fifo")]),
        0,
        "",
        lambda e: is_fifo(e.dest / "p"),
    ),
    Case(
        "device-over-planted-symlink",
        lambda e: layers_image(
            e,
            [M("dev", "dir"), M("dev/x", "symlink", link=e.cabs + "/secret")],
            [M("dev/x", "char", dev=(1, 3))],
        ),
        0,
        "",
        lambda e: check_device(e, "dev/x"),
    ),
    Case(
        "write-under-symlink-to-file",
        lambda e: layers_image(
            e, [M("f", data=b"x"), M("s", "symlink", link="f"), _pwned("s/pwned")]
        ),
        4,
        "is not a directory",
    ),
    # --- hardlinks ---
    Case(
        "hardlink-dotdot",
        lambda e: layers_image(e, [M("h", "hardlink", link="../../canary/secret")]),
        5,
        "'../../canary/secret' escapes the root",
    ),
    Case(
        "hardlink-absolute-outside",
        lambda e: layers_image(e, [M("h", "hardlink", link=e.cabs + "/secret")]),
        5,
        "no such target",
    ),
    Case(
        "hardlink-through-symlink-outside",
        lambda e: layers_image(
            e, [M("s", "symlink", link=e.cabs), M("h", "hardlink", link="s/secret")]
        ),
        5,
        "no such target",
    ),
    Case(
        "hardlink-through-relative-symlink-outside",
        lambda e: layers_image(
            e, [M("s", "symlink", link="../../canary"), M("h", "hardlink", link="s/secret")]
        ),
        5,
        "no such target",
    ),
    Case(
        "hardlink-through-symlink-inside",
        lambda e: layers_image(
            e,
            [
                M("d", "dir"),
                M("d/f", data=b"inside"),
                M("s", "symlink", link="/d"),
                M("h", "hardlink", link="s/f"),
            ],
        ),
        0,
        "",
        lambda e: same_file(e.dest / "h", e.dest / "d/f"),
    ),
    Case(
        "hardlink-missing-target",
        lambda e: layers_image(e, [M("h", "hardlink", link="nowhere")]),
        5,
        "hardlink /h -> nowhere: no such target",
    ),
    Case(
        "hardlink-to-directory",
        lambda e: layers_image(e, [M("d", "dir"), M("h", "hardlink", link="d")]),
        5,
        "is a directory",
    ),
    Case(
        "hardlink-to-symlink-pointing-outside",
        lambda e: layers_image(
            e, [M("s", "symlink", link=e.cabs + "/secret"), M("h", "hardlink", link="s")]
        ),
        0,
        "",
        lambda e: is_link(e.dest / "h", e.cabs + "/secret"),
    ),
    Case(
        "hardlink-over-its-own-parent",
        lambda e: layers_image(
            e, [M("d", "dir"), M("d/f", data=b"x"), M("d", "hardlink", link="d/f")]
        ),
        5,
        "/d",
    ),
    # --- whiteouts and opaque markers ---
    Case(
        "whiteout-through-symlink-outside",
        lambda e: layers_image(e, [M("s", "symlink", link=e.cabs)], [M("s/.wh.secret")]),
        0,
        "",
        lambda e: (only(e, "s"), is_link(e.dest / "s", e.cabs)),
    ),
    Case(
        "whiteout-through-relative-symlink-outside",
        lambda e: layers_image(
            e, [M("s", "symlink", link="../../canary")], [M("s/.wh.secret"), M("s/sub/.wh.deep")]
        ),
        0,
        "",
        lambda e: only(e, "s"),
    ),
    Case(
        "opaque-through-symlink-outside",
        lambda e: layers_image(e, [M("s", "symlink", link=e.cabs)], [M("s/.wh..wh..opq")]),
        0,
        "",
        lambda e: only(e, "s"),
    ),
    Case(
        "whiteout-through-symlink-inside",
        lambda e: layers_image(
            e,
            [M("real", "dir"), M("real/f"), M("real/g"), M("s", "symlink", link="real")],
            [M("s/.wh.f")],
        ),
        0,
        "",
        lambda e: assert_listing(e.dest / "real", ["g"]),
    ),
    Case(
        "whiteout-dotdot",
        lambda e: layers_image(e, [M("../canary/.wh.secret")]),
        5,
        "escapes the root",
    ),
    Case(
        "whiteout-pax-path-escape",
        lambda e: layers_image(e, [M("x", pax={"path": "../../canary/.wh.secret"})]),
        5,
        "escapes the root",
    ),
    Case(
        "whiteout-absolute-outside",
        lambda e: layers_image(e, [M(e.cabs + "/.wh.secret")]),
        0,
        "",
        lambda e: only(e),
    ),
    Case(
        "whiteout-of-dotdot",
        lambda e: layers_image(e, [M("d", "dir"), M("d/f")], [M("d/.wh...")]),
        0,
        "",
        lambda e: assert_listing(e.dest / "d", ["f"]),
    ),
    Case(
        "bare-whiteout",
        lambda e: layers_image(e, [M("etc", "dir"), M("etc/.wh.")]),
        4,
        "bare whiteout 'etc/.wh.'",
    ),
    # --- the root entry ---
    Case(
        "root-is-symlink",
        lambda e: layers_image(e, [M(".", "symlink", link=e.cabs), _pwned("pwned")]),
        5,
        "root entry is not a directory",
    ),
    Case(
        "root-slash-is-symlink",
        lambda e: layers_image(e, [M("./", "symlink", link=e.cabs), _pwned("pwned")]),
        5,
        "root entry is not a directory",
    ),
    Case(
        "root-is-file", lambda e: layers_image(e, [_pwned(".")]), 5, "root entry is not a directory"
    ),
    Case(
        "root-is-hardlink",
        lambda e: layers_image(e, [M("f"), M(".", "hardlink", link="f")]),
        5,
        "root entry is not a directory",
    ),
    # --- devices and the reserved marker name ---
    Case(
        "device-node",
        lambda e: layers_image(e, [M("null", "char", dev=(1, 3), mode=0o666)]),
        0,
        "",
        lambda e: check_device(e, "null"),
    ),
    # The name earlier versions wrote their marker to is the image's like any other.
    Case(
        "marker-name-is-symlink",
        lambda e: layers_image(e, [M(LEGACY_MARKER, "symlink", link=e.cabs + "/secret")]),
        0,
        "",
        lambda e: (assert_marker(e), is_link(e.dest / LEGACY_MARKER, e.cabs + "/secret")),
    ),
    Case(
        "marker-name-is-directory",
        lambda e: layers_image(e, [M(LEGACY_MARKER, "dir"), M(LEGACY_MARKER + "/x")]),
        0,
        "",
        lambda e: (assert_marker(e), landed(e, f"/{LEGACY_MARKER}/x", b"")),
    ),
    Case(
        "marker-name-is-a-file",
        lambda e: layers_image(e, [M(LEGACY_MARKER, data=b"the image's own")]),
        0,
        "",
        lambda e: (assert_marker(e), landed(e, "/" + LEGACY_MARKER, b"the image's own")),
    ),
    # --- malformed header values ---
    Case("nul-in-pax-path", lambda e: layers_image(e, [M("x", pax={"path": "a\x00b"})]), 5, "NUL"),
    Case(
        "nul-in-symlink-target",
        lambda e: layers_image(e, [M("s", "symlink", link="x", pax={"linkpath": "a\x00b"})]),
        5,
        "NUL",
    ),
    Case(
        "nul-in-xattr-name",
        lambda e: layers_image(e, [M("f", pax={"SCHILY.xattr.user.a\x00b": "v"})]),
        5,
        "NUL",
    ),
    Case("mtime-out-of-range", lambda e: layers_image(e, [M("f", pax={"mtime": "1e30"})]), 4, "/f"),
    Case("mtime-not-a-number", lambda e: layers_image(e, [M("f", pax={"mtime": "nan"})]), 4, "/f"),
    Case(
        "uid-out-of-range",
        lambda e: layers_image(e, [M("f", pax={"uid": "99999999999"})]),
        4,
        "/f",
        plain=False,
    ),
    Case(
        "device-numbers-out-of-range",
        lambda e: oci(
            e.base / "image.tar",
            Draft([gnu_layer([gnu_member("d", tarfile.CHRTYPE, devmajor=1 << 40, devminor=1)])]),
        ),
        4,
        "/d",
        plain=False,
    ),
    Case(
        "malformed-sparse-map",
        lambda e: layers_image(e, [M("f", data=b"4x\n0\n", pax=SPARSE_1_0)]),
        4,
        "malformed header",
        plain=False,
    ),
    Case("pax-header-bomb", lambda e: metadata_bomb(e, "pax"), 4, "too large", plain=False),
    # --- size fields: checked against what can follow, before any read (issue 10, 4 and 8) ---
    Case(
        "size-base256-2^63",
        lambda e: raw_image(e, rawtar.header("big", size=2**63 - 1), AFTER),
        4,
        "big: declares 9223372036854775807 bytes, more than the layer can hold",
    ),
    Case(
        "size-base256-2^40-uncompressed",
        lambda e: raw_image(e, rawtar.header("big", size=2**40), AFTER, compression="none"),
        4,
        "more than the layer can hold",
    ),
    Case(
        "size-pax-1e20-digits",
        lambda e: raw_image(e, rawtar.pax({"size": "1" + "0" * 20}), rawtar.header("big"), AFTER),
        4,
        "more than the layer can hold",
    ),
    Case(
        "size-pax-not-a-number",
        lambda e: raw_image(e, rawtar.pax({"size": "1e20"}), rawtar.header("big"), AFTER),
        4,
        "malformed PAX size '1e20'",
    ),
    Case(
        "size-negative-base256",
        lambda e: raw_image(e, rawtar.regular("a", b"1"), rawtar.header("neg", size=-512), AFTER),
        4,
        "neg: negative size -512",
    ),
    Case(
        "size-pax-negative",
        lambda e: raw_image(e, rawtar.pax({"size": "-1024"}), rawtar.header("neg"), AFTER),
        4,
        "neg: negative size -1024",
    ),
    Case(
        "unknown-type-declares-8GiB",
        lambda e: raw_image(e, rawtar.header("u", b"Z", 8 << 30), AFTER),
        4,
        "more than the layer can hold",
    ),
    Case(
        # A symlink has no data (POSIX): its size is dropped, never skipped.
        "symlink-declares-8GiB",
        lambda e: raw_image(
            e, rawtar.header("l", tarfile.SYMTYPE, 8 << 30, linkname="after"), AFTER
        ),
        0,
        "",
        lambda e: (is_link(e.dest / "l", "after"), landed(e, "/after", b"x")),
    ),
    Case(
        "directory-declares-8GiB-in-pax",
        lambda e: raw_image(
            e, rawtar.pax({"size": str(8 << 30)}), rawtar.header("d", tarfile.DIRTYPE), AFTER
        ),
        0,
        "",
        lambda e: (assert_listing(e.dest / "d", []), landed(e, "/after", b"x")),
    ),
    # --- sparse files: real size bounded, written as holes (issue 10, 5) ---
    Case(
        "old-gnu-sparse-8GiB",
        lambda e: raw_image(
            e, rawtar.gnu_sparse("sp", 8 << 30, [(0, 512), ((8 << 30) - 512, 512)], b"a" * 1024)
        ),
        4,
        "sp: sparse files declare 8589934592 bytes, more than the layer can hold",
    ),
    Case(
        "pax-sparse-2^44",
        lambda e: raw_image(e, rawtar.pax_sparse("sp", 2**44, [(0, 512)], b"d" * 512)),
        4,
        "sparse files declare 17592186044416 bytes",
    ),
    Case(
        "many-sparse-files-add-up",
        lambda e: raw_image(
            e,
            *(rawtar.gnu_sparse(f"s{i}", 100 << 20, [(0, 512)], b"a" * 512) for i in range(3)),
            compression="none",
        ),
        4,
        "sparse files declare",
    ),
    Case(
        "sparse-map-past-real-size",
        lambda e: raw_image(e, rawtar.gnu_sparse("sp", 1024, [(1000, 512)], b"a" * 512)),
        4,
        "sp: inconsistent sparse map",
    ),
    Case(
        "sparse-map-overlaps",
        lambda e: raw_image(e, rawtar.gnu_sparse("sp", 4096, [(0, 1024), (512, 512)], b"a" * 1536)),
        4,
        "sp: inconsistent sparse map",
    ),
    Case(
        "sparse-map-names-more-than-stored",
        lambda e: raw_image(e, rawtar.gnu_sparse("sp", 1 << 16, [(0, 4096)], b""), AFTER),
        4,
        "sparse map names 4096 bytes of data but 0 are stored",
    ),
    Case(
        "old-gnu-sparse-extension-missing",
        lambda e: oci(
            e.base / "image.tar",
            Draft([rawtar.gnu_sparse("sp", 1024, [(0, 512)], b"", extended=True)], "none"),
        ),
        4,
        "sparse map cut short",
    ),
    Case(
        "pax-sparse-map-of-a-billion-segments",
        lambda e: raw_image(
            e,
            rawtar.pax(SPARSE_1_0 | {"GNU.sparse.realsize": "1024"}),
            rawtar.header("GNUSparseFile.0/f", size=512) + rawtar.pad(b"1000000000\n"),
        ),
        4,
        "sparse map of 1000000000 segments is too large",
    ),
    Case(
        "sparse-file-written-as-holes",
        lambda e: raw_image(
            e,
            rawtar.gnu_sparse("sp", 1 << 20, [(0, 512), ((1 << 20) - 512, 512)], SPARSE_DATA),
            rawtar.pax_sparse("px", 1 << 20, [(4096, 512)], b"p" * 512),
            compression="zstd",  # 2 MiB of real size must fit what the blob can hold
        ),
        0,
        "",
        lambda e: check_sparse(e),
    ),
    # --- the outer archive's own headers ---
    Case(
        "archive-member-negative-size",
        lambda e: outer_with(e, rawtar.header("junk", size=-1024)),
        4,
        "junk: negative size -1024",
    ),
    Case(
        "archive-member-larger-than-archive",
        lambda e: outer_with(e, rawtar.header("junk", size=2**40)),
        4,
        "more than the archive can hold",
    ),
    # --- JSON nesting (issue 10, 6) ---
    Case("deep-json-index", lambda e: with_index(e, deep_json(1000)), 4, "nested more than 64"),
    Case("deep-json-manifest", lambda e: deep_manifest(e), 4, "nested more than 64"),
    Case("deep-json-config", lambda e: deep_config(e, b"[" * 1000 + b"]" * 1000), 4, "nested"),
    Case(
        "deep-labels-900",
        lambda e: deep_config(e, b'{"Labels":' + b'{"a":' * 900 + b"1" + b"}" * 901),
        4,
        "nested more than 64",
    ),
    Case(
        "deep-docker-manifest",
        lambda e: write_tar({"manifest.json": deep_json(1000)}, e.base / "image.docker.tar"),
        4,
        "nested more than 64",
    ),
    Case(
        "unbalanced-deep-json-index",
        lambda e: with_index(e, b"[" * 1000 + b"}" + b"]" * 999),
        4,
        "invalid JSON",
    ),
    Case("gnu-longname-bomb", lambda e: metadata_bomb(e, "gnu"), 4, "too large", plain=False),
    # --- digests, sizes, blobs ---
    Case(
        "layer-digest-mismatch",
        lambda e: digest_lie(e, "digest", sha(b"other")),
        4,
        "layer 0 (sha256:",
    ),
    Case(
        "layer-size-larger",
        lambda e: digest_lie(e, "size", 10_000),
        4,
        "size mismatch",
        plain=False,
    ),
    Case(
        "layer-size-smaller", lambda e: digest_lie(e, "size", 10), 4, "size mismatch", plain=False
    ),
    Case("diff-id-mismatch", diff_id_lie, 4, "layer 0 diff_id: digest mismatch", plain=False),
    Case(
        "layer-count-mismatch",
        layer_count_lie,
        4,
        "1 layers but config has 2 diff_ids",
        plain=False,
    ),
    Case("config-digest-mismatch", tampered_config, 4, "config sha256:", plain=False),
    Case("manifest-digest-mismatch", tampered_manifest, 4, "manifest sha256:", plain=False),
    Case(
        "missing-layer-blob",
        lambda e: missing_blob(e, "layer"),
        4,
        "missing blobs/sha256/",
        plain=False,
    ),
    Case(
        "missing-config-blob",
        lambda e: missing_blob(e, "config"),
        4,
        "missing blobs/sha256/",
        plain=False,
    ),
    Case(
        "digest-with-slash",
        lambda e: digest_lie(e, "digest", "sha256:../../../canary/secret"),
        4,
        "malformed hex part in digest 'sha256:../../../canary/secret'",
    ),
    Case(
        "digest-algorithm-with-dotdot",
        lambda e: digest_lie(e, "digest", "../../canary:secret"),
        4,
        "unsupported digest algorithm '../../canary'",
    ),
    Case(
        "index-digest-absolute",
        lambda e: index_digest(e, "sha256:/" + "a" * 63),
        4,
        "malformed hex part",
    ),
    Case(
        "unknown-digest-algorithm",
        lambda e: digest_lie(e, "digest", "md5:" + "0" * 32),
        4,
        "unsupported digest algorithm 'md5'",
        plain=False,
    ),
    Case("truncated-gzip", lambda e: truncated(e, "gzip"), 4, "truncated gzip stream"),
    Case("truncated-zstd", lambda e: truncated(e, "zstd"), 4, "truncated zstd stream", plain=False),
    Case("corrupt-gzip", corrupt_gzip, 4, "corrupt gzip data", plain=False),
    Case("truncated-tar", truncated_tar, 4, "layer 0", plain=False),
    Case("not-a-tar", not_a_tar, 4, "layer 0", plain=False),
    Case(
        "invalid-index-json", lambda e: with_index(e, b"{not json"), 4, "index.json: invalid JSON"
    ),
    Case(
        "index-json-not-an-object",
        lambda e: with_index(e, b"[1, 2]"),
        4,
        "index.json: expected a JSON object",
        plain=False,
    ),
    Case(
        "index-json-wrong-types",
        lambda e: with_index(e, b'{"schemaVersion": 2, "manifests": {"a": 1}}'),
        4,
        "field 'manifests' has the wrong type",
        plain=False,
    ),
    *[
        Case(
            f"wrong-json-type-{where}",
            lambda e, w=where: wrong_json_type(e, w),
            4,
            message,
            plain=False,
        )
        for where, message in [
            ("manifest", "field 'mediaType' has the wrong type"),
            ("config", "field 'variant' has the wrong type"),
            ("platform", "platform: field 'variant' has the wrong type"),
            ("annotation", "annotation values must be strings"),
        ]
    ],
    # --- names of files inside the image archive or layout ---
    Case(
        "docker-layer-name-escapes",
        lambda e: docker_with(e, None, ["../../canary/secret"]),
        4,
        "'../../canary/secret' leaves the archive",
    ),
    Case(
        "docker-config-name-absolute",
        lambda e: docker_with(e, e.cabs + "/secret", ["0" * 64 + "/layer.tar"]),
        4,
        "absolute file name",
    ),
    Case("archive-member-symlink-outside", archive_member_link, 4, "absolute file name"),
    Case(
        "layout-blob-symlink-outside",
        lambda e: layout_with_link(e, "layer", e.canary / "secret"),
        4,
        "outside the layout",
    ),
    Case(
        "layout-blob-is-a-fifo",
        lambda e: layout_with_special_blob(e, "fifo"),
        4,
        "is not a regular file",
    ),
    Case(
        "layout-blob-is-a-directory",
        lambda e: layout_with_special_blob(e, "dir"),
        4,
        "is not a regular file",
        plain=False,
    ),
    Case(
        "layout-index-symlink-outside",
        lambda e: layout_with_link(e, "index.json", e.canary / "secret"),
        4,
        "not an image",
    ),
]


def assert_listing(path: Path, names: list[str]) -> None:
    assert sorted(os.listdir(path)) == sorted(names)


def assert_marker(env: Env) -> None:
    """The record of what the directory holds is its xattr, not a file in the tree."""
    marker = read_marker(env.dest)
    assert marker is not None and "manifest_digest" in marker, marker


# -- the harness -------------------------------------------------------------------------


def contains_secret(root: Path) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            if os.path.getsize(path) < (1 << 20):
                with open(path, "rb") as fh:
                    if SECRET in fh.read():
                        found.append(path)
    return found


def run_case(case: Case, env: Env) -> None:
    image = case.build(env)
    before = snapshot(env.base, exclude=(env.work,))
    canary_inodes = inodes(env.canary)
    if env.user is None:
        result = run_cli("unpack", "-q", str(image), str(env.dest), timeout=120)
    else:
        python, source = plain_user_python()
        result = run_cli(
            "unpack", "-q", str(image), str(env.dest), python=python, user=env.user,
            pythonpath=source, timeout=120,
        )  # fmt: skip
    after = snapshot(env.base, exclude=(env.work,))
    assert after == before, "something outside the destination changed"
    if case.code == 0:
        assert result.code == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert os.listdir(env.work) == ["rootfs"], "scratch left beside the destination"
        assert not (inodes(env.dest) & canary_inodes), "a canary file was linked in"
        assert contains_secret(env.dest) == [], "canary content was read into the tree"
        if case.check is not None:
            case.check(env)
    else:
        assert (result.code, case.message in result.error) == (case.code, True), result.stderr
        assert os.listdir(env.work) == [], "a failed unpack left something behind"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_as_root_or_current_user(case: Case, tmp_path: Path) -> None:
    run_case(case, make_env(tmp_path, None))


PLAIN_CASES = [c for c in CASES if c.plain]


@pytest.mark.parametrize("case", PLAIN_CASES, ids=[c.id for c in PLAIN_CASES])
def test_hostile_as_plain_user(case: Case) -> None:
    plain_user_python()
    base = plain_user_dir("ocislim-hostile-")
    try:
        run_case(case, make_env(base, "tester"))
    finally:
        shutil.rmtree(base)


# -- a large, highly compressible layer --------------------------------------------------

_MEASURE = """
import json, resource, sys
import ocislim.cli, ocislim.convert, ocislim.image.source, ocislim.layers.unpack
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    ocislim.cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "growth_kib": peak - base}))
"""


@pytest.mark.parametrize(
    ("algorithm", "command"),
    [("gzip", "unpack"), ("zstd", "unpack"), ("gzip", "convert"), ("zstd", "inspect")],
)
def test_large_compressible_layer_streams(algorithm: str, command: str, tmp_path: Path) -> None:
    """Memory does not grow with the layer: 256 MiB of zeros need far less than 256 MiB."""
    blob, diff_id = zero_layer(ZEROS, algorithm)
    assert len(blob) < ZEROS // 500  # really a bomb-shaped layer
    draft = Draft([b""], algorithm, blobs=[blob])
    draft.config["rootfs"]["diff_ids"] = [diff_id]
    image = oci(tmp_path / "image.tar", draft)
    out = tmp_path / "out"
    args = {
        "unpack": ["unpack", "-q", str(image), str(out)],
        "convert": ["convert", "-q", "--flatten", str(image), str(out)],
        "inspect": ["inspect", "--json", str(image)],
    }[command]
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    try:
        assert report["code"] in (0, None), proc.stderr
        if command == "unpack":
            assert (out / "zeros").stat().st_size == ZEROS
        assert report["growth_kib"] < 64 << 10, f"peak RSS grew by {report['growth_kib']} KiB"
    finally:
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink(missing_ok=True)


# -- interrupted runs --------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", ["unpack", "convert"])
def test_interrupted_run_leaves_nothing_behind(
    tmp_path: Path, sig: signal.Signals, command: str
) -> None:
    """Killed while writing, unpack and convert remove their scratch files and outputs."""
    blob, diff_id = zero_layer(SLOW_ZEROS, "zstd")
    draft = Draft([b""], "zstd", blobs=[blob])
    draft.config["rootfs"]["diff_ids"] = [diff_id]
    image = oci(tmp_path / "image.tar", draft)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    args = {
        "unpack": ["unpack", "-q", str(image), str(out)],
        "convert": ["convert", "-q", "--flatten", str(image), str(out)],
    }[command]
    with subprocess.Popen(
        [sys.executable, "-m", "ocislim", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    ) as proc:
        # Wait until the run has started writing beside the output, then interrupt it.
        while not os.listdir(work) and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(0.3)  # well inside the writing, which takes seconds
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "ocislim: interrupted"
    assert os.listdir(work) == []
