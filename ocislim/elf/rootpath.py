"""Path lookups confined to an image's root directory.

Every path handled here is an absolute path *inside the image* ("/usr/lib/libz.so.1");
:class:`RootFS` maps it to the host only after every symlink on the way has been
resolved against the image root, so an absolute link such as ``/lib64 -> /usr/lib64``
or a ``..`` chain can never reach a host file.  Results are cached: a ``RootFS`` is a
read-only snapshot view and must not be used while the tree is being modified.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from pathlib import Path

from ocislim.layers.pathwalk import DiskTree, PathResolver, Resolution, lexical


def tidy(path: str) -> str:
    """Absolute form of ``path`` without empty or ``.`` components; ``..`` is kept,
    because after a symlink it must apply to the link's target."""
    return "/" + "/".join(c for c in path.split("/") if c not in ("", "."))


def join(directory: str, name: str) -> str:
    """Join an in-image directory and a relative name without normalising."""
    return directory.rstrip("/") + "/" + name if directory != "/" else "/" + name


TEXT_LIMIT = 32 << 20  # scripts, configuration and package lists are far smaller


class RootFS:
    """A read-only, cached view of the tree under ``root``.

    The root is the image's ``/``.  Lookups go through the one in-image resolver
    (:mod:`ocislim.layers.pathwalk`), so they never leave it: absolute symlink
    targets restart at the root, ``..`` at the root stays there, and a link chain
    longer than the kernel allows resolves to nothing.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = os.path.realpath(os.fspath(root))
        self._disk = DiskTree(self.root)
        self._paths = PathResolver(self._disk)
        self._listing: dict[str, frozenset[str]] = {}

    def host(self, canonical: str) -> str:
        """Host path of a canonical in-image path (callers resolve first)."""
        return self._disk.host(canonical)

    def resolve(self, path: str) -> Resolution:
        """Follow every symlink in ``path`` (final component included) inside the root.

        ``exists`` is false when a component is missing, a non-directory is used as
        a directory, or the link chain loops.
        """
        return self._paths.resolve(path)

    def mode(self, path: str) -> int | None:
        """``st_mode`` of what ``path`` resolves to, or None if it does not exist."""
        res = self.resolve(path)
        return self._disk.mode(res.path) if res.exists else None

    def is_file(self, path: str) -> bool:
        return self.resolve(path).kind == "file"

    def is_dir(self, path: str) -> bool:
        return self.resolve(path).kind == "dir"

    def listdir(self, path: str) -> frozenset[str]:
        """Names in the directory ``path`` resolves to; empty if it is not a directory."""
        res = self.resolve(path)
        cached = self._listing.get(res.path)
        if cached is not None:
            return cached
        names: frozenset[str] = frozenset()
        if res.exists:
            with contextlib.suppress(OSError):
                names = frozenset(os.listdir(self.host(res.path)))
        self._listing[res.path] = names
        return names

    def open_file(self, canonical: str) -> int | None:
        """A read-only descriptor of the regular file at the canonical ``canonical``, or
        None when anything else is there; no link is followed at any component and no
        FIFO is opened.  The caller closes it."""
        return self._disk.open_file(canonical)

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """Contents of the regular file ``path`` resolves to, or None if there is none."""
        res = self.resolve(path)
        if res.kind != "file":
            return None
        fd = self._disk.open_file(res.path)  # no link followed, no FIFO opened
        if fd is None:
            return None
        try:
            with os.fdopen(fd, "rb") as fh:
                return fh.read() if limit is None else fh.read(limit)
        except OSError:
            return None

    def read_text(self, path: str, limit: int = TEXT_LIMIT) -> str | None:
        """The first ``limit`` bytes of the regular file ``path`` resolves to, decoded as
        UTF-8 (bad bytes replaced); None if there is none.  The limit keeps a hostile
        image's huge "script" or configuration file out of memory."""
        data = self.read_bytes(path, limit)
        return None if data is None else data.decode("utf-8", "replace")

    def glob(self, pattern: str) -> list[str]:
        """Expand a shell glob inside the root; sorted, as glob(3) returns them.

        Returned paths are as spelled by the pattern's directories (not canonical).
        A leading ``.`` in a name is matched only by a pattern component that starts
        with ``.``.
        """
        comps = [c for c in lexical(pattern).split("/") if c]
        found = ["/"]
        for comp in comps:
            nxt: list[str] = []
            magic = any(ch in comp for ch in "*?[")
            for base in found:
                if not magic:
                    candidate = join(base, comp)
                    if self.resolve(candidate).exists:
                        nxt.append(candidate)
                    continue
                for name in self.listdir(base):
                    if name.startswith(".") and not comp.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(name, comp):
                        nxt.append(join(base, name))
            found = nxt
        return sorted(found) if comps else []
