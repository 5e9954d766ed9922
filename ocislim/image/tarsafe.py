"""Bounds on tar headers, checked before the tar reader acts on them.

``tarfile`` believes every header: a size field of 2^63 makes a stream reader
skip (read and drop) that many bytes one record at a time, a negative size
moves its offset backwards, a sparse map can describe terabytes, and an
extended header is read whole into memory.  :class:`BoundedTarInfo` refuses
oversized extended headers and sparse maps while they are parsed;
:func:`check_member` checks what a parsed header declares against the bytes
that can follow it, before the reader moves past it.  Every refusal is an
:class:`ImageError` naming the member.

:class:`BoundedTarInfo` also parses the 512-byte header block faster than
``tarfile`` (one ``struct`` unpack, the unsigned checksum first, repeated field
values such as modes, owners and user names looked up instead of parsed again),
with exactly ``tarfile``'s results and errors; the repeated strings are shared,
which matters for memory when a tree holds hundreds of thousands of headers.
"""

from __future__ import annotations

import re
import struct
import tarfile
from types import MappingProxyType
from typing import TypeVar

from ocislim.errors import ImageError

# Extended headers (PAX records, GNU long names) are read whole into memory by
# tarfile; real ones (long paths, xattrs, ACLs) are far below this.
MAX_METADATA_HEADER = 1 << 20
# Data segments of one sparse file; each costs memory before any byte is read.
MAX_SPARSE_SEGMENTS = 1 << 16

_METADATA_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
_DECIMAL = re.compile(r"[0-9]+")

# The POSIX header block up to the padding: name, mode, uid, gid, size, mtime,
# chksum, typeflag, linkname, (magic, version), uname, gname, devmajor,
# devminor, prefix.
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8x32s32s8s8s155s")
_NUL = b"\0"
_BASE256 = (0o200, 0o377)
_CACHE_LIMIT = 4096
_numbers: dict[bytes, int] = {}
_strings: dict[tuple[bytes, str, str], str] = {}
_Info = TypeVar("_Info", bound="BoundedTarInfo")
_NO_PAX_RECORDS: dict[str, str] = MappingProxyType({})  # type: ignore[assignment]


def _octal(field: bytes) -> int:
    """``tarfile.nti``: a header number field (octal, or GNU base-256)."""
    if field[0] in _BASE256:
        value: int = tarfile.nti(field)  # type: ignore[attr-defined]
        return value
    end = field.find(_NUL)
    if end != -1:
        field = field[:end]
    try:
        return int(field.decode("ascii").strip() or "0", 8)
    except ValueError:  # UnicodeDecodeError included, as in tarfile
        raise tarfile.InvalidHeaderError("invalid header") from None  # type: ignore[attr-defined]


def _number(field: bytes) -> int:
    """:func:`_octal` of a field whose raw bytes repeat from header to header."""
    value = _numbers.get(field)
    if value is None:
        value = _octal(field)
        if len(_numbers) >= _CACHE_LIMIT:
            _numbers.clear()
        _numbers[field] = value
    return value


def _text(field: bytes, encoding: str, errors: str) -> str:
    """``tarfile.nts``: a NUL-terminated string field."""
    return field.split(_NUL, 1)[0].decode(encoding, errors)


def _shared_text(field: bytes, encoding: str, errors: str) -> str:
    """:func:`_text` of a repeating field (user and group names), one str per value."""
    key = (field, encoding, errors)
    value = _strings.get(key)
    if value is None:
        value = _text(field, encoding, errors)
        if len(_strings) >= _CACHE_LIMIT:
            _strings.clear()
        _strings[key] = value
    return value


def _subsequent(message: str) -> Exception:
    # SubsequentHeaderError is the one tarfile always reports as a ReadError
    # (typeshed omits that undocumented class, hence the ignore).
    error: Exception = tarfile.SubsequentHeaderError(message)  # type: ignore[attr-defined]
    return error


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses extended headers and sparse maps too large to hold in memory.

    It also turns the ValueErrors and IndexErrors tarfile lets escape from
    malformed extended headers (a GNU sparse map with a bad number, a map cut
    short by the end of the stream) into tar errors.  Headers are parsed by
    :meth:`frombuf` (see the module docstring).
    """

    __slots__ = ()

    def _apply_pax_info(self, pax_headers: dict[str, str], encoding: str, errors: str) -> None:
        super()._apply_pax_info(pax_headers, encoding, errors)  # type: ignore[misc]
        if not self.pax_headers:
            # Most members have no PAX records: one read-only empty mapping for all
            # (64 bytes each at 200,000 entries); writers build new dicts anyway.
            self.pax_headers = _NO_PAX_RECORDS

    @classmethod
    def frombuf(cls: type[_Info], buf: bytes | bytearray, encoding: str, errors: str) -> _Info:
        """``tarfile.TarInfo.frombuf``, faster: same attributes, same exceptions."""
        # Empty, short and all-zero blocks, and old GNU sparse headers (whose
        # map is in the block), take tarfile's own path.
        if len(buf) != tarfile.BLOCKSIZE or buf[156:157] == tarfile.GNUTYPE_SPARSE:
            return super().frombuf(buf, encoding, errors)
        if not buf.strip(_NUL):
            return super().frombuf(buf, encoding, errors)
        (name, mode, uid, gid, size, mtime, chk, kind, linkname, uname, gname, major, minor,
         prefix) = _HEADER.unpack_from(buf)  # fmt: skip
        chksum = _number(chk)  # values repeat: shared ints, less memory per header
        # tarfile accepts the unsigned or the signed sum (the checksum field
        # counted as spaces); the signed one only matters for bytes >= 0x80.
        if chksum != 256 + sum(buf) - sum(chk):
            signed: int = tarfile.calc_chksums(buf)[1]  # type: ignore[attr-defined]
            if chksum != signed:
                raise tarfile.InvalidHeaderError("bad checksum")  # type: ignore[attr-defined]
        obj = cls()
        obj.name = _text(name, encoding, errors)
        obj.mode = _number(mode)
        obj.uid = _number(uid)
        obj.gid = _number(gid)
        obj.size = _number(size)
        obj.mtime = _number(mtime)  # often one time for a whole layer
        obj.chksum = chksum
        obj.type = kind
        obj.linkname = _text(linkname, encoding, errors) if linkname[0] else ""
        obj.uname = _shared_text(uname, encoding, errors)
        obj.gname = _shared_text(gname, encoding, errors)
        obj.devmajor = _number(major)
        obj.devminor = _number(minor)
        # Old V7 tar: a directory is a regular file whose name ends in a slash.
        if kind == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE
        if obj.type == tarfile.DIRTYPE:
            obj.name = obj.name.rstrip("/")
        if prefix[0] and obj.type not in tarfile.GNU_TYPES:
            obj.name = _text(prefix, encoding, errors) + "/" + obj.name
        return obj

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _METADATA_TYPES and self.size > MAX_METADATA_HEADER:
            raise _subsequent(f"extended header of {self.size} bytes is too large")
        try:
            member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
            return member
        except (ValueError, IndexError) as exc:
            raise _subsequent(f"malformed header ({exc})") from None

    def _proc_sparse(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        """Old GNU sparse (type ``S``): the map continues in extension blocks of 21 entries."""
        structs, extended, realsize = self._sparse_structs  # type: ignore[attr-defined]
        del self._sparse_structs  # type: ignore[attr-defined]
        while extended:
            if len(structs) > MAX_SPARSE_SEGMENTS:
                raise _subsequent(f"sparse map of more than {MAX_SPARSE_SEGMENTS} segments")
            buf = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
            if len(buf) < tarfile.BLOCKSIZE:
                raise ValueError("sparse map cut short")
            for pos in range(0, 21 * 24, 24):
                offset = tarfile.nti(buf[pos : pos + 12])  # type: ignore[attr-defined]
                numbytes = tarfile.nti(buf[pos + 12 : pos + 24])  # type: ignore[attr-defined]
                if offset and numbytes:
                    structs.append((offset, numbytes))
            extended = bool(buf[504])
        setattr(self, "sparse", structs)  # noqa: B010
        self.offset_data = tarfile_.fileobj.tell()
        tarfile_.offset = self.offset_data + self._block(self.size)  # type: ignore[attr-defined]
        self.size = realsize
        return self

    def _proc_gnusparse_10(
        self, next: tarfile.TarInfo, pax_headers: dict[str, str], tarfile_: tarfile.TarFile
    ) -> None:
        """GNU sparse 1.0: the map is at the start of the member's data, one number a line."""
        buf = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
        count, buf = buf.split(b"\n", 1)
        if not _DECIMAL.fullmatch(count.decode("ascii", "replace")):
            raise ValueError(f"bad sparse map size {count[:20]!r}")
        fields = int(count)
        if fields > MAX_SPARSE_SEGMENTS:
            raise _subsequent(f"sparse map of {fields} segments is too large")
        numbers: list[int] = []
        while len(numbers) < fields * 2:
            if b"\n" not in buf:
                more = tarfile_.fileobj.read(tarfile.BLOCKSIZE)
                if not more or len(buf) > 64:
                    raise ValueError("sparse map cut short")
                buf += more
            number, buf = buf.split(b"\n", 1)
            numbers.append(int(number))
        next.offset_data = tarfile_.fileobj.tell()
        setattr(next, "sparse", list(zip(numbers[::2], numbers[1::2], strict=False)))  # noqa: B010


def stored_bytes(member: tarfile.TarInfo, next_offset: int) -> int:
    """Bytes the member occupies after its headers (block-rounded): what the reader skips."""
    return next_offset - member.offset_data


def check_member(
    member: tarfile.TarInfo,
    next_offset: int,
    limit: int | None,
    what: str,
    holder: str = "the layer",
) -> None:
    """Refuse a header whose sizes are negative, inconsistent or larger than can follow.

    ``next_offset`` is where the reader will look for the next header (the
    tar's ``offset`` after parsing ``member``), ``limit`` the most bytes the
    whole tar stream can hold (``None``: unknown; ``holder`` names the stream in
    the message).  Call it before the reader
    moves on.  A link, directory, device or FIFO carries no data (POSIX), so
    a size it declares is dropped rather than followed.
    """
    name = member.name
    if member.size < 0:
        raise ImageError(f"{what}: {name}: negative size {member.size}")
    declared = member.pax_headers.get("size")
    if declared is not None and not _DECIMAL.fullmatch(declared):
        raise ImageError(f"{what}: {name}: malformed PAX size {declared[:40]!r}")
    if next_offset < member.offset_data:
        raise ImageError(f"{what}: {name}: inconsistent size {member.size}")
    if limit is not None and next_offset > limit:
        raise ImageError(
            f"{what}: {name}: declares {member.size} bytes, more than {holder} can hold "
            f"({limit} bytes)"
        )
    if member.issparse():
        _check_sparse(member, stored_bytes(member, next_offset), what)
    elif not member.isreg() and member.type in tarfile.SUPPORTED_TYPES:
        member.size = 0


def _check_sparse(member: tarfile.TarInfo, stored: int, what: str) -> None:
    """A sparse map must be ordered, inside the real size, and no larger than the data."""
    # Unused slots of an old-GNU map are (0, 0); they describe nothing.
    # typeshed types ``sparse`` as bytes; tarfile holds a list of (offset, length).
    found: list[tuple[int, int]] = getattr(member, "sparse", None) or []
    segments = [(o, n) for o, n in found if n]
    setattr(member, "sparse", segments)  # noqa: B010
    if len(segments) > MAX_SPARSE_SEGMENTS:
        raise ImageError(f"{what}: {member.name}: sparse map of {len(segments)} segments")
    end = 0
    total = 0
    for offset, length in segments:
        if offset < end or length < 0 or offset + length > member.size:
            raise ImageError(f"{what}: {member.name}: inconsistent sparse map")
        end = offset + length
        total += length
    if total > stored:
        raise ImageError(
            f"{what}: {member.name}: sparse map names {total} bytes of data but {stored} are stored"
        )
