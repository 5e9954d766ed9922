"""A root filesystem for commands that need one on disk (run, trace, deps, build).

:func:`prepared_rootfs` unpacks an image into a temporary directory (removed
afterwards) or into a directory the user names, reusing that directory when
its marker says it already holds the same image.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocislim import scratch
from ocislim.errors import OutputError
from ocislim.image.source import Image
from ocislim.layers.unpack import image_identity, read_marker, unpack
from ocislim.progress import NULL_PROGRESS, Progress


def holds_image(rootfs: Path, image: Image) -> bool:
    """True when ``rootfs`` is an unpacked tree of ``image`` (by its marker xattr).

    False when it has no marker (absent, empty, or not ocislim's); an
    :class:`OutputError` when its marker names another image.
    """
    marker = read_marker(rootfs) if rootfs.is_dir() else None
    if marker is None:
        return False
    if marker != image_identity(image):
        raise OutputError(f"{rootfs}: holds a different image; use an empty directory")
    return True


@contextmanager
def prepared_rootfs(
    image: Image, rootfs: Path | None = None, progress: Progress = NULL_PROGRESS
) -> Iterator[Path]:
    """Yield a directory holding the merged tree of ``image``.

    ``rootfs=None``: a temporary directory, removed on exit (also on error).
    ``rootfs=DIR``: reused when its marker names this image; unpacked into when
    absent or empty; any other content is an :class:`OutputError` (never
    overwritten).  A named directory is kept after exit.
    """
    if rootfs is None:
        with scratch.directory(tempfile.gettempdir(), "ocislim-rootfs-") as work:
            target = work / "rootfs"
            unpack(image, target, progress)
            yield target
        return
    rootfs = Path(rootfs)
    if holds_image(rootfs, image):
        progress.stage("unpack", f"reusing {rootfs}")
        yield rootfs
        return
    progress.stage("unpack", str(rootfs))
    unpack(image, rootfs, progress)
    yield rootfs
