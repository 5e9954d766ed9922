"""Content digests: parsing, and streams that verify what they read.

A digest string is untrusted until :func:`parse_digest` has accepted it; only a
parsed :class:`Digest` may be turned into a file name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ocislim.errors import DigestError
from ocislim.image.streams import ByteReader, ByteWriter

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated ``algorithm:hex`` digest."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def blob_name(self) -> str:
        """The path of this blob inside an OCI layout (``blobs/ALG/HEX``)."""
        return f"blobs/{self.algorithm}/{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def parse_digest(value: object, what: str = "digest") -> Digest:
    """Parse and validate a digest; raise :class:`DigestError` naming ``what`` if it is unusable.

    Only known algorithms with a hex part of the exact length are accepted, so the
    result is always safe to use as a file name.
    """
    if not isinstance(value, str) or ":" not in value:
        raise DigestError(f"{what}: malformed digest {value!r}")
    algorithm, _, hex_part = value.partition(":")
    expected = _HEX_LENGTH.get(algorithm)
    if expected is None:
        raise DigestError(f"{what}: unsupported digest algorithm {algorithm!r} in {value!r}")
    if len(hex_part) != expected or not _HEX.fullmatch(hex_part):
        raise DigestError(f"{what}: malformed hex part in digest {value!r}")
    return Digest(algorithm, hex_part)


def sha256_of(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


class VerifyingReader:
    """A read-only stream that hashes and counts what passes through it.

    When the underlying stream ends (or :meth:`finish` is called, which reads
    the rest), the size and digest are compared with the expected ones and a
    :class:`DigestError` naming ``what`` is raised on mismatch.  Either
    expectation may be ``None`` (not checked).  Reading past ``expected_size``
    is an error too, so a lying descriptor cannot make us read forever.
    """

    def __init__(
        self,
        raw: ByteReader,
        what: str,
        expected_digest: Digest | None = None,
        expected_size: int | None = None,
        algorithm: str = "sha256",
    ) -> None:
        self._raw = raw
        self.what = what
        self._expected_digest = expected_digest
        self._expected_size = expected_size
        self._hash = hashlib.new(expected_digest.algorithm if expected_digest else algorithm)
        self.count = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if n is None or n < 0:
            chunks = []
            while True:
                chunk = self.read(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        data = self._raw.read(n)
        if data:
            self.count += len(data)
            self._hash.update(data)
            if self._expected_size is not None and self.count > self._expected_size:
                raise DigestError(
                    f"{self.what}: size mismatch: more than {self._expected_size} bytes"
                )
        elif n:
            self._verify()
        return data

    def finish(self) -> Digest:
        """Read whatever is left, verify, and return the digest of everything read."""
        while self.read(1 << 20):
            pass
        return self.digest

    @property
    def digest(self) -> Digest:
        return Digest(self._hash.name, self._hash.hexdigest())

    def _verify(self) -> None:
        self._done = True
        if self._expected_size is not None and self.count != self._expected_size:
            raise DigestError(
                f"{self.what}: size mismatch: expected {self._expected_size} bytes, "
                f"got {self.count}"
            )
        if self._expected_digest is not None and self.digest != self._expected_digest:
            raise DigestError(
                f"{self.what}: digest mismatch: expected {self._expected_digest}, got {self.digest}"
            )

    def close(self) -> None:
        self._raw.close()


class HashingWriter:
    """A write-only stream that counts and hashes bytes on their way to ``target``."""

    def __init__(self, target: ByteWriter) -> None:
        self._target = target
        self._hash = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self.count += len(data)
        self._target.write(data)
        return len(data)

    @property
    def digest(self) -> Digest:
        return Digest("sha256", self._hash.hexdigest())
