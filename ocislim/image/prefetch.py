"""Read a stream ahead in a background thread.

Decompression and hashing release the GIL, so running them in a second thread
overlaps them with tar parsing and file writing in the first.  The queue is
bounded, so memory stays at ``depth`` chunks whatever the stream's size.
"""

from __future__ import annotations

import contextlib
import queue
import threading

from ocislim.image.streams import ByteReader

_CHUNK = 1 << 20


class PrefetchReader:
    """``read(n)`` over ``source``, which is read in ``chunk``-sized pieces by a thread.

    An exception raised by ``source`` is re-raised by the ``read`` that reaches
    it.  :meth:`close` stops the thread (it never outlives the reader).
    """

    def __init__(self, source: ByteReader, chunk: int = _CHUNK, depth: int = 8) -> None:
        self._source = source
        self._chunk = chunk
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._buffer = b""
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._run, name="ocislim-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._source.read(self._chunk)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next(self) -> bool:
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
            return False
        self._buffer, self._pos = item, 0
        return True

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buffer[self._pos :]]
            self._buffer, self._pos = b"", 0
            while not self._eof and self._next():
                parts.append(self._buffer)
                self._buffer = b""
            return b"".join(parts)
        if self._pos >= len(self._buffer) and (self._eof or not self._next()):
            return b""
        end = self._pos + n
        data = self._buffer[self._pos : end]
        self._pos = end
        if len(data) < n and not self._eof:
            rest = [data]
            got = len(data)
            while got < n and self._next():
                piece = self._buffer[: n - got]
                self._pos = len(piece)
                rest.append(piece)
                got += len(piece)
            data = b"".join(rest)
        return data

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
            self._thread.join(timeout=0.05)
