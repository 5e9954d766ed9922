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
_DIR_STEP = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

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

    def parent_fd(self, path: str) -> tuple[int, str] | None:
        """``(descriptor of the parent directory, final name)`` of the canonical ``path``,
        reached one component at a time with ``O_NOFOLLOW``: no link on the way is
        followed, so nothing outside the root is reached even when the directory has
        changed since ``path`` was resolved.  None when a component is not a directory.
        The caller closes the descriptor."""
        parts = path.split("/")[1:]
        if not path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            return None
        try:
            fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        for part in parts[:-1]:
            try:
                step = os.open(part, _DIR_STEP, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None
            os.close(fd)
            fd = step
        return fd, parts[-1]

    def open_file(self, path: str) -> int | None:
        """A read-only descriptor of the regular file at the canonical ``path``, or None
        when anything else is there (a link, a FIFO, a device: never opened, never
        followed; see :meth:`parent_fd`).  The caller closes it."""
        parent = self.parent_fd(path)
        if parent is None:
            return None
        fd, name = parent
        try:
            if not stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                return None
            opened = os.open(name, _READ_FILE, dir_fd=fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(opened).st_mode):  # replaced in between
            os.close(opened)
            return None
        return opened
