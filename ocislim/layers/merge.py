"""Stream an image's layers through a :class:`FileTree`.

One pass over every layer, in order: each member is applied to the tree (and
so to an optional sink such as a directory on disk), every layer's digests are
verified at its end, and regular-file bytes can be copied to a :class:`Spool`
for a later rewrite.  A second pass, :func:`spool_contents`, copies only the
bytes a caller wants, for when the wanted set is known after the first pass;
it returns where they are (:data:`SpoolOffsets`) and leaves the tree alone.
:func:`spooled_data` reads them back for the layer writer.

A layer is read with ``tarfile`` over a large buffer, as a file it may seek
forward in only (:class:`_ForwardRaw`); a backward seek, which no honest use
of the stream makes, is a tar error.  The bytes of an ordinary (not sparse)
member are read straight from that buffer (:func:`member_data`).
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from ocislim.errors import ImageError
from ocislim.image.compression import max_decompressed
from ocislim.image.source import Image, Layer
from ocislim.image.streams import ByteReader
from ocislim.image.tarsafe import BoundedTarInfo, check_member
from ocislim.layers.meter import MeteredStream
from ocislim.layers.spool import Spool
from ocislim.layers.tree import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    DataRef,
    FileTree,
    TreeSink,
    implied_mtime,
    normalize,
)
from ocislim.progress import NULL_PROGRESS, Progress

SpoolOffsets = Mapping[tuple[int, int], int]
"""Where :func:`spool_contents` put a member's bytes, keyed by ``(layer, ordinal)``."""

# Real sizes of sparse files one layer may declare whatever its blob size: what a
# flattened layer may have to write out as zeros.
SPARSE_FLOOR = 256 << 20
_READ_BUFFER = 1 << 20


class _ForwardRaw(io.RawIOBase):
    """A layer stream as a raw file for :class:`io.BufferedReader`: ``tell`` works and
    ``seek`` goes forward (by reading); seeking backwards raises :class:`tarfile.StreamError`,
    as ``tarfile``'s own stream mode does."""

    def __init__(self, source: ByteReader) -> None:
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self._pos += size
        return size

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise tarfile.StreamError("a layer stream has no known end to seek from")
        if offset < self._pos:
            raise tarfile.StreamError("seeking backwards is not allowed")
        while self._pos < offset:
            skipped = len(self._source.read(min(offset - self._pos, _READ_BUFFER)))
            if not skipped:
                break  # past the end: the next read finds nothing
            self._pos += skipped
        return self._pos


class _MemberData:
    """The bytes of one member that is not sparse, read from the tar's buffered stream.

    A stream that ends before ``size`` bytes raises :class:`tarfile.ReadError`,
    as ``tarfile``'s own member reader does.
    """

    __slots__ = ("_file", "_left")

    def __init__(self, file: io.BufferedReader, size: int) -> None:
        self._file = file
        self._left = size

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        if not n:
            return b""
        data = self._file.read(n)
        if len(data) != n:
            raise tarfile.ReadError("unexpected end of data")
        self._left -= n
        return data

    def close(self) -> None:
        self._left = 0


def member_data(tar: tarfile.TarFile, member: tarfile.TarInfo) -> ByteReader:
    """A reader of the bytes of regular file ``member``, the one ``tar`` just yielded.

    Valid until the next member is requested (as ``tar.extractfile``).
    """
    file = tar.fileobj
    if member.issparse() or not isinstance(file, io.BufferedReader):
        data = tar.extractfile(member)
        assert data is not None  # a regular file always has a reader
        return data
    file.seek(member.offset_data)
    return _MemberData(file, member.size)


def iter_members(
    layer: Layer, progress: Progress = NULL_PROGRESS, stats: dict[str, int] | None = None
) -> Iterator[tuple[int, tarfile.TarInfo, tarfile.TarFile]]:
    """Yield ``(ordinal, header, tar)`` for each member of a layer, then verify it.

    The member's bytes can be read with :func:`member_data` (or
    ``tar.extractfile(header)``) until the next member is requested; then the
    header's stream positions (``offset``, ``offset_data``) are reset to 0.  Digest
    and size checks run when the layer ends; a mismatch raises
    :class:`DigestError` after the last member.  When the layer is complete,
    ``stats["uncompressed_size"]`` is set if ``stats`` is given.

    Every header is checked (:func:`~ocislim.image.tarsafe.check_member`)
    before the reader moves past it: what it declares must fit in what the
    layer can hold (its blob size when uncompressed, the most its compressed
    blob can decode to otherwise).  The real sizes of all sparse files of a
    layer together must fit in that bound too, or in :data:`SPARSE_FLOOR`
    when that is larger (a few hundred bytes of GNU tar can honestly describe
    megabytes of holes), since a sparse file becomes that many bytes wherever
    it is read densely (a flattened layer).
    """
    stream = layer.open()
    metered = MeteredStream(stream, f"layer {layer.index + 1}", layer.descriptor.size, progress)
    try:
        buffered = io.BufferedReader(_ForwardRaw(metered), _READ_BUFFER)
        try:
            tar = tarfile.open(  # noqa: SIM115 - nothing to close: the stream is ours
                fileobj=buffered, mode="r:", errorlevel=2, tarinfo=BoundedTarInfo
            )
        except tarfile.ReadError as exc:
            if "empty file" in str(exc):
                stream.finish()
                return
            raise ImageError(f"{layer.what}: not a tar stream ({exc})") from None
        ordinal = 0
        what = layer.what
        limit = max_decompressed(stream.compression, layer.descriptor.size)
        sparse_limit = max(limit, SPARSE_FLOOR)
        expanded = 0
        try:
            for member in tar:
                check_member(member, tar.offset, limit, what)
                if member.sparse is not None:  # issparse()
                    expanded += member.size
                    if expanded > sparse_limit:
                        raise ImageError(
                            f"{what}: {member.name}: sparse files declare {expanded} "
                            f"bytes, more than the layer can hold ({sparse_limit} bytes)"
                        )
                yield ordinal, member, tar
                # Stream positions mean nothing once the reader moves on, and cost
                # 60 bytes a member in a tree that keeps every header.
                member.offset = member.offset_data = 0
                ordinal += 1
        except tarfile.TarError as exc:
            raise ImageError(f"{what}: corrupt tar stream ({exc})") from None
        metered.finish()
        if stats is not None:
            stats["uncompressed_size"] = stream.uncompressed_size
    finally:
        stream.close()


def classify(name: str, what: str) -> tuple[str, str, str | None]:
    """Split a member name into ``(kind, path, whiteout_name)``.

    ``kind`` is ``"entry"``, ``"whiteout"`` (hide ``whiteout_name`` in ``path``),
    ``"opaque"`` (hide lower contents of ``path``) or ``"ignore"`` (other
    ``.wh..wh.`` metadata).
    """
    path = normalize(name, what)
    if WHITEOUT_PREFIX not in path:
        return "entry", path, None
    directory, base = posixpath.split(path)
    if not base.startswith(WHITEOUT_PREFIX):
        return "entry", path, None
    if base == OPAQUE_MARKER:
        return "opaque", directory, None
    if base == WHITEOUT_PREFIX:
        raise ImageError(f"{what}: bare whiteout {name!r} names nothing")
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return "ignore", path, None
    return "whiteout", directory, base[len(WHITEOUT_PREFIX) :]


def merge(
    image: Image,
    *,
    sink: TreeSink | None = None,
    spool: Spool | None = None,
    progress: Progress = NULL_PROGRESS,
    stage: str = "read",
) -> FileTree:
    """Merge all layers of ``image`` into a new :class:`FileTree`.

    With ``spool``, the bytes of every regular file are copied there and each
    entry's ``data.spool_offset`` says where.  Raises on the first hostile or
    malformed member; whatever the sink did up to then is the caller's to undo.
    Each layer is reported as ``stage: layer i/n digest`` (``"unpack"`` when extracting).
    """
    tree = FileTree(sink, implied_mtime())
    total = len(image.layers)
    for layer in image.layers:
        progress.stage(stage, f"layer {layer.index + 1}/{total} {layer.descriptor.digest}")
        with _tar_errors(layer):
            _merge_layer(tree, layer, spool, progress)
    return tree


@contextmanager
def _tar_errors(layer: Layer) -> Iterator[None]:
    """Turn a tar error met while reading a member's bytes into a one-line ImageError."""
    try:
        yield
    except tarfile.TarError as exc:
        raise ImageError(f"{layer.what}: corrupt tar stream ({exc})") from None


def _merge_layer(tree: FileTree, layer: Layer, spool: Spool | None, progress: Progress) -> None:
    what = f"layer {layer.index}"
    for ordinal, member, tar in iter_members(layer, progress):
        kind, path, name = classify(member.name, what)
        if kind == "whiteout":
            assert name is not None
            tree.whiteout(path, name, layer.index, what)
            continue
        if kind == "opaque":
            tree.opaque(path, layer.index, what)
            continue
        if kind == "ignore":
            continue
        data: ByteReader | None = None
        offset = None
        tee = None
        if member.isfile():
            data = member_data(tar, member)
            if spool is not None and member.issparse():  # holes in the spool, then read back
                offset = spool.append(data, sparse=True)
                data = spool.reader(offset, member.size)
            elif spool is not None:  # spooled as the tree's sink reads it: one copy
                data = tee = spool.tee(data)
        entry = tree.add(path, member, layer.index, ordinal, data, what)
        if tee is not None:
            offset = tee.finish()
        if offset is not None and entry.data is not None:
            entry.data = DataRef(layer.index, ordinal, member.size, offset)


def spool_contents(
    image: Image,
    wanted: set[tuple[int, int]],
    spool: Spool,
    progress: Progress = NULL_PROGRESS,
) -> dict[tuple[int, int], int]:
    """Second pass: copy the bytes of members ``(layer, ordinal)`` in ``wanted`` to ``spool``.

    Returns their offsets (the tree's entries are not changed).  Layers holding
    nothing wanted are not read.  Digests are verified again for the layers that are read.
    """
    offsets: dict[tuple[int, int], int] = {}
    layers_needed = {layer for layer, _ in wanted}
    for layer in image.layers:
        if layer.index not in layers_needed:
            continue
        progress.stage(
            "read", f"layer {layer.index + 1}/{len(image.layers)} {layer.descriptor.digest}"
        )
        with _tar_errors(layer):
            for ordinal, member, tar in iter_members(layer, progress):
                if (layer.index, ordinal) in wanted and member.isfile():
                    offsets[(layer.index, ordinal)] = spool.append(member_data(tar, member))
    return offsets


def spooled_data(
    spool: Spool, offsets: SpoolOffsets | None = None
) -> Callable[[DataRef], ByteReader]:
    """The ``open_data`` of :func:`~ocislim.layers.writer.write_layer` for spooled bytes.

    With ``offsets`` (from :func:`spool_contents`) a file's bytes are found by its
    ``(layer, ordinal)``; without, at the ``spool_offset`` :func:`merge` recorded.
    """
    if offsets is None:
        return lambda ref: spool.reader(ref.spool_offset or 0, ref.size)
    return lambda ref: spool.reader(offsets.get((ref.layer, ref.ordinal), 0), ref.size)
