"""Read-only access to the files of an image archive or layout directory.

A store maps names (``index.json``, ``blobs/sha256/HEX``, ``manifest.json``,
``<id>/layer.tar``) to byte ranges.  Names coming from inside an archive are
hostile: :func:`clean_name` rejects absolute paths and ``..`` before any file
system access, and a directory store never follows a link out of its root.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO, Protocol

from ocislim.errors import BlobNotFoundError, ImageError, InputNotFoundError
from ocislim.image.tarsafe import BoundedTarInfo, check_member

_MAX_LINK_DEPTH = 16


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


class TarStore:
    """Members of an uncompressed tar archive, read in place without extraction."""

    def __init__(self, path: Path) -> None:
        self.description = str(path)
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._members: dict[str, tuple[int, int]] = {}
        links: dict[str, str] = {}
        limit = os.fstat(self._fd).st_size
        try:
            with (
                open(path, "rb") as fh,
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

    def exists(self, name: str) -> bool:
        try:
            return self._path(name).is_file()
        except ImageError:
            return False

    def size(self, name: str) -> int:
        try:
            st = self._path(name).stat()
        except FileNotFoundError:
            raise BlobNotFoundError(f"{self.description}: missing {name}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{self.description}: {name} is not a regular file")
        return st.st_size

    def open(self, name: str) -> BinaryIO:
        # O_NONBLOCK: opening a FIFO planted in the layout must not wait for a writer.
        try:
            fd = os.open(self._path(name), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlobNotFoundError(f"{self.description}: missing {name}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageError(f"{self.description}: {name} is not a regular file")
        os.set_blocking(fd, True)
        return open(fd, "rb")

    def close(self) -> None:
        return None


def open_store(path: Path) -> BlobStore:
    """A store for an image path: a directory or an uncompressed tar archive."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path}: no such file or directory") from None
    except PermissionError:
        raise InputNotFoundError(f"{path}: permission denied") from None
    if stat.S_ISDIR(st.st_mode):
        return DirStore(path)
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path}: not a file or directory")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"\x1f\x8b") or head.startswith(b"\x28\xb5\x2f\xfd"):
        raise ImageError(f"{path}: compressed archive; decompress it first (e.g. gunzip)")
    return TarStore(path)
