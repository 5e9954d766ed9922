"""Build OCI images in tests, including deliberately broken ones.

A :class:`Draft` holds the parts of one image (layer tars, how they are
compressed, their descriptors, the config) as plain mutable data, so a test can
lie about a digest, a size or a ``diff_id`` before writing the image out with
:func:`write_layout` (as an OCI layout directory or an oci-archive).  No ocislim
code is involved in writing.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from tests.synth import config_for, layout_files, sha, write_tar, write_tree

MEDIA = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
_VALID = re.compile(r"sha256:[0-9a-f]{64}")


def compress(raw: bytes, algorithm: str) -> bytes:
    if algorithm == "gzip":
        return gzip.compress(raw, mtime=0)
    if algorithm == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(raw)
    assert algorithm == "none", algorithm
    return raw


def jdump(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


@dataclass
class Draft:
    """One image, editable before it is written.

    ``blobs[i]`` is stored under ``descs[i]["digest"]`` when that is a well-formed
    digest (so a wrong digest makes a real mismatch), else under its true digest.
    Digests in ``missing`` are not stored at all.
    """

    layers: list[bytes]
    compression: str = "gzip"
    architecture: str = "amd64"
    blobs: list[bytes] = field(default_factory=list)
    descs: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    manifest_override: bytes | None = None

    def __post_init__(self) -> None:
        if not self.blobs:
            self.blobs = [compress(raw, self.compression) for raw in self.layers]
        if not self.descs:
            self.descs = [
                {"mediaType": MEDIA[self.compression], "digest": sha(b), "size": len(b)}
                for b in self.blobs
            ]
        if not self.config:
            self.config = config_for(self.layers, architecture=self.architecture)

    def config_bytes(self) -> bytes:
        return jdump(self.config)

    def manifest_bytes(self) -> bytes:
        if self.manifest_override is not None:
            return self.manifest_override
        cfg = self.config_bytes()
        return jdump(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha(cfg),
                    "size": len(cfg),
                },
                "layers": copy.deepcopy(self.descs),
            }
        )

    def blobs_and_descriptor(
        self, platform: dict[str, str] | None = None, ref: str | None = None
    ) -> tuple[dict[str, bytes], dict[str, Any]]:
        """Blobs keyed by digest, and the manifest descriptor for an index."""
        blobs: dict[str, bytes] = {}
        cfg = self.config_bytes()
        blobs[sha(cfg)] = cfg
        for desc, blob in zip(self.descs, self.blobs, strict=True):
            digest = desc["digest"]
            name = digest if isinstance(digest, str) and _VALID.fullmatch(digest) else sha(blob)
            blobs[name] = blob
        manifest = self.manifest_bytes()
        blobs[sha(manifest)] = manifest
        for digest in self.missing:
            blobs.pop(digest, None)
        desc: dict[str, Any] = {
            "mediaType": MANIFEST,
            "digest": sha(manifest),
            "size": len(manifest),
        }
        if platform:
            desc["platform"] = platform
        if ref:
            desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
        return blobs, desc


def write_layout(
    dest: Path,
    images: list[tuple[dict[str, bytes], dict[str, Any]]],
    *,
    as_dir: bool = False,
    index: bytes | None = None,
) -> Path:
    """Write ``images`` as one OCI layout: a directory, or a tar of it (oci-archive)."""
    files = layout_files(images, index)
    if as_dir:
        dest.mkdir()
        return write_tree(files, dest)
    return write_tar(files, dest)


def oci(dest: Path, draft: Draft, *, as_dir: bool = False, ref: str | None = None) -> Path:
    """Write a single-image layout of ``draft``."""
    return write_layout(dest, [draft.blobs_and_descriptor(ref=ref)], as_dir=as_dir)
