"""``ocislim convert``: rewrite an image in another format or compression, or flatten it.

Without ``--flatten`` every layer's uncompressed bytes stay exactly as they
were (so ``diff_ids`` and the config are unchanged); a layer is copied as-is
when its compression already is the requested one, and recompressed
otherwise.  With ``--flatten`` the layers are merged and one new layer is
written from the original tar headers.  Scratch files live in a temporary
directory beside the output and are removed whatever happens.
"""

from __future__ import annotations

import copy
import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ocislim.image.compression import detect, open_compressor
from ocislim.image.digest import Digest, HashingWriter
from ocislim.image.models import canonical_json
from ocislim.image.source import Image, Layer
from ocislim.image.streams import ByteReader
from ocislim.image.writer import (
    OutputLayer,
    WrittenImage,
    check_destination,
    source_date_epoch,
    write_image,
)
from ocislim.layers.merge import merge
from ocislim.layers.spool import Spool
from ocislim.layers.tree import DataRef, Entry, FileTree
from ocislim.layers.writer import write_layer
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.scratch import directory as scratch_directory


@dataclass(frozen=True)
class ConvertOptions:
    fmt: str = "oci-archive"
    compression: str | None = None  # None: keep each layer's own (none for docker-archive)
    level: int | None = None
    flatten: bool = False
    tag: str | None = None


def _file_opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb")


def layer_compression(layer: Layer) -> str:
    """The compression of a layer blob, from its first bytes."""
    with layer.store.open(layer.blob_name) as fh:
        return detect(fh.read(4))


def _recompress(layer: Layer, compression: str, level: int | None, scratch: Path) -> OutputLayer:
    path = scratch / f"layer-{layer.index}"
    stream = layer.open()
    try:
        with open(path, "wb") as out:
            blob = HashingWriter(out)
            compressor = open_compressor(blob, compression, level)
            while chunk := stream.read(1 << 20):
                compressor.write(chunk)
            compressor.close()
        stream.finish()
    finally:
        stream.close()
    return OutputLayer(blob.digest, blob.count, layer.diff_id, compression, _file_opener(path))


def _as_is(layer: Layer, compression: str) -> OutputLayer:
    # The copy checks the blob digest only; the diff_id needs one decompressing pass.
    stream = layer.open()
    try:
        stream.finish()
    finally:
        stream.close()
    return OutputLayer(
        layer.descriptor.digest,
        layer.descriptor.size,
        layer.diff_id,
        compression,
        lambda: layer.store.open(layer.blob_name),
    )


def flattened_config(image: Image, diff_id: Digest, created_by: str) -> bytes:
    """The source config with one layer ``diff_id`` and a history saying what happened."""
    raw: dict[str, Any] = copy.deepcopy(image.config.raw)
    raw["rootfs"] = {"type": "layers", "diff_ids": [str(diff_id)]}
    history = [dict(h, empty_layer=True) for h in image.config.history]
    created = _iso(source_date_epoch())
    history.append({"created": created, "created_by": created_by, "comment": "ocislim"})
    raw["history"] = history
    return canonical_json(raw)


def _iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def write_tree_layer(
    entries: list[Entry],
    open_data: Callable[[DataRef], ByteReader],
    compression: str,
    level: int | None,
    scratch: Path,
) -> OutputLayer:
    """Write ``entries`` as one layer file in ``scratch``, ready for :func:`write_image`."""
    path = scratch / "layer-flat"
    with open(path, "wb") as out:
        written = write_layer(entries, open_data, out, compression, level)
    return OutputLayer(
        written.digest, written.size, written.diff_id, compression, _file_opener(path)
    )


def convert(
    image: Image, dest: Path, options: ConvertOptions, progress: Progress = NULL_PROGRESS
) -> WrittenImage:
    """Write ``image`` to ``dest`` as ``options`` say. Atomic; the source is only read."""
    docker = options.fmt == "docker-archive"
    if docker and options.compression not in (None, "none"):
        progress.note("docker-archive layers are stored uncompressed; ignoring --compression")
    target = "none" if docker else options.compression
    dest = Path(os.path.abspath(dest))
    check_destination(dest, options.fmt, [image.source])  # fail before the long work
    with scratch_directory(dest.parent, ".ocislim-convert-") as work:
        if options.flatten:
            with Spool(work) as spool:
                progress.stage("merge", f"{len(image.layers)} layers")
                tree: FileTree = merge(image, spool=spool, progress=progress)
                progress.stage("write", "flattened layer")
                layer = write_tree_layer(
                    list(tree.walk()),
                    lambda ref: spool.reader(ref.spool_offset or 0, ref.size),
                    target or "gzip",
                    options.level,
                    work,
                )
            layers = [layer]
            config_raw = flattened_config(image, layer.diff_id, "ocislim convert --flatten")
        else:
            layers = []
            for layer_in in image.layers:
                have = layer_compression(layer_in)
                want = target or have
                progress.stage("layer", f"{layer_in.index + 1}/{len(image.layers)} {want}")
                if have == want and options.level is None:
                    layers.append(_as_is(layer_in, have))
                else:
                    layers.append(_recompress(layer_in, want, options.level, work))
            config_raw = image.config_raw
        progress.stage("write", f"{options.fmt} {dest}")
        return write_image(
            dest, options.fmt, config_raw, layers, options.tag or image.ref_name, [image.source]
        )
