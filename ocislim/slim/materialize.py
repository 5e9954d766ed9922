"""A slim root filesystem on disk, for running probes against the slim image.

:class:`SlimRoot` lays out the kept entries of the source tree in an empty
directory: directories, symlinks, FIFOs and (as root) device nodes from the
original headers through :class:`~ocislim.layers.extract.DiskSink` (the same
rules as ``unpack``), regular files as hardlinks to the unpacked source tree
(copies where a hardlink is refused), and hardlink groups as hardlinks.  It only
serves verification runs, which see it through an overlay: the image written
later never reads it.  Adding paths later (a verification round) extends the
tree in place.  :meth:`SlimRoot.remove` deletes it; :meth:`SlimRoot.remove_later`
has a child process delete it (:func:`~ocislim.scratch.remove_in_background`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from ocislim import scratch
from ocislim.layers.extract import DiskSink
from ocislim.layers.tree import Entry, FileTree


class SlimRoot:
    """The directory ``root`` (created empty) mirroring a growing subset of ``tree``."""

    def __init__(self, root: Path, source_root: Path, tree: FileTree) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o755)
        self._source = os.fspath(source_root)
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
        source = self._source + entry.path
        target = os.fspath(self.root) + entry.path
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError:
            shutil.copy2(source, target, follow_symlinks=False)

    def remove(self) -> None:
        """Delete the tree now."""
        scratch.remove_tree(self.root)

    def remove_later(self) -> None:
        """Start deleting the tree in the background; :func:`~ocislim.scratch.wait_removals`
        (or removing a scratch directory holding it) waits for that to end."""
        scratch.remove_in_background(self.root)
