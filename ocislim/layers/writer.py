"""Write one layer from tree entries, using their original tar headers.

The output is a deterministic function of the entries and their bytes: the
caller passes entries in a fixed order (the tree's sorted walk), headers are
the originals (owner, mode incl. setuid, times, xattrs and other PAX records,
device numbers, link targets) with only the name rewritten, hardlink groups
are written as one file followed by links to it, and compression adds no
names or timestamps.
"""

from __future__ import annotations

import copy
import io
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ocislim.image.compression import open_compressor
from ocislim.image.digest import Digest, HashingWriter
from ocislim.image.streams import ByteReader
from ocislim.image.writer import OutputLayer
from ocislim.layers.tree import DataRef, Entry

# Rewritten from the entry itself; GNU.sparse.* would describe a sparse map that
# is not there, since file data is always written out in full.
_DROPPED_PAX = ("path", "linkpath", "size")
_DROPPED_PAX_PREFIXES = ("GNU.sparse.",)


@dataclass(frozen=True)
class WrittenLayer:
    digest: Digest  # of the bytes written (compressed)
    size: int
    diff_id: Digest  # of the uncompressed tar
    compression: str
    entries: int


def _header(entry: Entry) -> tarfile.TarInfo:
    info = copy.copy(entry.info)
    info.pax_headers = {
        k: v
        for k, v in entry.info.pax_headers.items()
        if k not in _DROPPED_PAX and not k.startswith(_DROPPED_PAX_PREFIXES)
    }
    info.name = entry.path.lstrip("/")
    return info


def write_layer(
    entries: Iterable[Entry],
    open_data: Callable[[DataRef], ByteReader],
    out: BinaryIO,
    compression: str,
    level: int | None = None,
    replaced: Mapping[str, bytes] | None = None,
) -> WrittenLayer:
    """Write a layer tar of ``entries`` (root ``/`` skipped) to ``out``, compressed.

    ``open_data`` returns the bytes of a regular file.  ``replaced`` maps the paths
    of regular files to new content, written under the entry's original header with
    only its size changed (such a file leaves its hardlink group: it is written on its
    own).  Returns the digests; ``out`` is left open and positioned at the end of what
    was written.
    """
    replaced = replaced or {}
    blob = HashingWriter(out)
    compressor = open_compressor(blob, compression, level)
    diff = HashingWriter(compressor)
    first_path: dict[int, str] = {}
    count = 0
    # Stream mode ("w|"): the hashing writer cannot tell() or seek().
    with tarfile.open(fileobj=diff, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for entry in entries:
            # tarfile keeps every header it wrote (for getmembers); none is needed
            # again, and at 200,000 entries they would cost tens of megabytes.
            tar.members.clear()
            if entry.path == "/":
                continue
            info = _header(entry)
            count += 1
            new = replaced.get(entry.path) if entry.data is not None else None
            if new is not None:
                info.type = tarfile.REGTYPE
                info.size = len(new)
                info.linkname = ""
                tar.addfile(info, io.BytesIO(new))
                continue
            if entry.inode in first_path and not entry.is_dir:
                info.type = tarfile.LNKTYPE
                info.linkname = first_path[entry.inode].lstrip("/")
                info.size = 0
                tar.addfile(info)
                continue
            first_path[entry.inode] = entry.path
            if entry.data is not None:
                info.type = tarfile.REGTYPE
                info.size = entry.data.size
                info.linkname = ""
                tar.addfile(info, open_data(entry.data))
            else:
                info.size = 0
                tar.addfile(info)
    compressor.close()
    return WrittenLayer(blob.digest, blob.count, diff.digest, compression, count)


def write_tree_layer(
    entries: Iterable[Entry],
    open_data: Callable[[DataRef], ByteReader],
    compression: str,
    level: int | None,
    scratch: Path,
    replaced: Mapping[str, bytes] | None = None,
) -> OutputLayer:
    """Write ``entries`` as one layer file in ``scratch``, ready for ``write_image``
    (``replaced`` as for :func:`write_layer`).

    The file (``scratch/layer-flat``) must outlive the returned layer's use.
    """
    path = scratch / "layer-flat"
    with open(path, "wb") as out:
        written = write_layer(entries, open_data, out, compression, level, replaced)
    return OutputLayer(
        written.digest, written.size, written.diff_id, compression, lambda: open(path, "rb")
    )
