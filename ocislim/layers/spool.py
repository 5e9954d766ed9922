"""An append-only scratch file holding file contents copied out of layer streams.

Compressed layers cannot be read at random, so bytes that must be written
later in a different order are copied here once and read back with ``pread``.
They are copied either whole (:meth:`Spool.append`) or as another reader reads
them (:meth:`Spool.tee`), so one pass over a layer can both extract a file and
spool it.  The file is unnamed (``TemporaryFile``): nothing is left behind
after a crash.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ocislim.image.store import RangeReader
from ocislim.image.streams import ByteReader

_HOLE = 64 << 10  # zero runs at least this long become holes


class Spool:
    """Append streams, get offsets back, read them later. Close to free the space."""

    def __init__(self, directory: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()
        self._size = 0

    def append(self, data: ByteReader, sparse: bool = False) -> int:
        """Copy ``data`` to the end of the spool; return the offset it starts at.

        ``sparse``: the bytes of a sparse file; its zero runs become holes in
        the spool, so it costs the disk what its data costs.
        """
        offset = self._size
        self._file.seek(offset)
        if not sparse:
            shutil.copyfileobj(data, self._file, 1 << 20)
        else:
            zeros = bytes(_HOLE)
            while chunk := data.read(1 << 20):
                view = memoryview(chunk)
                for start in range(0, len(view), _HOLE):
                    piece = view[start : start + _HOLE]
                    if piece == zeros[: len(piece)]:
                        self._file.seek(len(piece), 1)
                    else:
                        self._file.write(piece)
            self._file.truncate(self._file.tell())
        self._size = self._file.tell()
        return offset

    def tee(self, data: ByteReader) -> Tee:
        """A reader of ``data`` that appends all it returns to the spool.

        Until its :meth:`Tee.finish`, nothing else may be appended.
        """
        self._file.seek(self._size)
        return Tee(self, data)

    def _teed(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._size += len(chunk)

    def reader(self, offset: int, size: int) -> RangeReader:
        self._file.flush()
        return RangeReader(self._file.fileno(), offset, size)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Tee:
    """What :meth:`Spool.tee` returns: reads pass through and are spooled."""

    __slots__ = ("_data", "_spool", "offset")

    def __init__(self, spool: Spool, data: ByteReader) -> None:
        self._spool = spool
        self._data = data
        self.offset = spool._size  # where these bytes start in the spool

    def read(self, n: int = -1, /) -> bytes:
        chunk = self._data.read(n)
        if chunk:
            self._spool._teed(chunk)
        return chunk

    def close(self) -> None:
        self._data.close()

    def finish(self) -> int:
        """Spool what was not read yet; return the offset the bytes start at. Idempotent."""
        while self.read(1 << 20):
            pass
        return self.offset
