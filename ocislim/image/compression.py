"""Blob compression: detection from bytes, streaming decompression, compressors.

gzip uses ISA-L (PyPI ``isal``) when present and zlib otherwise; zstd uses the
``zstandard`` package, multi-threaded when compressing.  Compression is always
detected from the first bytes of a blob, never trusted from a media type.
Compressed output is deterministic: no names or timestamps in gzip headers.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Literal, Protocol

import zstandard

from ocislim.errors import CompressionError
from ocislim.image.streams import ByteReader, ByteWriter

_igzip: ModuleType | None
_isal_zlib: ModuleType | None
try:  # ISA-L is much faster than zlib; zlib stays as the fallback.
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the platform's wheels
    _igzip = None
    _isal_zlib = None

Algorithm = Literal["gzip", "zstd", "none"]
ALGORITHMS: tuple[str, ...] = ("gzip", "zstd", "none")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_LEVEL = {"gzip": 6, "zstd": 3, "none": 0}
_CHUNK = 1 << 20


def detect(head: bytes) -> Algorithm:
    """The compression of a stream whose first bytes are ``head``."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


# The most output one byte of input can decode to: deflate codes a 258-byte match
# in 2 bits at best; a zstd RLE block (3-byte header, 1 byte) decodes to 128 KiB.
_MAX_RATIO = {"none": 1, "gzip": 1032, "zstd": 32768}
_RATIO_SLACK = 64 << 10  # headers and tiny blobs (an empty tar is 10 KiB of zeros)


def max_decompressed(algorithm: str, size: int) -> int:
    """The most bytes a blob of ``size`` bytes compressed with ``algorithm`` can decode to.

    Exact for ``none``; a hard format bound otherwise, so a size field larger
    than this cannot be honest, whatever the blob holds.
    """
    if algorithm == "none":
        return size
    return size * _MAX_RATIO[algorithm] + _RATIO_SLACK


class _PeekReader:
    """Wraps a stream so its first bytes can be inspected and then read again."""

    def __init__(self, raw: ByteReader, head: bytes) -> None:
        self._raw = raw
        self._head = head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._raw.read(n - len(data))
            return data
        return self._raw.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


def _gzip_decoder() -> object:
    zlib_mod = _isal_zlib if _isal_zlib is not None else zlib
    return zlib_mod.decompressobj(16 + zlib.MAX_WBITS)  # 16+: expect a gzip wrapper


def _zstd_decoder() -> object:
    return zstandard.ZstdDecompressor().decompressobj()


_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    zlib.error,
    zstandard.ZstdError,
    OSError,
    ValueError,
)
if _isal_zlib is not None:
    _DECODE_ERRORS += (_isal_zlib.error,)

_DECODERS = {"gzip": _gzip_decoder, "zstd": _zstd_decoder}

# Most bytes one decoding step may produce.  Bounding every step (not only each
# read) is what keeps memory flat on a layer that compresses 1000:1 or more.
_STEP_OUTPUT = 1 << 20
_ZSTD_BLOCK_OUTPUT = 128 << 10  # RFC 8878: a block never decodes to more than this
_ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)


class _ExactReader:
    """Reads of exactly ``n`` bytes (fewer only at the end), in large reads of ``raw``."""

    def __init__(self, raw: ByteReader) -> None:
        self._raw = raw
        self._buffer = bytearray()

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self._raw.read(max(_CHUNK, n - len(self._buffer)))
            if not chunk:
                break
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


def _zstd_pieces(raw: ByteReader, what: str) -> Iterator[bytes]:
    """Cut a zstd stream at block boundaries into pieces that decode to about 1 MiB at most.

    ``zstandard``'s decompressobj cannot limit its output, so its input is
    limited instead: whole blocks, each of which decodes to at most 128 KiB.
    Walking the frame structure also tells a stream that ends inside a frame
    (:class:`CompressionError`) from one that ends between frames.  Skippable
    frames are dropped; zero padding after the last frame is tolerated.
    """
    source = _ExactReader(raw)
    piece = bytearray()
    budget = 0

    def take(n: int) -> bytes:
        data = source.read(n)
        if len(data) < n:
            raise CompressionError(f"{what}: truncated zstd stream")
        return data

    while magic := source.read(4):
        if not magic.strip(b"\0"):
            while rest := source.read(_CHUNK):
                if rest.strip(b"\0"):
                    raise CompressionError(f"{what}: corrupt zstd data (data after padding)")
            break
        if len(magic) == 4 and int.from_bytes(magic, "little") in _ZSTD_SKIPPABLE:
            skip = int.from_bytes(take(4), "little")
            while skip:
                skip -= len(take(min(skip, _CHUNK)))
            continue
        if magic != ZSTD_MAGIC:
            raise CompressionError(f"{what}: corrupt zstd data (no frame at a frame boundary)")
        descriptor = take(1)[0]
        single_segment = descriptor >> 5 & 1
        header_size = (
            (0 if single_segment else 1)  # window descriptor
            + (0, 1, 2, 4)[descriptor & 3]  # dictionary id
            + (single_segment, 2, 4, 8)[descriptor >> 6]  # frame content size
        )
        piece += magic + bytes([descriptor]) + take(header_size)
        last = False
        while not last:
            head = take(3)
            value = int.from_bytes(head, "little")
            last, kind, size = bool(value & 1), value >> 1 & 3, value >> 3
            piece += head + take(1 if kind == 1 else size)  # an RLE block stores one byte
            budget += size if kind < 2 else _ZSTD_BLOCK_OUTPUT
            if budget >= _STEP_OUTPUT or len(piece) >= _CHUNK:
                yield bytes(piece)
                piece.clear()
                budget = 0
        if descriptor & 4:
            piece += take(4)  # content checksum
    if piece:
        yield bytes(piece)


class _DecompressingReader:
    """``read(n)`` over a multi-member/multi-frame compressed stream.

    Memory is bounded whatever the compression ratio: each decoding step yields
    at most about :data:`_STEP_OUTPUT` bytes.  Raises :class:`CompressionError`
    when the input ends inside a member or frame, or is corrupt.  Zero padding
    after the last member is tolerated.
    """

    def __init__(self, raw: ByteReader, what: str, algorithm: str) -> None:
        self._raw = raw
        self._what = what
        self._algorithm = algorithm
        self._new = _DECODERS[algorithm]
        self._dec: Any = self._new()
        self._pieces = _zstd_pieces(raw, what) if algorithm == "zstd" else None
        self._pending = b""  # compressed bytes read but not yet decoded
        self._input_done = False
        self._buffer = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def _next_input(self) -> bytes:
        if self._pieces is not None:
            return next(self._pieces, b"")
        return self._raw.read(_CHUNK)

    def _decode(self, data: bytes) -> bytes:
        try:
            out: bytes
            if self._pieces is not None:
                out = self._dec.decompress(data)  # bounded by the piece it is given
            else:
                out = self._dec.decompress(data, _STEP_OUTPUT)
            return out
        except _DECODE_ERRORS as exc:
            raise CompressionError(
                f"{self._what}: corrupt {self._algorithm} data ({exc})"
            ) from None

    def _step(self) -> None:
        """Decode one bounded step into the buffer, or notice the end of the stream."""
        if not self._pending and not self._input_done:
            self._pending = self._next_input()
            self._input_done = not self._pending
        if self._dec.eof:  # between members: more data, zero padding, or the end
            if not self._pending.strip(b"\0"):
                self._pending = b""
                self._eof = self._input_done
                return
            self._dec = self._new()
        data, self._pending = self._pending, b""
        out = self._decode(data)
        self._buffer += out
        self._pending = self._dec.unused_data if self._dec.eof else self._dec.unconsumed_tail
        if not out and not data and not self._dec.eof:
            raise CompressionError(f"{self._what}: truncated {self._algorithm} stream")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            while not self._eof:
                self._step()
            data, self._buffer = bytes(self._buffer), bytearray()
            return data
        while len(self._buffer) < n and not self._eof:
            self._step()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def close(self) -> None:
        self._raw.close()


def open_decompressed(raw: ByteReader, what: str) -> tuple[ByteReader, Algorithm]:
    """Wrap ``raw`` in a decompressor chosen from its first bytes.

    Returns the decompressed stream and the detected algorithm.  Truncated or
    corrupt input raises :class:`CompressionError` naming ``what`` while reading.
    """
    head = raw.read(4)
    algorithm = detect(head)
    source = _PeekReader(raw, head)
    if algorithm == "none":
        return source, algorithm
    return _DecompressingReader(source, what, algorithm), algorithm


def _isal_level(level: int) -> int:
    # ISA-L has levels 0-3; map zlib's 1-9 onto them so --level keeps its meaning.
    return 0 if level <= 1 else 1 if level <= 4 else 2 if level <= 7 else 3


class _ClosingWriter(ByteWriter, Protocol):
    def close(self) -> None: ...


class _Compressor:
    """A write-only stream compressing into ``out``; :meth:`close` flushes, never closes ``out``."""

    def __init__(self, out: ByteWriter, algorithm: str, level: int) -> None:
        self.algorithm = algorithm
        self._out = out
        self._inner: _ClosingWriter | None
        if algorithm == "gzip":
            if _igzip is not None:
                self._inner = _igzip.GzipFile(
                    fileobj=out, mode="wb", compresslevel=_isal_level(level), mtime=0
                )
            else:
                # The stub also wants flush(), which only GzipFile.flush() calls; never used.
                self._inner = gzip.GzipFile(  # type: ignore[call-overload]
                    filename="", fileobj=out, mode="wb", compresslevel=level, mtime=0
                )
        elif algorithm == "zstd":
            params = zstandard.ZstdCompressionParameters.from_level(
                level, threads=-1, write_checksum=True
            )
            self._inner = zstandard.ZstdCompressor(compression_params=params).stream_writer(
                out,  # type: ignore[arg-type]  # the stub wants IO[bytes]; only write() is used
                closefd=False,
            )
        elif algorithm == "none":
            self._inner = None
        else:
            raise ValueError(f"unknown compression {algorithm!r}")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._inner is None:
            return self._out.write(data)
        return self._inner.write(data)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None
            self.algorithm = "none"


def open_compressor(out: ByteWriter, algorithm: str, level: int | None = None) -> _Compressor:
    """A writer compressing into ``out`` with ``algorithm`` at ``level`` (or its default)."""
    return _Compressor(out, algorithm, DEFAULT_LEVEL[algorithm] if level is None else level)
