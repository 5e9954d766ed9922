"""The one in-image path resolver: symlinks followed without leaving the image root.

Every path here is absolute and inside an image (``/usr/lib/libz.so.1``; the root
is ``/``).  :func:`resolve` walks it one component at a time over a
:class:`TreeView`, which says what is at a path without following it, so the
same walk serves the merged layer tree in memory and an unpacked rootfs on disk
(:class:`DiskTree`).  As the kernel does with the image root as ``/`` (``chroot``,
``openat2(RESOLVE_IN_ROOT)``): a relative symlink continues from the link's
directory, an absolute one restarts at the image root, ``..`` at the root stays
there, and ``..`` after a symlink applies to the link's target.  At most
:data:`MAX_SYMLINKS` links are followed in one walk, the kernel's ELOOP limit.

Where the walk cannot go on, callers want different things, so the outcome is a
status rather than an exception:

- ``"missing"``: a component is absent, or a non-directory is used as a
  directory; the rest of the path is applied lexically.  With
  ``through_missing`` such a component is taken as a plain name instead and the
  walk goes on, as a root-scoped join (filepath-securejoin, containerd's
  ``RootPath``) does to place a tar member whose parents do not exist yet;
- ``"loop"``: more than :data:`MAX_SYMLINKS` links; ``path`` is the link where
  the walk gave up.  The layer tree turns this into an error, the trace
  analysis and the ELF lookups into "not there";
- ``"runtime"``: a component is one of the ``runtime`` mount points, which the
  container runtime provides over the image (``/proc``, bind mounts); the rest
  of the path is applied lexically.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

MAX_SYMLINKS = 40  # as the kernel's limit for one path walk

Status = Literal["found", "missing", "loop", "runtime"]


class TreeView(Protocol):
    """Read-only view of an image tree addressed by absolute in-image paths."""

    def kind(self, path: str) -> str | None:
        """ "file", "dir", "symlink", "other", or None when absent. Never follows a final
        symlink."""

    def readlink(self, path: str) -> str:
        """Target of the symlink at ``path``."""


@dataclass(frozen=True)
class Resolution:
    """Where a path leads (see the module docstring for ``status``).

    ``path`` is canonical when ``status`` is "found" (no symlink, ``.`` or ``..``);
    ``symlinks`` are the in-image locations of the links followed on the way, in
    order; ``kind`` is the view's kind of ``path`` when it was found.
    """

    path: str
    status: Status
    symlinks: tuple[str, ...]
    kind: str | None = None

    @property
    def exists(self) -> bool:
        return self.status == "found"


def lexical(path: str) -> str:
    """``path`` made absolute and lexically clean, ``..`` stopping at ``/``.

    Only right where no symlink can be on the way (see :func:`resolve`).
    """
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


def resolve(
    view: TreeView,
    path: str,
    *,
    follow: bool = True,
    runtime: Collection[str] = (),
    through_missing: bool = False,
) -> Resolution:
    """Resolve ``path`` over ``view`` inside the image root (see the module docstring).

    ``follow``: whether a final symlink is followed; ``runtime``: mount points
    where the walk stops; ``through_missing``: go on past missing components.
    Reads the view only; never raises for what the view holds.
    """
    return _walk(view, path, follow, _mount_points(runtime), through_missing)


def _mount_points(runtime: Collection[str]) -> frozenset[str]:
    # Every component is checked on the way, so exact mount points suffice.
    return frozenset(m.rstrip("/") or "/" for m in runtime)


def _walk(
    view: TreeView, path: str, follow: bool, runtime: frozenset[str], through_missing: bool
) -> Resolution:
    pending = [c for c in path.split("/") if c]
    pending.reverse()  # a stack: next component last
    current: list[str] = []
    links: list[str] = []
    hops = 0
    kind: str | None = "dir"  # of "/".join(current) while ``known``
    known = True
    while pending:
        name = pending.pop()
        if name == ".":
            continue
        if name == "..":
            if current:
                current.pop()
                known = False
            continue
        candidate = "/" + "/".join([*current, name])
        if candidate in runtime:
            return Resolution(_rest(candidate, pending), "runtime", tuple(links))
        kind = view.kind(candidate)
        known = True
        last = not pending
        if kind == "symlink" and (follow or not last):
            hops += 1
            if hops > MAX_SYMLINKS:
                return Resolution(candidate, "loop", tuple(links))
            links.append(candidate)
            target = view.readlink(candidate)
            if target.startswith("/"):
                current = []
            pending.extend(reversed([c for c in target.split("/") if c]))
            known = False
            continue
        if (kind is None or (not last and kind != "dir")) and not through_missing:
            return Resolution(_rest(candidate, pending), "missing", tuple(links))
        current.append(name)
    final = "/" + "/".join(current)
    if final in runtime:
        return Resolution(final, "runtime", tuple(links))
    if not current:
        kind = "dir"
    elif not known:
        kind = view.kind(final)
    if kind is None:
        return Resolution(final, "missing", tuple(links))
    return Resolution(final, "found", tuple(links), kind)


def _rest(base: str, pending: list[str]) -> str:
    """``base`` with the components still on the ``pending`` stack applied lexically."""
    return lexical(base + "/" + "/".join(reversed(pending)))


class PathResolver:
    """:func:`resolve` over one view with the view's answers and the results cached.

    A snapshot: the tree must not change while this is in use.  It is itself a
    :class:`TreeView` (cached).
    """

    def __init__(self, view: TreeView, runtime: Collection[str] = ()) -> None:
        self._view = view
        self._runtime = _mount_points(runtime)
        self._kinds: dict[str, str | None] = {}
        self._links: dict[str, str] = {}
        self._results: dict[tuple[str, bool], Resolution] = {}

    def kind(self, path: str) -> str | None:
        try:
            return self._kinds[path]
        except KeyError:
            kind = self._kinds[path] = self._view.kind(path)
            return kind

    def readlink(self, path: str) -> str:
        try:
            return self._links[path]
        except KeyError:
            target = self._links[path] = self._view.readlink(path)
            return target

    def resolve(self, path: str, follow: bool = True) -> Resolution:
        key = (path, follow)
        cached = self._results.get(key)
        if cached is None:
            cached = self._results[key] = _walk(self, path, follow, self._runtime, False)
        return cached


class DiskTree:
    """A :class:`TreeView` of a directory on disk that is an image's root.

    Paths are looked up with ``lstat`` one component at a time by the walk, so no
    lookup follows a symlink out of the directory.  Uncached; wrap it in a
    :class:`PathResolver` for repeated walks.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = os.path.abspath(root)

    def host(self, path: str) -> str:
        """Host path of an in-image path; only safe for a path resolved first."""
        return self.root + path if path != "/" else self.root

    def mode(self, path: str) -> int | None:
        """``st_mode`` of what is at ``path`` (not followed), or None when absent."""
        try:
            return os.lstat(self.host(path)).st_mode
        except (OSError, ValueError):
            return None

    def kind(self, path: str) -> str | None:
        mode = self.mode(path)
        if mode is None:
            return None
        if stat.S_ISREG(mode):
            return "file"
        if stat.S_ISDIR(mode):
            return "dir"
        if stat.S_ISLNK(mode):
            return "symlink"
        return "other"

    def readlink(self, path: str) -> str:
        return os.readlink(self.host(path))
