"""The merged file tree of an image, built layer by layer from original tar headers.

:class:`FileTree` applies the OCI image-spec layer rules (whiteouts, opaque
directories, directory-over-directory, replace-anything-else, hardlinks) to
entries in the order a layer lists them.  Every entry keeps the tar header it
came from and a reference to where its bytes are, so a new layer can be
written losslessly without looking at extracted files.

Paths are absolute, normalised POSIX strings (``/usr/bin/env``; the root is
``/``).  A name whose parent passes through a symlink is resolved inside the
tree, the way a rootfs extractor scoped to its root would (the link is
followed but can never climb above ``/``); the final component of a name is
never followed.  Changes are reported to an optional :class:`TreeSink`, which
is how extraction to disk mirrors the tree exactly.
"""

from __future__ import annotations

import copy
import math
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ocislim.errors import ImageError, UnsafeArchiveError
from ocislim.image.streams import ByteReader
from ocislim.layers import pathwalk

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class DataRef:
    """Where the bytes of a regular file are: member ``ordinal`` of layer ``layer``.

    ``spool_offset`` is set when the bytes were also copied to a spool file.
    """

    layer: int
    ordinal: int
    size: int
    spool_offset: int | None = None


@dataclass(slots=True)
class Entry:
    """One path of the merged tree.

    ``info`` is the original tar header (never modified; its ``name`` is as in
    the layer).  ``inode`` is shared by the paths of a hardlink group; ``data``
    is the content of a regular file (shared by its hardlinks).  ``layer`` is
    the index of the layer that last set this entry (``-1``: implied parent
    directory that no layer listed).
    """

    path: str
    info: tarfile.TarInfo
    layer: int
    inode: int
    data: DataRef | None = None
    children: dict[str, Entry] | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        info = self.info
        if info.isdir():
            return "dir"
        if info.issym():
            return "symlink"
        if info.ischr():
            return "char"
        if info.isblk():
            return "block"
        if info.isfifo():
            return "fifo"
        return "file"

    @property
    def is_dir(self) -> bool:
        return self.info.isdir()

    @property
    def size(self) -> int:
        return self.data.size if self.data else 0

    @property
    def mode(self) -> int:
        return self.info.mode

    @property
    def linkname(self) -> str:
        return self.info.linkname if self.info.issym() else ""

    @property
    def xattrs(self) -> dict[str, str]:
        pax = self.info.pax_headers
        if not pax:
            return {}
        prefix = "SCHILY.xattr."
        return {k[len(prefix) :]: v for k, v in pax.items() if k.startswith(prefix)}


class TreeSink(Protocol):
    """Receives every change the tree makes, in order (e.g. to mirror it on disk)."""

    def removed(self, entry: Entry) -> None:
        """``entry`` is gone; its children were reported removed before it."""

    def directory(self, entry: Entry, created: bool) -> None:
        """A directory was created (``created``) or had its header replaced."""

    def file(self, entry: Entry, data: ByteReader | None) -> None:
        """A non-directory entry was created; ``data`` holds a regular file's bytes."""

    def hardlink(self, entry: Entry, target: Entry) -> None:
        """``entry`` is a new hardlink to ``target``'s inode."""


def normalize(name: str, what: str) -> str:
    """The absolute tree path of a tar member name; refuse names that climb out."""
    # Most names are already clean: no empty, "." or ".." component, no NUL.
    if (
        name
        and name[0] not in "./"
        and name[-1] != "/"
        and "//" not in name
        and "/." not in name
        and "\0" not in name
    ):
        return "/" + name
    if "\0" in name:
        raise UnsafeArchiveError(f"{what}: {name!r} contains a NUL byte")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchiveError(f"{what}: {name!r} escapes the root")
            parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown
_DEVICE_TYPES = (tarfile.CHRTYPE, tarfile.BLKTYPE)
_MAX_TIME = 2**62  # well inside what utime() accepts


def check_header(info: tarfile.TarInfo, path: str, what: str) -> None:
    """Refuse header values no file system can hold, before anything uses them.

    Owners, times and device numbers come from PAX records or base-256 fields
    and can be any number; link targets and xattr names can carry NUL bytes.
    """
    if info.linkname and "\0" in info.linkname:
        raise UnsafeArchiveError(
            f"{what}: {path}: link target {info.linkname!r} contains a NUL byte"
        )
    for key in info.pax_headers:
        if key.startswith("SCHILY.xattr.") and "\0" in key:
            raise UnsafeArchiveError(f"{what}: {path}: xattr name {key!r} contains a NUL byte")
    mtime = info.mtime
    if not -_MAX_TIME < mtime < _MAX_TIME or not math.isfinite(mtime):  # NaN compares false
        raise ImageError(f"{what}: {path}: invalid mtime {mtime!r}")
    if not (0 <= info.uid <= _MAX_ID and 0 <= info.gid <= _MAX_ID):
        for key in ("uid", "gid"):
            value = getattr(info, key)
            if not 0 <= value <= _MAX_ID:
                raise ImageError(f"{what}: {path}: invalid {key} {value}")
    if info.type in _DEVICE_TYPES:
        for key in ("devmajor", "devminor"):
            value = getattr(info, key)
            if not 0 <= value < 2**32:
                raise ImageError(f"{what}: {path}: invalid {key} {value}")


def synthetic_dir(path: str, mtime: int) -> tarfile.TarInfo:
    """A header for a directory that a layer implied but did not list."""
    info = tarfile.TarInfo(path.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    return info


class FileTree:
    """The merged tree. Not thread-safe. Mutated only through :meth:`apply` calls."""

    def __init__(self, sink: TreeSink | None = None, implied_mtime: int = 0) -> None:
        root_info = synthetic_dir("/", implied_mtime)
        self._next_inode = 1
        self.root = Entry("/", root_info, -1, self._new_inode(), children={})
        self._sink = sink
        # Parent path as written -> its directory. Valid until an entry is removed,
        # since only a removal can change where a path resolves.
        self._parents: dict[str, Entry] = {}
        self._implied_mtime = implied_mtime

    # -- queries ---------------------------------------------------------------------------

    def get(self, path: str) -> Entry | None:
        """The entry at an absolute path, without following any symlink."""
        node = self.root
        for part in path.split("/"):
            if not part:
                continue
            if node.children is None:
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def __contains__(self, path: str) -> bool:
        return self.get(path) is not None

    def walk(self) -> Iterator[Entry]:
        """Every entry, root first, in sorted path order (parents before children)."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            if node.children:
                stack.extend(node.children[k] for k in sorted(node.children, reverse=True))

    def __iter__(self) -> Iterator[Entry]:
        return self.walk()

    def __len__(self) -> int:
        return sum(1 for _ in self.walk())

    def kind(self, path: str) -> str | None:
        """What is at ``path`` for a path walk (:class:`~ocislim.layers.pathwalk.TreeView`):
        "file", "dir", "symlink", "other" (devices, fifos) or None; never follows."""
        entry = self.get(path)
        if entry is None:
            return None
        kind = entry.kind
        return kind if kind in ("file", "dir", "symlink") else "other"

    def readlink(self, path: str) -> str:
        """Target of the symlink at ``path`` ("" when there is none)."""
        entry = self.get(path)
        return entry.linkname if entry is not None else ""

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """Resolve symlinks in ``path`` inside the tree; the result never leaves ``/``.

        Missing components are kept as they are and the walk goes on past them
        (``through_missing``, see :mod:`ocislim.layers.pathwalk`).  Raises
        :class:`UnsafeArchiveError` on a symlink loop.
        """
        res = pathwalk.resolve(self, path, follow=follow_last, through_missing=True)
        if res.status == "loop":
            raise UnsafeArchiveError(f"too many levels of symbolic links in {path!r}")
        return res.path

    def follow(self, path: str) -> Entry | None:
        """The entry ``path`` names through symlinks (None: absent, or a symlink loop)."""
        try:
            return self.get(self.resolve(path))
        except UnsafeArchiveError:
            return None

    # -- changes ---------------------------------------------------------------------------

    def _new_inode(self) -> int:
        self._next_inode += 1
        return self._next_inode

    def _parent_dir(self, path: str, layer: int, what: str) -> tuple[Entry, str]:
        """The directory entry that will hold ``path`` (created if implied), and the name."""
        parent_path, _, name = path.rpartition("/")  # ``path`` is normalised
        parent_path = parent_path or "/"
        cached = self._parents.get(parent_path)
        if cached is not None:
            return cached, name
        real_parent = self.resolve(parent_path)
        node = self.root
        walked = ""
        for part in (p for p in real_parent.split("/") if p):
            walked += "/" + part
            assert node.children is not None
            child = node.children.get(part)
            if child is None:
                child = Entry(
                    walked,
                    synthetic_dir(walked, self._implied_mtime),
                    -1,
                    self._new_inode(),
                    children={},
                )
                node.children[part] = child
                if self._sink:
                    self._sink.directory(child, True)
            elif not child.is_dir:
                raise ImageError(f"{what}: parent {walked} of {path} is not a directory")
            node = child
        self._parents[parent_path] = node
        return node, name

    def _detach(self, parent: Entry, name: str) -> None:
        assert parent.children is not None
        self._parents.clear()
        entry = parent.children.pop(name)
        if entry.children:
            for child_name in list(entry.children):
                self._detach(entry, child_name)
        if self._sink:
            self._sink.removed(entry)

    def _remove_lower(self, parent: Entry, name: str, layer: int) -> None:
        """Remove ``parent/name`` as far as lower layers made it (whiteout semantics)."""
        assert parent.children is not None
        entry = parent.children[name]
        if entry.children:
            for child_name in list(entry.children):
                self._remove_lower(entry, child_name, layer)
        if entry.layer != layer and not entry.children:
            self._parents.clear()
            parent.children.pop(name)
            if self._sink:
                self._sink.removed(entry)

    def _existing_dir(self, path: str) -> Entry | None:
        """The directory at ``path`` (symlinks resolved inside the tree), if there is one."""
        entry = self.get(self.resolve(path))
        return entry if entry is not None and entry.is_dir else None

    def whiteout(self, dir_path: str, name: str, layer: int, what: str) -> None:
        """Apply ``dir_path/.wh.name``: hide ``name`` as lower layers made it.

        A whiteout only removes: when ``dir_path`` is not an existing directory,
        nothing happens (no parent is created for it).
        """
        parent = self._existing_dir(dir_path)
        if parent is not None and parent.children and name in parent.children:
            self._remove_lower(parent, name, layer)

    def opaque(self, dir_path: str, layer: int, what: str) -> None:
        """Apply ``dir_path/.wh..wh..opq``: hide every lower-layer child of the directory.

        Like :meth:`whiteout`, it never creates anything.
        """
        parent = self._existing_dir(dir_path)
        if parent is None or not parent.children:
            return
        for name in list(parent.children):
            self._remove_lower(parent, name, layer)

    def add(
        self,
        path: str,
        info: tarfile.TarInfo,
        layer: int,
        ordinal: int,
        data: ByteReader | None,
        what: str,
    ) -> Entry:
        """Apply one non-whiteout member. Returns the entry now at the (resolved) path."""
        check_header(info, path, what)
        if path == "/":
            if not info.isdir():
                raise UnsafeArchiveError(f"{what}: the root entry is not a directory")
            self.root.info = info
            self.root.layer = layer
            if self._sink:
                self._sink.directory(self.root, False)
            return self.root
        if info.islnk():
            return self._add_hardlink(path, info, layer, what)
        parent, name = self._parent_dir(path, layer, what)
        assert parent.children is not None
        existing = parent.children.get(name)
        if existing is not None and existing.is_dir and info.isdir():
            existing.info = info
            existing.layer = layer
            if self._sink:
                self._sink.directory(existing, False)
            return existing
        if existing is not None:
            self._detach(parent, name)
        full = parent.path.rstrip("/") + "/" + name
        entry = Entry(full, info, layer, self._new_inode())
        if info.isdir():
            entry.children = {}
        elif info.isfile():
            entry.data = DataRef(layer, ordinal, info.size)
        parent.children[name] = entry
        if self._sink:
            if info.isdir():
                self._sink.directory(entry, True)
            else:
                self._sink.file(entry, data if info.isfile() else None)
        return entry

    def _add_hardlink(self, path: str, info: tarfile.TarInfo, layer: int, what: str) -> Entry:
        target_path = self.resolve(normalize(info.linkname, what), follow_last=False)
        target = self.get(target_path)
        if target is None:
            raise UnsafeArchiveError(f"{what}: hardlink {path} -> {info.linkname}: no such target")
        if target.is_dir:
            raise UnsafeArchiveError(f"{what}: hardlink {path} -> {info.linkname} is a directory")
        parent, name = self._parent_dir(path, layer, what)
        assert parent.children is not None
        full = parent.path.rstrip("/") + "/" + name
        if full == target.path:
            return target  # a link to itself changes nothing
        if target.path.startswith(full + "/"):
            raise UnsafeArchiveError(
                f"{what}: hardlink {path} -> {info.linkname} would replace a directory "
                "holding its own target"
            )
        if name in parent.children:
            self._detach(parent, name)
        # The group shares the target's inode, so its header (type, mode, owner)
        # is the target's; only the name is the link's own.
        linked = copy.copy(target.info)
        linked.name = info.name
        entry = Entry(full, linked, layer, target.inode, target.data)
        parent.children[name] = entry
        if self._sink:
            self._sink.hardlink(entry, target)
        return entry


def implied_mtime() -> int:
    """Timestamp for headers ocislim invents: ``SOURCE_DATE_EPOCH`` or 0."""
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        return 0
