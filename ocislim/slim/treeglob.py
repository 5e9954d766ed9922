"""Globs over a merged tree, walking only the directories a pattern names.

Pure: the result depends on the tree and the pattern.
"""

from __future__ import annotations

import fnmatch

from ocislim.errors import UnsafeArchiveError
from ocislim.layers.tree import FileTree


def tree_glob(tree: FileTree, pattern: str) -> list[str]:
    """The paths of ``tree`` matching the absolute ``pattern`` (``*``, ``?``, ``[...]``
    within one component; no ``**``), sorted by component."""
    found = ["/"]
    for part in (p for p in pattern.split("/") if p):
        nxt = []
        for directory in found:
            entry = tree.get(directory)
            if entry is None or not entry.is_dir or not entry.children:
                continue
            names = sorted(entry.children)
            matched = fnmatch.filter(names, part) if any(c in part for c in "*?[") else (
                [part] if part in entry.children else []
            )  # fmt: skip
            nxt += [f"{directory.rstrip('/')}/{name}" for name in matched]
        found = nxt
    return found


def tree_dirs(tree: FileTree, patterns: tuple[str, ...]) -> list[tuple[str, str]]:
    """(path, canonical path) of the directories and links to directories matching
    ``patterns``, in pattern order, each directory once under the first name matched
    (Debian's ``/usr/share/perl/5.36``, a link to ``5.36.0``, as the runtime names it)."""
    out: dict[str, str] = {}
    for pattern in patterns:
        for path in tree_glob(tree, pattern):
            try:
                canonical = tree.resolve(path)
            except UnsafeArchiveError:
                continue
            entry = tree.get(canonical)
            if entry is not None and entry.is_dir and canonical not in out:
                out[canonical] = path
    return [(path, canonical) for canonical, path in out.items()]
