"""The facts one package-database pass collects: each package's kept and total files
(:class:`PackageAccount`), the database files the slim image gets and their new bytes
(:class:`Accounting`), and the :class:`Ledger` the per-format readers write into.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from ocislim.layers.pathwalk import PathResolver, resolve
from ocislim.layers.tree import FileTree

PACKAGE_DB_MODES = ("trim", "keep", "drop")
PARTIAL_FIELD = "Ocislim-Partial"
DPKG_DIR = "/var/lib/dpkg"
DPKG_STATUS = f"{DPKG_DIR}/status"
DPKG_INFO = f"{DPKG_DIR}/info"
# Small files and directories dpkg and dpkg-query expect beside status.
DPKG_SUPPORT = (
    f"{DPKG_INFO}/format",
    f"{DPKG_DIR}/arch",
    f"{DPKG_DIR}/diversions",
    f"{DPKG_DIR}/statoverride",
    f"{DPKG_DIR}/updates",
    f"{DPKG_DIR}/triggers",
    f"{DPKG_DIR}/triggers/File",
    f"{DPKG_DIR}/triggers/Unincorp",
)

Reader = Callable[[str], bytes | None]


@dataclass(frozen=True)
class PackageAccount:
    """One package: ``files`` non-directory paths its database lists, ``kept`` of them
    kept (``None``: not known, e.g. an image ocislim did not slim)."""

    manager: str
    name: str
    version: str
    arch: str = ""
    files: int = 0
    kept: int | None = None

    @property
    def removed(self) -> int | None:
        return None if self.kept is None else self.files - self.kept

    @property
    def state(self) -> str | None:
        """``whole``, ``partial``, ``removed``, or None when not known."""
        if self.kept is None:
            return None
        if self.kept == 0:
            return "removed"
        return "whole" if self.kept >= self.files else "partial"

    @property
    def key(self) -> str:
        return f"{self.manager}:{self.name}" + (f":{self.arch}" if self.arch else "")

    def to_json(self) -> dict[str, object]:
        return {
            "manager": self.manager,
            "name": self.name,
            "version": self.version,
            "arch": self.arch,
            "files": self.files,
            "kept": self.kept,
            "removed": self.removed,
            "state": self.state,
        }


@dataclass(frozen=True)
class Accounting:
    """What :func:`account` found.  ``metadata``: database paths the slim image gets
    (sorted); ``replaced``: new bytes for those whose content was trimmed; ``owners``:
    canonical tree path -> owning package key (non-directory paths)."""

    mode: str
    packages: tuple[PackageAccount, ...] = ()
    metadata: tuple[str, ...] = ()
    replaced: Mapping[str, bytes] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"whole": 0, "partial": 0, "removed": 0}
        for p in self.packages:
            if p.state is not None:
                out[p.state] += 1
        return out


class Ledger:
    """Shared state of one accounting pass."""

    def __init__(self, tree: FileTree, kept: Collection[str], read: Reader) -> None:
        self.tree = tree
        self.kept = kept
        self.read = read
        self.metadata: set[str] = set()
        self.replaced: dict[str, bytes] = {}
        self.owners: dict[str, str] = {}
        self.packages: list[PackageAccount] = []
        # Resolutions cached: a database names many files of one directory, often
        # through the same link (``/lib`` of a merged ``/usr``).
        self._paths = PathResolver(tree)

    def locate(self, path: str) -> tuple[str | None, bool, bool]:
        """``(canonical path or None, is a directory, kept)`` of a path a database names."""
        if "/." not in path:  # no "." or ".." component: a fast path for most names
            parent, _, name = path.rpartition("/")
            where = self._paths.resolve(parent or "/")
            if where.status == "found" and where.kind == "dir":
                canonical = where.path.rstrip("/") + "/" + name
                entry = self.tree.get(canonical)
                if entry is not None and not entry.info.issym():
                    links = where.symlinks
                    kept = canonical in self.kept and all(link in self.kept for link in links)
                    return canonical, entry.is_dir, kept
        res = resolve(self.tree, path, follow=False)
        if res.status != "found":
            return None, False, False
        entry = self.tree.get(res.path)
        is_dir = entry is not None and entry.is_dir
        if entry is not None and entry.info.issym():  # a link to a directory (merged /usr)
            is_dir = resolve(self.tree, path).kind == "dir"
        kept = res.path in self.kept and all(link in self.kept for link in res.symlinks)
        return res.path, is_dir, kept

    def regular(self, path: str) -> bytes | None:
        """The bytes of ``path`` when it is a regular file of the tree (not a link)."""
        entry = self.tree.get(path)
        if entry is None or entry.data is None or entry.info.issym():
            return None
        return self.read(path)

    def add_metadata(self, path: str, content: bytes | None = None) -> None:
        entry = self.tree.get(path)
        if entry is None:
            return
        self.metadata.add(path)
        if content is not None and entry.data is not None:
            self.replaced[path] = content

    def own(self, path: str, key: str) -> None:
        self.owners.setdefault(path, key)
