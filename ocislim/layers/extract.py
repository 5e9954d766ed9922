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
import tarfile
from pathlib import Path

from ocislim.errors import OutputError
from ocislim.idrange import owners_settable
from ocislim.image.streams import ByteReader
from ocislim.layers.tree import Entry
from ocislim.scratch import remove_tree

__all__ = ["DiskSink", "remove_tree"]

_COPY_CHUNK = 1 << 20
_HOLE_CHUNK = 64 << 10  # zero runs at least this long become holes in sparse files
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class DiskSink:
    """A :class:`~ocislim.layers.tree.TreeSink` writing into the empty directory ``root``.

    Per regular file it makes the system calls GNU tar makes, or fewer: the
    node is created with its final permission bits when neither the umask nor
    setuid/setgid bits (which ``chown`` clears) stand in the way, and the owner
    is set only when it differs from the one the node was created with.  The
    latter is known only while no directory on the way can hand down its group
    (setgid): in a root without the setgid bit, until :meth:`finish` applies
    directory modes.
    """

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
        # The owner a new node gets by itself, while that is known (see the class docstring).
        self._born_owner: tuple[int, int] | None = None
        if self.privileged and not os.stat(self.root).st_mode & stat.S_ISGID:
            self._born_owner = (os.geteuid(), os.getegid())
        self._umask = _umask()

    def _disk(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    def _error(self, path: str, exc: OSError) -> OutputError:
        """An OSError as one :class:`OutputError` line naming ``path`` in the destination."""
        shown = self.shown + path if path != "/" else self.shown
        return OutputError(f"{shown}: cannot write ({exc.strerror or exc})")

    # -- TreeSink ------------------------------------------------------------------------

    def removed(self, entry: Entry) -> None:
        try:
            self._removed(entry)
        except OSError as exc:
            raise self._error(entry.path, exc) from None

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
            try:
                os.mkdir(self._disk(entry.path), 0o700)
            except OSError as exc:
                raise self._error(entry.path, exc) from None
        self._dirs[entry.path] = entry

    def file(self, entry: Entry, data: ByteReader | None) -> None:
        try:
            if entry.info.type in tarfile.REGULAR_TYPES:
                self._regular(entry, data)
            else:
                self._special(entry)
        except OSError as exc:
            raise self._error(entry.path, exc) from None

    def _regular(self, entry: Entry, data: ByteReader | None) -> None:
        info = entry.info
        mode = info.mode & 0o7777  # setuid/setgid too: the owner is the user's own
        # Final bits at creation unless the umask would strip some or chown would
        # clear them; 0600 and a chmod after the owner otherwise.
        final = not (mode & 0o7000 or mode & self._umask)
        fd = os.open(self._disk(entry.path), _CREATE, mode if final else 0o600)
        try:
            if data is not None:
                if info.sparse is not None:
                    _write_sparse(fd, data, info.size)
                elif info.size:
                    while chunk := data.read(_COPY_CHUNK):
                        written = os.write(fd, chunk)
                        if written != len(chunk):
                            _write_all(fd, memoryview(chunk)[written:])
            # Through the descriptor: no second path walk per file.
            self._own(fd, info.uid, info.gid)
            if self.privileged and info.pax_headers:
                self._xattrs(fd, entry)
            if not final:
                os.chmod(fd, mode)  # after chown, which clears setuid bits
            os.utime(fd, (info.mtime, info.mtime))
        finally:
            os.close(fd)

    def _special(self, entry: Entry) -> None:
        """A symlink, device node or FIFO."""
        info = entry.info
        disk = self._disk(entry.path)
        if info.type == tarfile.SYMTYPE:
            os.symlink(info.linkname, disk)
            self._own(disk, info.uid, info.gid)
            os.utime(disk, (info.mtime, info.mtime), follow_symlinks=False)
            return
        if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            if not self.privileged:
                self.skipped_devices.append(entry.path)
                return
            kind = stat.S_IFCHR if info.type == tarfile.CHRTYPE else stat.S_IFBLK
            os.mknod(disk, kind | 0o600, os.makedev(info.devmajor, info.devminor))
        elif info.type == tarfile.FIFOTYPE:
            os.mkfifo(disk, 0o600)
        else:  # a type tarfile does not know: an empty file, as tar makes it
            os.close(os.open(disk, _CREATE, 0o600))
        self._attributes(disk, entry)

    def hardlink(self, entry: Entry, target: Entry) -> None:
        if target.path in self.skipped_devices:
            self.skipped_devices.append(entry.path)
            return
        try:
            os.link(self._disk(target.path), self._disk(entry.path), follow_symlinks=False)
        except OSError as exc:
            raise self._error(entry.path, exc) from None

    # -- attributes ----------------------------------------------------------------------

    def _own(self, target: str | int, uid: int, gid: int) -> None:
        """Give ``target`` (a path, never followed, or a descriptor) its owner, as root."""
        if self.privileged and (uid, gid) != self._born_owner:
            if isinstance(target, int):
                os.chown(target, uid, gid)
            else:
                os.chown(target, uid, gid, follow_symlinks=False)

    def _xattrs(self, target: str | int, entry: Entry) -> None:
        for key, value in entry.xattrs.items():
            try:
                os.setxattr(target, key, value.encode("utf-8", "surrogateescape"))
            except OSError:
                self.xattr_failures.append(f"{entry.path}: {key}")

    def _attributes(self, target: str, entry: Entry) -> None:
        """Owner, xattrs, mode and times of a node this sink created (never a symlink)."""
        info = entry.info
        if self.privileged:
            os.chown(target, info.uid, info.gid)
            self._xattrs(target, entry)
        os.chmod(target, info.mode & 0o7777)  # after chown, which clears setuid bits
        os.utime(target, (info.mtime, info.mtime))

    def finish(self) -> None:
        """Apply directory owners, modes and times, deepest first. Idempotent."""
        self._born_owner = None  # a directory may now pass its group on (setgid)
        for path in sorted(self._dirs, key=lambda p: p.count("/"), reverse=True):
            try:
                self._attributes(self._disk(path), self._dirs[path])
            except OSError as exc:
                raise self._error(path, exc) from None


def _umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


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
