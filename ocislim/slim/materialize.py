"""A slim root filesystem on disk, for running probes against the slim image.

:class:`SlimRoot` lays out the kept entries of the source tree in an empty
directory: directories, symlinks, FIFOs and (as root) device nodes from the
original headers through :class:`~ocislim.layers.extract.DiskSink` (the same
rules as ``unpack``), regular files as hardlinks to the unpacked source tree
(copies where a hardlink is refused), and hardlink groups as hardlinks.  A source
file is reached without following any link on disk, so a source tree that a
probe changed (a sandbox without an overlay) cannot make it link or copy a file
from outside; it is an :class:`~ocislim.errors.OutputError` instead.  It only
serves verification runs, which see it through an overlay: the image written
later never reads it.  Adding paths later (a verification round) extends the
tree in place.  :meth:`SlimRoot.remove` deletes it; :meth:`SlimRoot.remove_later`
has a child process delete it (:func:`~ocislim.scratch.remove_in_background`).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from ocislim import scratch
from ocislim.errors import OutputError
from ocislim.layers.extract import DiskSink
from ocislim.layers.pathwalk import DiskTree
from ocislim.layers.tree import Entry, FileTree


class SlimRoot:
    """The directory ``root`` (created empty) mirroring a growing subset of ``tree``."""

    def __init__(self, root: Path, source_root: Path, tree: FileTree) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o755)
        self._disk = DiskTree(source_root)
        self._tree = tree
        self._sink = DiskSink(self.root)
        self._done: set[str] = {"/"}
        self._first_of_inode: dict[int, Entry] = {}

    def add(self, paths: Iterable[str]) -> int:
        """Create the entries at ``paths`` (kept paths: their parents are among them or
        already present).  Returns how many were created."""
        wanted = set(paths) - self._done
        if not wanted:
            return 0
        created = 0
        for entry in self._tree.walk():
            if entry.path not in wanted:
                continue
            self._create(entry)
            self._done.add(entry.path)
            created += 1
        self._sink.finish()
        return created

    def _create(self, entry: Entry) -> None:
        if entry.is_dir:
            self._sink.directory(entry, True)
            return
        if entry.data is None:
            self._sink.file(entry, None)  # symlink, device node, FIFO
            return
        first = self._first_of_inode.get(entry.inode)
        if first is not None:
            self._sink.hardlink(entry, first)
            return
        self._first_of_inode[entry.inode] = entry
        target = os.fspath(self.root) + entry.path
        parent = self._disk.parent_fd(entry.path)
        if parent is None:
            raise self._changed(entry)
        fd, name = parent
        try:
            if not stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise self._changed(entry)
            os.link(name, target, src_dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise self._changed(entry) from None
        except OSError:  # a hardlink refused (another file system, protected_hardlinks)
            self._copy(entry, target)
        finally:
            os.close(fd)

    def _copy(self, entry: Entry, target: str) -> None:
        """Copy the source file's bytes, mode and times (as ``shutil.copy2``) to ``target``."""
        source = self._disk.open_file(entry.path)
        if source is None:
            raise self._changed(entry)
        with os.fdopen(source, "rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            st = os.fstat(src.fileno())
            os.chmod(dst.fileno(), stat.S_IMODE(st.st_mode))
            os.utime(dst.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))

    def _changed(self, entry: Entry) -> OutputError:
        return OutputError(
            f"{entry.path}: no longer a regular file in the unpacked source "
            "(changed on disk while the probes ran)"
        )

    def remove(self) -> None:
        """Delete the tree now."""
        scratch.remove_tree(self.root)

    def remove_later(self) -> None:
        """Start deleting the tree in the background; :func:`~ocislim.scratch.wait_removals`
        (or removing a scratch directory holding it) waits for that to end."""
        scratch.remove_in_background(self.root)
