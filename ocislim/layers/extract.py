"""Mirror a :class:`FileTree` onto disk as it is built: the rootless-safe extractor.

Safety comes from the tree: every parent of a path the tree reports is a real
directory that this sink created, inside an initially empty root, so joining
names is safe; the final component is always created with ``O_EXCL`` /
``O_NOFOLLOW`` semantics (an existing node is removed first by the tree),
never written through.  As a plain user, ownership is not changed, device
nodes are skipped (listed in :attr:`DiskSink.skipped_devices`), and every
file and directory stays readable and writable by the user so the tree can be
removed.  Directory modes and times are applied by :meth:`DiskSink.finish`,
after their contents exist.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ocislim.errors import OutputError
from ocislim.image.streams import ByteReader
from ocislim.layers.tree import Entry

_COPY_CHUNK = 1 << 20


class DiskSink:
    """A :class:`~ocislim.layers.tree.TreeSink` writing into the empty directory ``root``."""

    def __init__(self, root: Path, privileged: bool | None = None) -> None:
        self.root = os.fspath(root)
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        self.skipped_devices: list[str] = []
        self.xattr_failures: list[str] = []
        self._dirs: dict[str, Entry] = {}

    def _disk(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    # -- TreeSink ------------------------------------------------------------------------

    def removed(self, entry: Entry) -> None:
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
            os.mkdir(self._disk(entry.path), 0o700)
        self._dirs[entry.path] = entry

    def file(self, entry: Entry, data: ByteReader | None) -> None:
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
                    while chunk := data.read(_COPY_CHUNK):
                        os.write(fd, chunk)
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
        mode = info.mode & 0o7777
        if not self.privileged:
            mode = (mode | (0o700 if entry.is_dir else 0o600)) & 0o777
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
            self._attributes(self._disk(path), self._dirs[path])


def remove_tree(path: Path) -> None:
    """Remove a directory tree ocislim created, even where modes deny the owner access.

    Idempotent: a missing ``path`` is not an error.
    """
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        try:
            os.chmod(path, 0o700)
            for dirpath, dirnames, _ in os.walk(path):
                for name in dirnames:
                    child = os.path.join(dirpath, name)
                    if not os.path.islink(child):
                        os.chmod(child, 0o700)
            shutil.rmtree(path)
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove ({exc.strerror})") from None
    else:
        os.unlink(path)
