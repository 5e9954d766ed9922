"""Bounds on tar headers, checked before the tar reader acts on them.

``tarfile`` believes every header: a size field of 2^63 makes a stream reader
skip (read and drop) that many bytes one record at a time, a negative size
moves its offset backwards, a sparse map can describe terabytes, and an
extended header is read whole into memory.  :class:`BoundedTarInfo` refuses
oversized extended headers and sparse maps while they are parsed;
:func:`check_member` checks what a parsed header declares against the bytes
that can follow it, before the reader moves past it.  Every refusal is an
:class:`ImageError` naming the member.
"""

from __future__ import annotations

import re
import tarfile

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


def _subsequent(message: str) -> Exception:
    # SubsequentHeaderError is the one tarfile always reports as a ReadError
    # (typeshed omits that undocumented class, hence the ignore).
    error: Exception = tarfile.SubsequentHeaderError(message)  # type: ignore[attr-defined]
    return error


class BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses extended headers and sparse maps too large to hold in memory.

    It also turns the ValueErrors and IndexErrors tarfile lets escape from
    malformed extended headers (a GNU sparse map with a bad number, a map cut
    short by the end of the stream) into tar errors.
    """

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
