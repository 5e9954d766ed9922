"""The ``program-aliases`` rule: a program that ran keeps the other names it has on PATH.

Many programs are one binary under several names, and the name chooses what it does:
graphviz's ``neato``, ``circo`` and ``fdp`` are links to ``dot``; busybox's applets,
procps' ``pkill`` (``pgrep``), xz's ``unxz`` and ``xzcat``, Debian's alternatives
(``awk`` through ``/etc/alternatives/awk`` to ``mawk``), Perl's ``perl5.36.0`` (a
hardlink).  A script that picks the name at run time (``$layout -Tpng g.dot``) runs a
name the probe never used, and no reader of the script can know which.  Keeping a name
costs one link (a hardlink shares its data), so when a program ran, or counts as run,
this rule keeps every symlink and hardlink in a ``PATH`` directory that leads to it.

Pure: reads the tree only, and indexes the ``PATH`` directories once.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable, Sequence

from ocislim.elf.programs import env_map
from ocislim.errors import UnsafeArchiveError
from ocislim.image.models import DEFAULT_PATH
from ocislim.layers.tree import FileTree
from ocislim.slim.langrules import LangRule
from ocislim.slim.plan import Reason, Seed

ALIAS_RULES: tuple[LangRule, ...] = (
    LangRule(
        "program-aliases",
        "a program that ran keeps the symlinks and hardlinks in PATH directories that lead "
        "to it (graphviz's neato and circo are dot, busybox's applets, alternatives such "
        "as awk): the name a program is run by chooses what it does",
    ),
)


class ProgramAliases:
    """The rule's seeds: the other names on ``PATH`` of the programs that ran."""

    def __init__(self, tree: FileTree, env: Sequence[str], enabled: Collection[str]) -> None:
        self._tree = tree
        self._on = "program-aliases" in enabled
        search = env_map(env).get("PATH", DEFAULT_PATH)
        # The image's PATH and the standard one: a script may set its own PATH.
        dirs = [*search.split(":"), *DEFAULT_PATH.split(":")]
        self._dirs = [d for d in dict.fromkeys(dirs) if d.startswith("/")]
        self._index: dict[str, list[str]] | None = None
        self._done: set[str] = set()

    def seeds(self, programs: Iterable[str]) -> list[Seed]:
        """Seeds for the names of ``programs`` (canonical paths) not handled before."""
        if not self._on:
            return []
        index = self._names()
        out: list[Seed] = []
        for program in programs:
            if program in self._done:
                continue
            self._done.add(program)
            why = Reason("lazy", detail=f"another name of {program}", rule="program-aliases",
                         by=program)  # fmt: skip
            out += [Seed(name, why) for name in index.get(program, ()) if name != program]
        return out

    def _names(self) -> dict[str, list[str]]:
        """Canonical executable -> every name in a PATH directory that leads to it."""
        if self._index is not None:
            return self._index
        index: dict[str, list[str]] = {}
        inodes: dict[int, list[str]] = {}  # hardlink groups among the PATH entries
        seen: set[str] = set()
        for directory in self._dirs:
            try:
                real_dir = self._tree.resolve(directory)
            except UnsafeArchiveError:
                continue
            entry = self._tree.get(real_dir)
            if entry is None or not entry.is_dir or real_dir in seen:
                continue  # /bin -> /usr/bin on a merged-/usr image: one directory
            seen.add(real_dir)
            for name, child in sorted((entry.children or {}).items()):
                path = posixpath.join(real_dir, name)
                if child.kind == "file":
                    inodes.setdefault(child.inode, []).append(path)
                elif child.kind == "symlink":
                    try:
                        target = self._tree.resolve(path)
                    except UnsafeArchiveError:
                        continue
                    found = self._tree.get(target)
                    if found is not None and found.kind == "file" and found.mode & 0o111:
                        index.setdefault(target, []).append(path)
        for group in inodes.values():
            if len(group) > 1:  # one program: each name keeps the others and their links
                names = [*group, *(n for path in group for n in index.get(path, ()))]
                for path in group:
                    index[path] = list(dict.fromkeys(names))
        self._index = index
        return index
