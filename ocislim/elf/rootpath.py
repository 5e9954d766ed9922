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
import stat
from dataclasses import dataclass
from pathlib import Path

# Same hop limit as Linux path resolution (ELOOP after 40 links).
MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class Resolved:
    """Where an in-image path leads.

    ``path`` is the canonical in-image path (no symlinks, no ``.``/``..``); ``links``
    are the in-image locations of every symlink followed on the way, in order;
    ``exists`` is false when a component is missing, a non-directory is used as a
    directory, or the link chain loops.
    """

    path: str
    links: tuple[str, ...]
    exists: bool


def normalize(path: str) -> str:
    """Make ``path`` absolute and lexically clean (``..`` stops at ``/``)."""
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts:
                parts.pop()
            continue
        parts.append(comp)
    return "/" + "/".join(parts)


def tidy(path: str) -> str:
    """Absolute form of ``path`` without empty or ``.`` components; ``..`` is kept,
    because after a symlink it must apply to the link's target."""
    return "/" + "/".join(c for c in path.split("/") if c not in ("", "."))


def join(directory: str, name: str) -> str:
    """Join an in-image directory and a relative name without normalising."""
    return directory.rstrip("/") + "/" + name if directory != "/" else "/" + name


class RootFS:
    """A read-only, cached view of the tree under ``root``.

    The root is the image's ``/``.  Lookups never leave it: absolute symlink targets
    restart at the root and ``..`` at the root stays there.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = os.path.realpath(os.fspath(root))
        # canonical path -> (st_mode, link target or None); None when absent.
        self._lstat: dict[str, tuple[int, str | None] | None] = {}
        self._resolved: dict[str, Resolved] = {}
        self._listing: dict[str, frozenset[str]] = {}

    def host(self, canonical: str) -> str:
        """Host path of a canonical in-image path (callers resolve first)."""
        return self.root + canonical if canonical != "/" else self.root

    def _node(self, canonical: str) -> tuple[int, str | None] | None:
        try:
            return self._lstat[canonical]
        except KeyError:
            pass
        try:
            st = os.lstat(self.host(canonical))
        except OSError:
            node = None
        else:
            target = os.readlink(self.host(canonical)) if stat.S_ISLNK(st.st_mode) else None
            node = (st.st_mode, target)
        self._lstat[canonical] = node
        return node

    def resolve(self, path: str) -> Resolved:
        """Follow every symlink in ``path`` (final component included) inside the root."""
        # Not normalised lexically: ".." after a symlink must apply to its target.
        key = path if path.startswith("/") else "/" + path
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        result = self._resolve_uncached(key)
        self._resolved[key] = result
        return result

    def _resolve_uncached(self, path: str) -> Resolved:
        pending = [c for c in path.split("/") if c][::-1]
        current: list[str] = []
        links: list[str] = []
        hops = 0
        while pending:
            comp = pending.pop()
            if comp == ".":
                continue
            if comp == "..":
                if current:
                    current.pop()
                continue
            candidate = "/" + "/".join([*current, comp])
            node = self._node(candidate)
            if node is None:
                rest = "/".join([comp, *reversed(pending)])
                return Resolved(normalize(join("/" + "/".join(current), rest)), tuple(links), False)
            mode, target = node
            if target is not None:
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    return Resolved(candidate, tuple(links), False)
                links.append(candidate)
                if target.startswith("/"):
                    current = []
                pending.extend(c for c in reversed(target.split("/")) if c)
                continue
            if pending and not stat.S_ISDIR(mode):
                rest = "/".join(reversed(pending))
                return Resolved(normalize(join(candidate, rest)), tuple(links), False)
            current.append(comp)
        return Resolved("/" + "/".join(current), tuple(links), True)

    def mode(self, path: str) -> int | None:
        """``st_mode`` of what ``path`` resolves to, or None if it does not exist."""
        res = self.resolve(path)
        if not res.exists:
            return None
        node = self._node(res.path)
        return node[0] if node else None

    def is_file(self, path: str) -> bool:
        mode = self.mode(path)
        return mode is not None and stat.S_ISREG(mode)

    def is_dir(self, path: str) -> bool:
        mode = self.mode(path)
        return mode is not None and stat.S_ISDIR(mode)

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

    def read_bytes(self, path: str, limit: int | None = None) -> bytes | None:
        """Contents of the regular file ``path`` resolves to, or None if there is none."""
        res = self.resolve(path)
        if not res.exists or not self.is_file(res.path):
            return None
        try:
            with open(self.host(res.path), "rb") as fh:
                return fh.read() if limit is None else fh.read(limit)
        except OSError:
            return None

    def read_text(self, path: str) -> str | None:
        data = self.read_bytes(path)
        return None if data is None else data.decode("utf-8", "replace")

    def glob(self, pattern: str) -> list[str]:
        """Expand a shell glob inside the root; sorted, as glob(3) returns them.

        Returned paths are as spelled by the pattern's directories (not canonical).
        A leading ``.`` in a name is matched only by a pattern component that starts
        with ``.``.
        """
        comps = [c for c in normalize(pattern).split("/") if c]
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
