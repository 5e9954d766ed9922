"""Read-only access to the files of an image archive or layout directory.

A store maps names (``index.json``, ``blobs/sha256/HEX``, ``manifest.json``,
``<id>/layer.tar``) to byte ranges.  An archive that needs decoding first
(gzip, zstd) or that arrives as a stream (stdin, a FIFO) is spooled once into
an anonymous scratch file; the source itself is only ever read.  Names coming
from inside an archive are hostile: :func:`clean_name` rejects absolute paths
and ``..`` before any file system access, and a directory store never follows
a link out of its root.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ocislim import scratch
from ocislim.errors import (
    BlobNotFoundError,
    ImageError,
    InputNotFoundError,
    OutputError,
    UsageError,
)
from ocislim.image.compression import detect, open_decompressed
from ocislim.image.digest import Digest
from ocislim.image.streams import ByteReader
from ocislim.image.tarsafe import BoundedTarInfo, check_member

_MAX_LINK_DEPTH = 16
_SPOOL_CHUNK = 1 << 20
# Compressions an archive may come in that ocislim does not decode: named in the error.
_UNSUPPORTED = ((b"\xfd7zXZ\x00", "xz"), (b"BZh", "bzip2"))


def clean_name(name: str, what: str) -> str:
    """Normalise a store-relative name; refuse one that is absolute or climbs out."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ImageError(f"{what}: invalid file name {name!r}")
    if name.startswith("/"):
        raise ImageError(f"{what}: absolute file name {name!r}")
    cleaned = posixpath.normpath(name)
    if cleaned == ".." or cleaned.startswith("../") or cleaned == ".":
        raise ImageError(f"{what}: file name {name!r} leaves the archive")
    return cleaned


class BlobStore(Protocol):
    description: str

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def open(self, name: str) -> BinaryIO: ...

    def close(self) -> None: ...


class RangeReader:
    """Sequential reads of ``size`` bytes at ``offset`` of a shared descriptor (pread).

    Never moves the descriptor's own offset, so many readers can share it.
    Reading past the end of the file before ``size`` bytes is an :class:`ImageError`.
    """

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd = fd
        self._pos = offset
        self._end = offset + size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        if n is None or n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self._fd, min(n, 1 << 22), self._pos)
        if not data:
            raise ImageError("archive ended early (truncated file?)")
        self._pos += len(data)
        return data

    def close(self) -> None:
        return None

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PreadFile(io.RawIOBase):
    """A seekable read-only file over a shared descriptor (pread: its offset never moves)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._fd, len(buffer), self._pos)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += os.fstat(self._fd).st_size
        self._pos = max(0, offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class TarStore:
    """Members of an uncompressed tar archive, read in place without extraction.

    ``fd`` (owned by the store from then on, closed by :meth:`close`) is the
    archive when it is not ``path`` itself: a spooled copy of stdin or of a
    compressed archive.  ``path`` then only names the archive in messages.
    """

    def __init__(self, path: Path, fd: int | None = None, compression: str = "none") -> None:
        self.description = str(path)
        self.compression = compression  # of the archive file itself (spooled when not none)
        self._fd = _open_input(path) if fd is None else fd
        self._members: dict[str, tuple[int, int]] = {}
        links: dict[str, str] = {}
        limit = os.fstat(self._fd).st_size
        try:
            with (
                io.BufferedReader(_PreadFile(self._fd), 1 << 16) as fh,
                tarfile.open(fileobj=fh, mode="r:", tarinfo=BoundedTarInfo) as tar,
            ):
                for member in tar:
                    # Before the reader seeks past it: a size that is negative or runs
                    # past the end would move it backwards or drop what follows.
                    check_member(member, tar.offset, limit, str(path), "the archive")
                    if member.issparse():
                        raise ImageError(f"{path}: {member.name}: sparse member in an image")
                    try:
                        name = clean_name(member.name, str(path))
                    except ImageError:
                        continue  # never addressable: no valid name can reach it
                    if member.isfile():
                        self._members[name] = (member.offset_data, member.size)
                    elif member.islnk():
                        links[name] = clean_name(member.linkname, str(path))
                    elif member.issym():
                        target = posixpath.join(posixpath.dirname(name), member.linkname)
                        links[name] = clean_name(target, str(path))
        except (tarfile.TarError, EOFError, OSError) as exc:
            os.close(self._fd)
            raise ImageError(f"{path}: not a readable tar archive ({exc})") from None
        except BaseException:
            os.close(self._fd)
            raise
        for name in links:
            target = name
            for _ in range(_MAX_LINK_DEPTH):
                target = links.get(target, target)
                if target in self._members:
                    self._members[name] = self._members[target]
                    break

    def exists(self, name: str) -> bool:
        return name in self._members

    def size(self, name: str) -> int:
        return self._lookup(name)[1]

    def open(self, name: str) -> BinaryIO:
        offset, size = self._lookup(name)
        return RangeReader(self._fd, offset, size)  # type: ignore[return-value]

    def _lookup(self, name: str) -> tuple[int, int]:
        try:
            return self._members[name]
        except KeyError:
            raise BlobNotFoundError(f"{self.description}: missing {name}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class DirStore:
    """Files below a directory; nothing outside it is ever opened."""

    def __init__(self, root: Path) -> None:
        self.description = str(root)
        self._root = root.resolve()

    def _path(self, name: str) -> Path:
        path = (self._root / name).resolve()
        if path != self._root and self._root not in path.parents:
            raise ImageError(f"{self.description}: {name} points outside the layout")
        return path

    def _denied(self, name: str) -> InputNotFoundError:
        return InputNotFoundError(f"{posixpath.join(self.description, name)}: permission denied")

    def exists(self, name: str) -> bool:
        try:
            return self._path(name).is_file()
        except ImageError:
            return False
        except PermissionError:
            raise self._denied(name) from None

    def size(self, name: str) -> int:
        try:
            st = self._path(name).stat()
        except FileNotFoundError:
            raise BlobNotFoundError(f"{self.description}: missing {name}") from None
        except PermissionError:
            raise self._denied(name) from None
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{self.description}: {name} is not a regular file")
        return st.st_size

    def open(self, name: str) -> BinaryIO:
        # O_NONBLOCK: opening a FIFO planted in the layout must not wait for a writer.
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobNotFoundError(f"{self.description}: missing {name}") from None
        except PermissionError:
            raise self._denied(name) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageError(f"{self.description}: {name} is not a regular file")
        os.set_blocking(fd, True)
        return open(fd, "rb")

    def close(self) -> None:
        return None


class SkopeoDirStore:
    """skopeo's ``dir`` format seen as an OCI layout: ``blobs/sha256/HEX`` names its files.

    In that format ``manifest.json`` is the image's manifest (or, written with
    ``--all``, its index, each instance's manifest in ``HEX.manifest.json``),
    and every other blob is a file named by its hex digest (``HEX.tar`` in
    version 1.0).  ``manifest_digest`` is the digest of ``manifest.json``.
    """

    def __init__(self, inner: BlobStore, manifest_digest: Digest) -> None:
        self.description = inner.description
        self._inner = inner
        self._manifest = manifest_digest

    def _name(self, name: str) -> str:
        if not name.startswith("blobs/"):
            return name
        algorithm, _, hex_digest = name.removeprefix("blobs/").partition("/")
        if algorithm == self._manifest.algorithm and hex_digest == self._manifest.hex:
            return "manifest.json"
        for candidate in (hex_digest, hex_digest + ".manifest.json", hex_digest + ".tar"):
            if self._inner.exists(candidate):
                return candidate
        return hex_digest

    def exists(self, name: str) -> bool:
        return self._inner.exists(self._name(name))

    def size(self, name: str) -> int:
        return self._inner.size(self._name(name))

    def open(self, name: str) -> BinaryIO:
        return self._inner.open(self._name(name))

    def close(self) -> None:
        self._inner.close()


def _open_input(path: Path) -> int:
    """A read-only descriptor of an input file; a missing or unreadable one is an
    :class:`InputNotFoundError` naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputNotFoundError(f"{path}: no such file or directory") from None
    except PermissionError:
        raise InputNotFoundError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputNotFoundError(f"{path}: cannot open ({exc.strerror})") from None
    return fd


def _anonymous_file(place: str) -> int:
    """A new read-write file in ``place`` that no name leads to."""
    try:
        return os.open(place, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise OutputError(f"cannot write to {place}: {exc.strerror}") from None
    path = scratch.make_file(place, ".ocislim-spool-")
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    finally:
        scratch.remove(path)


def _spool(source: ByteReader, what: str, compression: str) -> int:
    """Copy ``source`` (decompressing it when ``compression`` is not none) into an
    anonymous file in ``$TMPDIR``; return its descriptor, positioned anywhere.

    The file never has a name (``O_TMPFILE``) or, where the file system cannot
    do that, is unlinked as soon as it is open, so nothing stays on disk
    whatever happens to this process.
    """
    place = tempfile.gettempdir()
    fd = _anonymous_file(place)
    try:
        reader = source
        if compression != "none":
            reader, _ = open_decompressed(source, what)
        with open(fd, "wb", closefd=False) as out:
            while chunk := reader.read(_SPOOL_CHUNK):
                out.write(chunk)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(
                f"{place}: {exc.strerror} while spooling {what} (set TMPDIR to a larger place)"
            ) from None
        raise InputNotFoundError(f"{what}: cannot read ({exc.strerror or exc})") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class _FdReader:
    """Sequential reads of a descriptor from its current offset (a pipe, a FIFO)."""

    def __init__(self, fd: int, head: bytes = b"") -> None:
        self._fd = fd
        self._head = head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data
        return os.read(self._fd, _SPOOL_CHUNK if n is None or n < 0 else n)

    def close(self) -> None:
        return None


def _read_head(fd: int, seekable: bool) -> bytes:
    """Up to 6 bytes from the start of the input (pread when it is a regular file)."""
    if seekable:
        return os.pread(fd, 6, 0)
    head = b""
    while len(head) < 6 and (chunk := os.read(fd, 6 - len(head))):
        head += chunk
    return head


def open_store(path: Path, *, stdin: bool = False) -> BlobStore:
    """A store for an image path: a directory, or a tar archive.

    The archive is read in place when it is an uncompressed regular file; a
    gzip- or zstd-compressed one, or a stream (``stdin`` true: descriptor 0;
    a FIFO), is spooled once into an anonymous file (see :func:`_spool`).  A
    missing or unreadable input is an :class:`InputNotFoundError`.
    """
    if stdin:
        if os.isatty(0):
            raise UsageError(f"{path}: stdin is a terminal; pipe an image archive into it")
        try:
            fd = os.dup(0)
        except OSError:
            raise InputNotFoundError(f"{path}: stdin is closed") from None
    else:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise InputNotFoundError(f"{path}: no such file or directory") from None
        except PermissionError:
            raise InputNotFoundError(f"{path}: permission denied") from None
        if stat.S_ISDIR(st.st_mode):
            if not os.access(path, os.X_OK):  # its files cannot be reached, whatever their modes
                raise InputNotFoundError(f"{path}: permission denied")
            return DirStore(path)
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
            raise ImageError(f"{path}: not a file or directory")
        fd = _open_input(path)
    try:
        st = os.fstat(fd)
        regular = stat.S_ISREG(st.st_mode)
        if not regular and not stat.S_ISFIFO(st.st_mode) and not stat.S_ISSOCK(st.st_mode):
            raise ImageError(f"{path}: not a file, FIFO or pipe")
        head = _read_head(fd, regular)
        compression = detect(head)
        other = next((n for m, n in _UNSUPPORTED if head.startswith(m)), None)
        if other is not None:
            raise ImageError(f"{path}: {other}-compressed archive; ocislim reads gzip and zstd")
        if regular and compression == "none":
            owned, fd = fd, -1
            return TarStore(path, owned)  # the store closes it, also when it fails
        # A regular file's head was read with pread; a stream's is handed back.
        spooled = _spool(_FdReader(fd, b"" if regular else head), str(path), compression)
    finally:
        if fd >= 0:
            os.close(fd)
    return TarStore(path, spooled, compression)
