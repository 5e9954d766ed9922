"""Mirror a :class:`FileTree` onto disk as it is built: the rootless-safe extractor.

Safety comes from the tree: every parent of a path the tree reports is a real
directory that this sink created, inside an initially empty root, so joining
names is safe; the final component is always created with ``O_EXCL`` /
``O_NOFOLLOW`` semantics (an existing node is removed first by the tree),
never written through.  As a plain user, ownership is not changed and device
nodes are skipped (listed in :attr:`DiskSink.skipped_devices`); modes are the
image's, setuid and setgid included, as ``umoci --rootless`` keeps them
(:func:`~ocislim.scratch.remove_tree` removes such a tree whatever its modes).
Directory modes and times are applied by :meth:`DiskSink.finish`, after their
contents exist.  Sparse files are written with holes where their data is
zeros, so they take on disk what their data takes, not their real size.
Errors name the path at fault as it appears below the destination.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ocislim.errors import OutputError
from ocislim.idrange import owners_settable
from ocislim.image.streams import ByteReader
from ocislim.layers.tree import Entry
from ocislim.scratch import remove_tree

__all__ = ["DiskSink", "remove_tree"]

_COPY_CHUNK = 1 << 20
_HOLE_CHUNK = 64 << 10  # zero runs at least this long become holes in sparse files


class DiskSink:
    """A :class:`~ocislim.layers.tree.TreeSink` writing into the empty directory ``root``."""

    def __init__(
        self, root: Path, privileged: bool | None = None, shown_as: Path | None = None
    ) -> None:
        """``shown_as``: the directory errors name instead of ``root`` (e.g. the final
        destination of a scratch directory)."""
        self.root = os.fspath(root)
        self.shown = os.fspath(shown_as) if shown_as is not None else self.root
        self.privileged = owners_settable() if privileged is None else privileged
        self.skipped_devices: list[str] = []
        self.xattr_failures: list[str] = []
        self._dirs: dict[str, Entry] = {}

    def _disk(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    @contextmanager
    def _naming(self, path: str) -> Iterator[None]:
        """An OSError becomes one :class:`OutputError` line naming ``path`` in the destination."""
        try:
            yield
        except OSError as exc:
            shown = self.shown + path if path != "/" else self.shown
            raise OutputError(f"{shown}: cannot write ({exc.strerror or exc})") from None

    # -- TreeSink ------------------------------------------------------------------------

    def removed(self, entry: Entry) -> None:
        with self._naming(entry.path):
            self._removed(entry)

    def _removed(self, entry: Entry) -> None:
        disk = self._disk(entry.path)
        try:
            if entry.is_dir:
                self._dirs.pop(entry.path, None)
                os.rmdir(disk)
            else:
                os.unlink(disk)
        except FileNotFoundError:
            if entry.path not in self.skipped_devices:
                raise
            self.skipped_devices.remove(entry.path)

    def directory(self, entry: Entry, created: bool) -> None:
        if created:
            with self._naming(entry.path):
                os.mkdir(self._disk(entry.path), 0o700)
        self._dirs[entry.path] = entry

    def file(self, entry: Entry, data: ByteReader | None) -> None:
        with self._naming(entry.path):
            self._file(entry, data)

    def _file(self, entry: Entry, data: ByteReader | None) -> None:
        info = entry.info
        disk = self._disk(entry.path)
        if info.issym():
            os.symlink(info.linkname, disk)
            self._own(disk, info.uid, info.gid)
            os.utime(disk, (info.mtime, info.mtime), follow_symlinks=False)
            return
        if info.ischr() or info.isblk():
            if not self.privileged:
                self.skipped_devices.append(entry.path)
                return
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            os.mknod(disk, kind | 0o600, os.makedev(info.devmajor, info.devminor))
        elif info.isfifo():
            os.mkfifo(disk, 0o600)
        else:
            fd = os.open(
                disk, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            try:
                if data is not None:
                    if info.issparse():
                        _write_sparse(fd, data, info.size)
                    else:
                        while chunk := data.read(_COPY_CHUNK):
                            _write_all(fd, chunk)
                # Through the descriptor: no second path walk per file.
                self._attributes(fd, entry)
            finally:
                os.close(fd)
            return
        self._attributes(disk, entry)

    def hardlink(self, entry: Entry, target: Entry) -> None:
        if target.path in self.skipped_devices:
            self.skipped_devices.append(entry.path)
            return
        with self._naming(entry.path):
            os.link(self._disk(target.path), self._disk(entry.path), follow_symlinks=False)

    # -- attributes ----------------------------------------------------------------------

    def _own(self, disk: str, uid: int, gid: int) -> None:
        if self.privileged:
            os.chown(disk, uid, gid, follow_symlinks=False)

    def _attributes(self, target: str | int, entry: Entry) -> None:
        """Owner, xattrs, mode and times of a node this sink created (never a symlink).

        ``target`` is its path or an open descriptor.
        """
        info = entry.info
        if self.privileged:
            os.chown(target, info.uid, info.gid)
        mode = info.mode & 0o7777  # setuid/setgid too: the owner is the user's own
        if self.privileged:
            for key, value in entry.xattrs.items():
                try:
                    os.setxattr(target, key, value.encode("utf-8", "surrogateescape"))
                except OSError:
                    self.xattr_failures.append(f"{entry.path}: {key}")
        os.chmod(target, mode)  # after chown, which clears setuid bits
        os.utime(target, (info.mtime, info.mtime))

    def finish(self) -> None:
        """Apply directory owners, modes and times, deepest first. Idempotent."""
        for path in sorted(self._dirs, key=lambda p: p.count("/"), reverse=True):
            with self._naming(path):
                self._attributes(self._disk(path), self._dirs[path])


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_sparse(fd: int, data: ByteReader, size: int) -> None:
    """Write the bytes of a sparse file of real ``size``, leaving its zero runs as holes."""
    zeros = bytes(_HOLE_CHUNK)
    while chunk := data.read(_COPY_CHUNK):
        view = memoryview(chunk)
        for start in range(0, len(view), _HOLE_CHUNK):
            piece = view[start : start + _HOLE_CHUNK]
            if piece == zeros[: len(piece)]:
                os.lseek(fd, len(piece), os.SEEK_CUR)
            else:
                _write_all(fd, piece)
    os.ftruncate(fd, size)
