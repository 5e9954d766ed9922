"""Tar headers written byte by byte, for archives no honest writer produces.

``header()`` builds one 512-byte ustar/GNU header with any size field (octal,
base-256 positive or negative, or raw bytes); ``pax()`` a PAX extended header
with arbitrary records; ``gnu_sparse()`` an old-GNU sparse header (type ``S``)
with its map in the header.  ``archive()`` joins blocks and ends the archive.
No ocislim code is involved.
"""

from __future__ import annotations

import tarfile

BLOCK = tarfile.BLOCKSIZE


def base256(value: int, width: int = 12) -> bytes:
    """A GNU base-256 number field (negative numbers in two's complement)."""
    if value >= 0:
        return b"\x80" + value.to_bytes(width - 1, "big")
    return (value % (1 << (8 * width))).to_bytes(width, "big")  # 0xff... prefix


def octal(value: int, width: int = 12) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)


def header(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    size: int | bytes = 0,
    *,
    linkname: str = "",
    mode: int = 0o644,
    magic: bytes = b"ustar\x0000",
    extra: dict[int, bytes] | None = None,
) -> bytes:
    """One header block; ``size`` is an int (octal when it fits, else base-256) or raw bytes."""
    block = bytearray(BLOCK)
    block[0:100] = name.encode().ljust(100, b"\0")[:100]
    block[100:108] = octal(mode, 8)
    block[108:116] = octal(0, 8)
    block[116:124] = octal(0, 8)
    if isinstance(size, bytes):
        field = size
    elif 0 <= size < 8**11:
        field = octal(size)
    else:
        field = base256(size)
    block[124:136] = field
    block[136:148] = octal(1_600_000_000)
    block[156:157] = kind
    block[157:257] = linkname.encode().ljust(100, b"\0")[:100]
    block[257:265] = magic
    for offset, value in (extra or {}).items():
        block[offset : offset + len(value)] = value
    _checksum(block)
    return bytes(block)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def pax(records: dict[str, str], name: str = "././@PaxHeader") -> bytes:
    """A PAX extended header (type ``x``) holding ``records``, exactly as given."""
    body = b""
    for key, value in records.items():
        line = f" {key}={value}\n".encode()
        length = len(line)
        while len(str(length)) + len(line) != length:
            length = len(str(length)) + len(line)
        body += str(length).encode() + line
    return header(name, tarfile.XHDTYPE, len(body)) + pad(body)


def gnu_sparse(
    name: str,
    realsize: int,
    segments: list[tuple[int, int]],
    data: bytes,
    extended: bool = False,
) -> bytes:
    """An old-GNU sparse member: type ``S``, up to 4 map entries in the header, then ``data``.

    ``extended`` sets the flag saying more map blocks follow (none do).
    """
    assert len(segments) <= 4
    extra: dict[int, bytes] = {482: b"\x01" if extended else b"\0"}
    for i, (offset, length) in enumerate(segments):
        at = 386 + 24 * i
        extra[at] = _gnu_number(offset)
        extra[at + 12] = _gnu_number(length)
    extra[483] = _gnu_number(realsize)
    block = header(name, tarfile.GNUTYPE_SPARSE, len(data), magic=b"ustar  \0", extra=extra)
    return block + pad(data)


def _gnu_number(value: int) -> bytes:
    return octal(value) if value < 8**11 else base256(value)


def archive(*blocks: bytes) -> bytes:
    """The members, then the two zero blocks that end an archive, padded to a record."""
    data = b"".join(blocks) + bytes(2 * BLOCK)
    return data + bytes(-len(data) % tarfile.RECORDSIZE)


def regular(name: str, data: bytes) -> bytes:
    return header(name, tarfile.REGTYPE, len(data)) + pad(data)


def pax_sparse(name: str, realsize: int, segments: list[tuple[int, int]], data: bytes) -> bytes:
    """A GNU sparse 1.0 member: PAX records, then the map and ``data`` as the member's bytes."""
    numbers = [str(len(segments))] + [str(n) for seg in segments for n in seg]
    body = pad(("\n".join(numbers) + "\n").encode()) + data
    records = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(realsize),
    }
    return pax(records) + header(f"GNUSparseFile.0/{name}", size=len(body)) + pad(body)
