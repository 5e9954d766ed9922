"""``ocislim unpack``: the merged root filesystem of an image in a directory.

The tree is extracted into a hidden sibling of the destination (a
:mod:`~ocislim.scratch` directory) and renamed into place when complete, so an
interrupted or failed unpack leaves no partial destination; a killed one
leaves scratch that the next command removes.  The tree is exactly the
image's: which image the directory holds is recorded outside it, in the
extended attribute :data:`MARKER_XATTR` of the directory itself, so later
runs can reuse it (see :mod:`rootfs`).
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ocislim import scratch
from ocislim.errors import ImageError, OutputError
from ocislim.image.models import parse_json
from ocislim.image.source import Image
from ocislim.layers.extract import DiskSink
from ocislim.layers.merge import merge
from ocislim.layers.spool import Spool
from ocislim.layers.tree import FileTree
from ocislim.progress import NULL_PROGRESS, Progress

MARKER_XATTR = "user.ocislim.unpack"
_MAX_MARKER = 1 << 12


@dataclass
class UnpackResult:
    root: Path
    tree: FileTree = field(repr=False)
    entries: int
    skipped_devices: list[str]
    privileged: bool


def image_identity(image: Image) -> dict[str, str]:
    """What a rootfs marker records: enough to tell whether a directory holds ``image``."""
    return {
        "manifest_digest": str(image.manifest_digest),
        "config_digest": str(image.manifest.config.digest),
    }


def read_marker(root: Path) -> dict[str, str] | None:
    """The identity recorded on the directory ``root``, or ``None`` when absent or unreadable.

    A symlink is never followed.
    """
    try:
        raw = os.getxattr(root, MARKER_XATTR, follow_symlinks=False)
    except OSError:
        return None
    if len(raw) > _MAX_MARKER:
        return None
    try:
        data = parse_json(raw, f"{root}: {MARKER_XATTR}")
    except ImageError:
        return None
    return data if isinstance(data, dict) else None


def _write_marker(root: Path, image: Image, shown: Path, progress: Progress) -> None:
    """Record on ``root`` which image it holds; a file system without user xattrs gets a note."""
    value = json.dumps(image_identity(image), sort_keys=True).encode()
    try:
        os.setxattr(root, MARKER_XATTR, value, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
            raise OutputError(f"{shown}: cannot record the image ({exc.strerror})") from None
        progress.note(
            f"{shown}: cannot record which image it holds ({exc.strerror}); "
            "--rootfs will not reuse it"
        )


def _check_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise OutputError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise OutputError(f"{dest}: directory is not empty")
    if not dest.parent.is_dir():
        raise OutputError(f"{dest.parent}: no such directory")


def unpack(
    image: Image, dest: Path, progress: Progress = NULL_PROGRESS, spool: Spool | None = None
) -> UnpackResult:
    """Extract the merged tree of ``image`` into ``dest`` (absent or an empty directory).

    Atomic: on success ``dest`` holds the whole tree (and the marker xattr); on
    any failure ``dest`` is as it was and the scratch directory is removed.
    """
    dest = Path(os.path.abspath(dest))
    _check_destination(dest)
    work = scratch.make_dir(dest.parent, f".{dest.name}.ocislim-unpack-")
    try:
        sink = DiskSink(work, shown_as=dest)
        tree = merge(image, sink=sink, spool=spool, progress=progress, stage="unpack")
        # A plain user can set the xattr only while the root is still writable (before
        # its own mode is applied); root sets it last, over any the image gave "/".
        if not sink.privileged:
            _write_marker(work, image, dest, progress)
        sink.finish()
        if sink.privileged:
            _write_marker(work, image, dest, progress)
        if dest.is_dir():
            dest.rmdir()
        os.rename(work, dest)
    except BaseException:
        scratch.remove(work)
        raise
    scratch.release(work)
    for items, what in (
        (sink.skipped_devices, "device node(s) not created (needs root)"),
        (sink.xattr_failures, "extended attribute(s) could not be set"),
    ):
        if items:
            more = " ..." if len(items) > 5 else ""
            progress.note(f"{len(items)} {what}: {', '.join(items[:5])}{more}")
    return UnpackResult(dest, tree, len(tree), list(sink.skipped_devices), sink.privileged)
