"""What a merged tree holds, counted: the ``files``/``content_size`` figures of reports."""

from __future__ import annotations

from collections.abc import Collection

from ocislim.layers.tree import FileTree


def content_stats(tree: FileTree, keep: Collection[str] | None = None) -> dict[str, int]:
    """Counts by kind and the bytes of regular files (a hardlink group counted once).

    The root ``/`` is not counted; with ``keep``, only the paths in it are.
    """
    files = dirs = links = other = 0
    size = 0
    inodes: set[int] = set()
    for entry in tree.walk():
        if entry.path == "/" or (keep is not None and entry.path not in keep):
            continue
        kind = entry.kind
        if kind == "dir":
            dirs += 1
        elif kind == "symlink":
            links += 1
        elif kind == "file":
            files += 1
            if entry.inode not in inodes:
                inodes.add(entry.inode)
                size += entry.size
        else:
            other += 1
    return {
        "files": files,
        "directories": dirs,
        "symlinks": links,
        "other": other,
        "content_size": size,
    }
