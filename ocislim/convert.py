"""``ocislim convert``: rewrite an image in another format or compression, or flatten it.

Without ``--flatten`` every layer's uncompressed bytes stay exactly as they
were (so ``diff_ids`` and the config are unchanged); a layer is copied as-is
when its compression already is the requested one, and recompressed
otherwise.  With ``--flatten`` the layers are merged and one new layer is
written from the original tar headers.  Scratch files live in a temporary
directory beside the output and are removed whatever happens.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ocislim.image.compression import detect, open_compressor
from ocislim.image.digest import HashingWriter
from ocislim.image.mutate import flattened_config
from ocislim.image.outlayers import check_level, output_compression
from ocislim.image.reference import check_tag
from ocislim.image.source import Image, Layer
from ocislim.image.writer import OutputLayer, WrittenImage, check_destination, write_image
from ocislim.layers.merge import merge, spooled_data
from ocislim.layers.meter import open_metered
from ocislim.layers.spool import Spool
from ocislim.layers.tree import FileTree
from ocislim.layers.writer import write_tree_layer
from ocislim.progress import NULL_PROGRESS, Progress, counted
from ocislim.scratch import directory as scratch_directory


@dataclass(frozen=True)
class ConvertOptions:
    fmt: str = "oci-archive"
    compression: str | None = None  # None: keep each layer's own (none for docker-archive)
    level: int | None = None
    flatten: bool = False
    tag: str | None = None

    def check(self) -> None:
        """Raise :class:`~ocislim.errors.UsageError` for a level the compression lacks
        (kept layers' own compressions are checked as each is read) or a bad ``--tag``."""
        flat = "gzip" if self.flatten else None
        check_level(output_compression(self.fmt, self.compression, flat).compression, self.level)
        check_tag(self.tag)


def _file_opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb")


def layer_compression(layer: Layer) -> str:
    """The compression of a layer blob, from its first bytes."""
    with layer.store.open(layer.blob_name) as fh:
        return detect(fh.read(4))


def _recompress(
    layer: Layer, compression: str, level: int | None, scratch: Path, progress: Progress
) -> OutputLayer:
    path = scratch / f"layer-{layer.index}"
    stream = open_metered(layer, progress)
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


def _as_is(layer: Layer, compression: str, progress: Progress) -> OutputLayer:
    # The copy checks the blob digest only; the diff_id needs one decompressing pass.
    stream = open_metered(layer, progress)
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


def convert(
    image: Image, dest: Path, options: ConvertOptions, progress: Progress = NULL_PROGRESS
) -> WrittenImage:
    """Write ``image`` to ``dest`` as ``options`` say. Atomic; the source is only read."""
    options.check()
    chosen = output_compression(options.fmt, options.compression, None, options.level)
    if chosen.note:
        progress.note(chosen.note)
    target = chosen.compression
    dest = Path(os.path.abspath(dest))
    check_destination(dest, options.fmt, [image.source])  # fail before the long work
    with scratch_directory(dest.parent, ".ocislim-convert-") as work:
        if options.flatten:
            with Spool(work) as spool:
                progress.stage("merge", f"{len(image.layers)} layers")
                tree: FileTree = merge(image, spool=spool, progress=progress)
                progress.stage("write", "flattened layer")
                layer = write_tree_layer(
                    counted(tree.walk(), progress, "entries", len(tree)),
                    spooled_data(spool),
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
                check_level(want, options.level)
                progress.stage("write", f"layer {layer_in.index + 1}/{len(image.layers)} {want}")
                if have == want and options.level is None:
                    layers.append(_as_is(layer_in, have, progress))
                else:
                    layers.append(_recompress(layer_in, want, options.level, work, progress))
            config_raw = image.config_raw
        progress.stage("write", f"{options.fmt} {dest}")
        return write_image(
            dest, options.fmt, config_raw, layers, options.tag or image.ref_name, [image.source]
        )
