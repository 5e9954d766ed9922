"""Small synthetic images built inside tests (no ocislim code involved in writing them).

``layer([...])`` makes an uncompressed layer tar from member specs; ``write_oci_dir``,
``write_oci_archive`` and ``write_docker_archive`` wrap layers into an image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

# The record file earlier versions wrote at the root of an unpacked tree; today a
# file of that name is image content like any other.
LEGACY_MARKER = ".ocislim-unpack.json"


@dataclass
class M:
    """One tar member: ``kind`` is file, dir, symlink, hardlink, char, block or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_600_000_000
    pax: dict[str, str] = field(default_factory=dict)
    dev: tuple[int, int] = (0, 0)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def layer(members: list[M]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = _TYPES[m.kind]
            info.mode = m.mode if m.mode is not None else (0o755 if m.kind == "dir" else 0o644)
            info.uid, info.gid, info.mtime = m.uid, m.gid, m.mtime
            info.linkname = m.link
            info.pax_headers = dict(m.pax)
            info.devmajor, info.devminor = m.dev
            if m.kind == "file":
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _jdump(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def config_for(layers: list[bytes], **cfg: Any) -> dict[str, Any]:
    return {
        "architecture": cfg.pop("architecture", "amd64"),
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [sha(lay) for lay in layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }


def oci_blobs(
    layers: list[bytes], compress: bool = True, config: dict[str, Any] | None = None
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Blobs of one image (keyed by digest) and the manifest descriptor for index.json."""
    blobs: dict[str, bytes] = {}
    cfg = _jdump(config or config_for(layers))
    blobs[sha(cfg)] = cfg
    layer_descs = []
    for raw in layers:
        blob = gzip.compress(raw, mtime=0) if compress else raw
        blobs[sha(blob)] = blob
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        layer_descs.append({"mediaType": media, "digest": sha(blob), "size": len(blob)})
    manifest = _jdump(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(cfg),
                "size": len(cfg),
            },
            "layers": layer_descs,
        }
    )
    blobs[sha(manifest)] = manifest
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(manifest),
        "size": len(manifest),
    }
    return blobs, desc


def layout_files(
    images: list[tuple[dict[str, bytes], dict[str, Any]]], index_extra: bytes | None = None
) -> dict[str, bytes]:
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    manifests = []
    for blobs, desc in images:
        for digest, data in blobs.items():
            files["blobs/" + digest.replace(":", "/")] = data
        manifests.append(desc)
    files["index.json"] = index_extra or _jdump({"schemaVersion": 2, "manifests": manifests})
    return files


def write_tree(files: dict[str, bytes], dest: Path) -> Path:
    for name, data in files.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dest


def write_tar(files: dict[str, bytes], dest: Path) -> Path:
    with tarfile.open(dest, "w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def oci_archive(tmp: Path, layers: list[bytes], ref: str | None = None, **kw: Any) -> Path:
    blobs, desc = oci_blobs(layers, **kw)
    if ref:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
    return write_tar(layout_files([(blobs, desc)]), tmp / "image.oci.tar")


def docker_archive(tmp: Path, layers: list[bytes], tag: str = "demo:latest") -> Path:
    cfg = _jdump(config_for(layers))
    cfg_hex = sha(cfg).split(":")[1]
    files: dict[str, bytes] = {f"{cfg_hex}.json": cfg}
    names = []
    for i, raw in enumerate(layers):
        name = f"{i:064x}/layer.tar"
        files[name] = raw
        names.append(name)
    files["manifest.json"] = json.dumps(
        [{"Config": f"{cfg_hex}.json", "RepoTags": [tag], "Layers": names}]
    ).encode()
    return write_tar(files, tmp / "image.docker.tar")


def walk_disk(root: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """``(in-tree path, host path, lstat)`` of every entry below ``root`` (links not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            yield "/" + os.path.relpath(full, root), full, os.lstat(full)


def tree_of(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """``{relative path: (kind, mode, content or link target)}`` of a directory tree."""
    out: dict[str, tuple[str, int, bytes | str]] = {}
    for rel, full, st in walk_disk(root):
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", 0, os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", st.st_mode & 0o7777, b"")
        else:
            out[rel] = ("file", st.st_mode & 0o7777, Path(full).read_bytes())
    return out


ZEROS = 256 << 20  # uncompressed bytes; gzip makes ~250 KB of them, zstd a few KB
# For tests that interrupt a command mid-way: no command finishes inside their window
# even on a fast, idle machine (at ZEROS a gzip layout convert took 0.75 s in all, and
# an unpack once finished between the test's last look and its signal).
SLOW_ZEROS = 8 * ZEROS
_MB = 1 << 20
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0


def zero_layer(size: int, algorithm: str) -> tuple[bytes, str]:
    """A layer holding one file of ``size`` zero bytes, compressed; and its diff_id.

    Everything after the file's tar header is zeros, so the compressed stream is
    built from one compressed megabyte repeated (gzip: a full flush resets the
    deflate state, making each repetition byte-identical), which keeps this fast.
    """
    info = tarfile.TarInfo("zeros")
    info.size = size
    header = info.tobuf(tarfile.PAX_FORMAT)
    total = len(header) + size + 2 * tarfile.BLOCKSIZE
    total += -total % tarfile.RECORDSIZE
    chunks, tail = divmod(total - len(header), _MB)
    zeros = bytes(_MB)
    hasher = hashlib.sha256(header)
    crc = zlib.crc32(header)
    for _ in range(chunks):
        hasher.update(zeros)
        crc = zlib.crc32(zeros, crc)
    hasher.update(bytes(tail))
    crc = zlib.crc32(bytes(tail), crc)
    if algorithm == "gzip":
        deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
        head = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
        piece = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
        end = deflate.compress(bytes(tail)) + deflate.flush()
        trailer = struct.pack("<II", crc, total & 0xFFFFFFFF)
        blob = _GZIP_HEADER + head + piece * chunks + end + trailer
    else:
        zstd = zstandard.ZstdCompressor(level=3).compressobj()
        parts = [zstd.compress(header)]
        parts += [zstd.compress(zeros) for _ in range(chunks)]
        parts += [zstd.compress(bytes(tail)), zstd.flush()]
        blob = b"".join(parts)
    return blob, "sha256:" + hasher.hexdigest()
