"""An append-only scratch file holding file contents copied out of layer streams.

Compressed layers cannot be read at random, so bytes that must be written
later in a different order are copied here once and read back with ``pread``.
The file is unnamed (``TemporaryFile``): nothing is left behind after a crash.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ocislim.image.store import RangeReader
from ocislim.image.streams import ByteReader


class Spool:
    """Append streams, get offsets back, read them later. Close to free the space."""

    def __init__(self, directory: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed in close()
        self._size = 0

    def append(self, data: ByteReader) -> int:
        """Copy ``data`` to the end of the spool; return the offset it starts at."""
        offset = self._size
        self._file.seek(offset)
        shutil.copyfileobj(data, self._file, 1 << 20)
        self._size = self._file.tell()
        return offset

    def reader(self, offset: int, size: int) -> RangeReader:
        self._file.flush()
        return RangeReader(self._file.fileno(), offset, size)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
