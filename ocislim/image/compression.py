"""Blob compression: detection from bytes, streaming decompression, compressors.

gzip uses ISA-L (PyPI ``isal``) when present and zlib otherwise; zstd uses the
``zstandard`` package, multi-threaded when compressing.  Compression is always
detected from the first bytes of a blob, never trusted from a media type.
Compressed output is deterministic: no names or timestamps in gzip headers.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any, BinaryIO, Literal

import zstandard

from ocislim.errors import CompressionError

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


class _PeekReader:
    """Wraps a stream so its first bytes can be inspected and then read again."""

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
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


class _DecompressingReader:
    """``read(n)`` over a multi-member/multi-frame compressed stream.

    Raises :class:`CompressionError` when the input ends inside a member or frame,
    or is corrupt.  Zero padding after the last member is tolerated.
    """

    def __init__(self, raw: BinaryIO, what: str, algorithm: str) -> None:
        self._raw = raw
        self._what = what
        self._algorithm = algorithm
        self._new = _DECODERS[algorithm]
        self._dec: Any = self._new()
        self._buffer = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def _decompress(self, chunk: bytes) -> None:
        try:
            self._buffer += self._dec.decompress(chunk)
            while self._dec.eof and self._dec.unused_data:
                rest = self._dec.unused_data
                if not rest.strip(b"\0"):
                    return
                self._dec = self._new()
                self._buffer += self._dec.decompress(rest)
        except _DECODE_ERRORS as exc:
            raise CompressionError(
                f"{self._what}: corrupt {self._algorithm} data ({exc})"
            ) from None

    def _fill(self) -> None:
        chunk = self._raw.read(_CHUNK)
        if not chunk:
            if not self._dec.eof:
                raise CompressionError(f"{self._what}: truncated {self._algorithm} stream")
            self._eof = True
            return
        if self._dec.eof:
            if not chunk.strip(b"\0"):
                return
            self._dec = self._new()
        self._decompress(chunk)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            while not self._eof:
                self._fill()
            data, self._buffer = bytes(self._buffer), bytearray()
            return data
        while len(self._buffer) < n and not self._eof:
            self._fill()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def close(self) -> None:
        self._raw.close()


def open_decompressed(raw: BinaryIO, what: str) -> tuple[BinaryIO, Algorithm]:
    """Wrap ``raw`` in a decompressor chosen from its first bytes.

    Returns the decompressed stream and the detected algorithm.  Truncated or
    corrupt input raises :class:`CompressionError` naming ``what`` while reading.
    """
    head = raw.read(4)
    algorithm = detect(head)
    source = _PeekReader(raw, head)
    if algorithm == "none":
        return source, algorithm  # type: ignore[return-value]
    return _DecompressingReader(source, what, algorithm), algorithm  # type: ignore[return-value]  # type: ignore[return-value]


def _isal_level(level: int) -> int:
    # ISA-L has levels 0-3; map zlib's 1-9 onto them so --level keeps its meaning.
    return 0 if level <= 1 else 1 if level <= 4 else 2 if level <= 7 else 3


class _Compressor:
    """A write-only stream compressing into ``out``; :meth:`close` flushes, never closes ``out``."""

    def __init__(self, out: BinaryIO, algorithm: str, level: int) -> None:
        self.algorithm = algorithm
        self._out = out
        self._inner: BinaryIO | None
        if algorithm == "gzip":
            if _igzip is not None:
                self._inner = _igzip.GzipFile(  # type: ignore[assignment]
                    fileobj=out, mode="wb", compresslevel=_isal_level(level), mtime=0
                )
            else:
                self._inner = gzip.GzipFile(  # type: ignore[assignment]
                    filename="", fileobj=out, mode="wb", compresslevel=level, mtime=0
                )
        elif algorithm == "zstd":
            params = zstandard.ZstdCompressionParameters.from_level(
                level, threads=-1, write_checksum=True
            )
            self._inner = zstandard.ZstdCompressor(compression_params=params).stream_writer(  # type: ignore[assignment]
                out, closefd=False
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


def open_compressor(out: BinaryIO, algorithm: str, level: int | None = None) -> _Compressor:
    """A writer compressing into ``out`` with ``algorithm`` at ``level`` (or its default)."""
    return _Compressor(out, algorithm, DEFAULT_LEVEL[algorithm] if level is None else level)
