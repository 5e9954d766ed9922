"""Honest package databases: which packages a set of kept paths leaves, whole or in part.

:func:`account` reads the package databases of a merged tree (dpkg, apk, Python
``*.dist-info``, npm ``package.json``) and, for a set of kept paths, says for each
package how many of its files are kept and which database files the slim image
gets (``--package-db``):

- ``trim`` (default): the databases describe exactly what is kept.  dpkg:
  ``status`` keeps the entries of packages with at least one kept file and no
  others (their ``Conffiles`` trimmed to kept ones); ``info/PKG.list``,
  ``info/PKG.md5sums`` and ``info/PKG.conffiles`` list only kept paths (so
  ``dpkg --verify`` is clean and ``dpkg-query -L`` true); maintainer scripts and
  other control files are left out.  A package kept in part carries the field
  ``Ocislim-Partial: kept K of N files`` in its ``status`` entry (dpkg keeps
  unknown fields when it rewrites ``status``).  apk: ``installed`` keeps the
  records of kept packages with their ``R:`` lines trimmed.  Python: the
  ``*.dist-info`` of kept distributions, ``RECORD`` trimmed.  npm: the
  ``package.json`` of kept packages.
- ``keep``: the databases as they are, whole (every package looks installed).
- ``drop``: nothing is added (database files the plan kept stay as they are).

A package's files are the non-directory paths its database lists; paths the
source image itself lacks count as removed.  Pure: file bytes come from a
``read`` callable, the result is a function of the tree, the kept set and them.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Collection, Mapping
from pathlib import Path

from ocislim.layers.merge import spooled_data
from ocislim.layers.pathwalk import DiskTree
from ocislim.layers.spool import Spool
from ocislim.layers.tree import FileTree
from ocislim.slim.pkgformats import apk_db, dpkg_db, npm_db, pip_db
from ocislim.slim.pkgledger import PACKAGE_DB_MODES, Accounting, Ledger, PackageAccount, Reader
from ocislim.slim.plan import KeepPlan, KeptPath, Reason


def account(tree: FileTree, kept: Collection[str], read: Reader, mode: str = "trim") -> Accounting:
    """The packages of ``tree`` against the ``kept`` paths, and the database files the
    slim image gets under ``mode`` (see the module docstring)."""
    if mode not in PACKAGE_DB_MODES:
        raise ValueError(f"unknown package-db mode {mode!r}")
    ledger = Ledger(tree, kept, read)
    dpkg_db(ledger, mode)
    apk_db(ledger, mode)
    pip_db(ledger, mode)
    npm_db(ledger, mode)
    if mode == "drop":
        ledger.metadata.clear()
        ledger.replaced.clear()
    if mode == "keep":
        ledger.replaced.clear()
    return Accounting(
        mode,
        tuple(sorted(ledger.packages, key=lambda p: (p.manager, p.name, p.arch, p.version))),
        tuple(sorted(ledger.metadata)),
        dict(sorted(ledger.replaced.items())),
        dict(sorted(ledger.owners.items())),
    )


# --- reading the rootfs on disk -----------------------------------------------------


def disk_reader(root: Path, tree: FileTree) -> Reader:
    """Read a tree's regular file from its mirror at ``root`` (as unpacked by ocislim).

    Only regular files of the tree are read, each reached one component at a time
    without following any link (:meth:`~ocislim.layers.pathwalk.DiskTree.open_file`),
    so neither a link in the image nor one a probed program left on disk (when the
    sandbox had no overlay) leads outside ``root``, and a FIFO does not block.
    None when unreadable.
    """
    disk = DiskTree(root)

    def read(path: str) -> bytes | None:
        entry = tree.get(path)
        if entry is None or entry.kind != "file":
            return None
        fd = disk.open_file(entry.path)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    return read


def spool_reader(tree: FileTree, spool: Spool) -> Reader:
    """Read a tree's regular file from the spool its unpack filled: the bytes the layers
    hold, whatever a probed program did on disk since."""

    def read(path: str) -> bytes | None:
        entry = tree.get(path)
        if entry is None or entry.kind != "file" or entry.data is None:
            return None
        reader = spooled_data(spool)(entry.data)
        return b"".join(iter(lambda: reader.read(1 << 20), b""))

    return read


def with_metadata(plan: KeepPlan, tree: FileTree, accounting: Accounting) -> KeepPlan:
    """``plan`` plus the database files of ``accounting`` (reason ``package-db``) and their
    missing parents (reason ``parent``); sizes are those of the replaced content."""
    reasons: dict[str, list[Reason]] = {k.path: list(k.reasons) for k in plan.kept}
    db = Reason("package-db", detail=f"package database ({accounting.mode})")
    for path in accounting.metadata:
        if path in reasons:
            if db not in reasons[path]:
                reasons[path].insert(0, db)
            continue
        reasons[path] = [db]
        child, parent = path, posixpath.dirname(path)
        while parent not in reasons:
            reasons[parent] = [Reason("parent", by=child)]
            child, parent = parent, posixpath.dirname(parent)
    kept = []
    for path in sorted(reasons):
        entry = tree.get(path)
        assert entry is not None
        new = accounting.replaced.get(path)
        size = len(new) if new is not None else entry.size
        kept.append(KeptPath(path, entry.kind, size, tuple(reasons[path])))
    return KeepPlan(tuple(kept), plan.refused, plan.unresolved)


def removed(
    tree: FileTree, kept: Collection[str], owners: Mapping[str, str]
) -> list[dict[str, object]]:
    """Every path of ``tree`` not in ``kept``: path, kind, size, owning package (or None)."""
    return [
        {"path": e.path, "kind": e.kind, "size": e.size, "package": owners.get(e.path)}
        for e in tree.walk()
        if e.path != "/" and e.path not in kept
    ]


def removed_dirs(items: list[dict[str, object]], depth: int = 3) -> list[dict[str, object]]:
    """Removed paths summed per directory of at most ``depth`` levels, largest first."""
    sums: dict[str, list[int]] = {}
    for item in items:
        path = str(item["path"])
        parts = path.strip("/").split("/")
        top = "/" + "/".join(parts[: min(depth, max(len(parts) - 1, 1))])
        acc = sums.setdefault(top, [0, 0])
        acc[0] += 1
        size = item["size"]
        acc[1] += size if isinstance(size, int) else 0
    ordered = sorted(sums.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return [{"path": p, "paths": n, "size": b} for p, (n, b) in ordered]


def printable(path: str) -> str:
    """``path`` for a one-path-a-line list: bytes that are not UTF-8 are shown as
    ``\\xNN`` and a newline as ``\\n``, so every line is one path."""
    try:
        raw = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = path.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").replace("\n", "\\n")


def report_json(accounting: Accounting) -> dict[str, object]:
    """The report's ``packages`` object."""
    return {
        "mode": accounting.mode,
        "counts": accounting.counts(),
        "list": [p.to_json() for p in accounting.packages],
    }


def parse_json_packages(obj: object) -> list[PackageAccount]:
    """Packages back from a report's ``packages.list``."""
    if not isinstance(obj, dict):
        return []
    out = []
    for p in obj.get("list", []):
        out.append(
            PackageAccount(
                p["manager"], p["name"], p["version"], p.get("arch", ""), p["files"], p["kept"]
            )
        )
    return out


__all__ = ["Accounting", "PackageAccount", "account", "disk_reader", "spool_reader"]
