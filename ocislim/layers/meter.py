"""Byte progress of a layer being read: compressed bytes read of the descriptor's size.

:class:`MeteredStream` sits between a :class:`~ocislim.image.source.LayerStream`
and the tar reader.  Its ``read`` runs in the reading thread, so progress is
reported from there (never from the prefetch thread), and only when the count
of compressed bytes has moved, which keeps the cost per ``read`` to a comparison.
"""

from __future__ import annotations

from typing import Protocol

from ocislim.image.source import Layer
from ocislim.progress import BYTES, Progress


class CountedStream(Protocol):
    """What :class:`MeteredStream` wraps: a reader that knows its compressed bytes read."""

    def read(self, n: int = -1) -> bytes: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...

    @property
    def compressed_read(self) -> int: ...


class MeteredStream:
    """``read`` over ``stream``, reporting ``advance(what, compressed read, total, BYTES)``.

    ``total`` is the layer's size from its descriptor.  The count may run a few
    chunks ahead of the tar reader (the stream reads ahead), never past ``total``
    (the stream verifies the size).  :meth:`finish` reports the last count.
    """

    def __init__(self, stream: CountedStream, what: str, total: int, progress: Progress) -> None:
        self._stream = stream
        self._what = what
        self._total = total
        self._progress = progress
        self._reported = -1

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        done = self._stream.compressed_read
        if done != self._reported:
            self._reported = done
            self._progress.advance(self._what, done, self._total, BYTES)
        return data

    def finish(self) -> None:
        """Read what is left (still reporting), then finish and so verify the stream."""
        while self.read(1 << 20):
            pass
        self._stream.finish()
        if self._reported != self._stream.compressed_read:
            self._reported = self._stream.compressed_read
            self._progress.advance(self._what, self._reported, self._total, BYTES)

    def close(self) -> None:
        self._stream.close()


def open_metered(layer: Layer, progress: Progress) -> MeteredStream:
    """``layer.open()`` reporting its compressed bytes read as ``layer N`` (from 1)."""
    return MeteredStream(layer.open(), f"layer {layer.index + 1}", layer.descriptor.size, progress)
