"""``ocislim unpack``: the merged root filesystem of an image in a directory.

The tree is extracted into a hidden sibling of the destination and renamed
into place when complete, so an interrupted or failed unpack leaves no partial
destination and removes its scratch directory.  A marker file records which
image the directory holds, so later runs can reuse it (see :mod:`rootfs`).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ocislim.errors import OutputError
from ocislim.image.source import Image
from ocislim.layers.extract import DiskSink, remove_tree
from ocislim.layers.merge import merge
from ocislim.layers.tree import FileTree
from ocislim.progress import NULL_PROGRESS, Progress

MARKER = ".ocislim-unpack.json"


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
    """The identity recorded in ``root``, or ``None`` when absent or unreadable.

    A marker that is a symlink is ignored (never followed out of ``root``).
    """
    try:
        fd = os.open(root / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(1 << 16))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(root: Path, image: Image) -> None:
    """Write the marker, replacing whatever the image itself put at that name.

    The image's own entry (possibly a symlink to anywhere) is removed without
    being followed, and the marker is created with ``O_EXCL``.
    """
    path = root / MARKER
    remove_tree(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(image_identity(image), sort_keys=True) + "\n")


def _check_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise OutputError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise OutputError(f"{dest}: directory is not empty")
    if not dest.parent.is_dir():
        raise OutputError(f"{dest.parent}: no such directory")


def unpack(image: Image, dest: Path, progress: Progress = NULL_PROGRESS) -> UnpackResult:
    """Extract the merged tree of ``image`` into ``dest`` (absent or an empty directory).

    Atomic: on success ``dest`` holds the whole tree plus the marker file; on
    any failure ``dest`` is as it was and the scratch directory is removed.
    """
    dest = Path(os.path.abspath(dest))
    _check_destination(dest)
    scratch = dest.parent / f".{dest.name}.ocislim-{secrets.token_hex(4)}"
    try:
        os.mkdir(scratch, 0o700)
    except OSError as exc:
        raise OutputError(f"{scratch}: cannot create ({exc.strerror})") from None
    try:
        sink = DiskSink(scratch)
        tree = merge(image, sink=sink, progress=progress)
        sink.finish()
        if not sink.privileged:
            os.chmod(scratch, 0o755)
        _write_marker(scratch, image)
        if dest.is_dir():
            dest.rmdir()
        os.rename(scratch, dest)
    except BaseException:
        remove_tree(scratch)
        raise
    for items, what in (
        (sink.skipped_devices, "device node(s) not created (needs root)"),
        (sink.xattr_failures, "extended attribute(s) could not be set"),
    ):
        if items:
            more = " ..." if len(items) > 5 else ""
            progress.note(f"{len(items)} {what}: {', '.join(items[:5])}{more}")
    return UnpackResult(dest, tree, len(tree), list(sink.skipped_devices), sink.privileged)
