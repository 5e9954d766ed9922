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

import csv
import io
import os
import posixpath
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ocislim.inspect.packages import APK_DATABASES, canonical_pip_name, parse_package_json
from ocislim.layers.pathwalk import resolve
from ocislim.layers.tree import FileTree
from ocislim.slim.plan import KeepPlan, KeptPath, Reason

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
DPKG_INFO_KEPT = ("list", "md5sums", "conffiles")
_PARTIAL_RE = re.compile(r"kept (\d+) of (\d+) files")
_SITE_RE = re.compile(r"^(.*/(?:site|dist)-packages)/[^/]+\.dist-info$")
_NPM_DIR_RE = re.compile(
    r"^(?:.*/node_modules|/usr/share/nodejs|/usr/lib/nodejs|/usr/lib/[^/]+/nodejs)"
    r"/(?:@[^/]+/)?[^/.@][^/]*$"
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


class _Ledger:
    """Shared state of one accounting pass."""

    def __init__(self, tree: FileTree, kept: Collection[str], read: Reader) -> None:
        self.tree = tree
        self.kept = kept
        self.read = read
        self.metadata: set[str] = set()
        self.replaced: dict[str, bytes] = {}
        self.owners: dict[str, str] = {}
        self.packages: list[PackageAccount] = []

    def locate(self, path: str) -> tuple[str | None, bool, bool]:
        """``(canonical path or None, is a directory, kept)`` of a path a database names."""
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


def account(tree: FileTree, kept: Collection[str], read: Reader, mode: str = "trim") -> Accounting:
    """The packages of ``tree`` against the ``kept`` paths, and the database files the
    slim image gets under ``mode`` (see the module docstring)."""
    if mode not in PACKAGE_DB_MODES:
        raise ValueError(f"unknown package-db mode {mode!r}")
    ledger = _Ledger(tree, kept, read)
    _dpkg(ledger, mode)
    _apk(ledger, mode)
    _pip(ledger, mode)
    _npm(ledger, mode)
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


# --- dpkg ---------------------------------------------------------------------------


def _raw_stanzas(text: str) -> list[list[str]]:
    """Records of a dpkg status file as their lines (continuations kept)."""
    out: list[list[str]] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def _fields(lines: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        if line[:1] in (" ", "\t"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def partial_counts(value: str) -> tuple[int, int] | None:
    """``(kept, files)`` from an ``Ocislim-Partial`` field's value."""
    match = _PARTIAL_RE.search(value)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _dpkg(ledger: _Ledger, mode: str) -> None:
    status = ledger.regular(DPKG_STATUS)
    if status is None:
        return
    kept_stanzas: list[str] = []
    for lines in _raw_stanzas(_decode(status)):
        fields = _fields(lines)
        name = fields.get("Package")
        if not name or fields.get("Status", "").split()[-1:] != ["installed"]:
            continue
        arch = fields.get("Architecture", "")
        base = f"{DPKG_INFO}/{name}:{arch}"
        if ledger.tree.get(base + ".list") is None:
            base = f"{DPKG_INFO}/{name}"
        key = f"dpkg:{name}" + (f":{arch}" if arch else "")
        listed = ledger.regular(base + ".list") or b""
        md5sums = ledger.regular(base + ".md5sums") or b""
        files: set[str] = set()
        kept_files: set[str] = set()
        kept_list: list[str] = []
        for path in _decode(listed).splitlines():
            if not path.startswith("/"):
                continue
            canonical, is_dir, kept = ledger.locate(path)
            if kept:
                kept_list.append(path)
            if canonical is not None and not is_dir:
                files.add(path)
                ledger.own(canonical, key)
                if kept:
                    kept_files.add(path)
        kept_sums: list[str] = []
        for line in _decode(md5sums).splitlines():
            _, _, rel = line.partition("  ")
            path = "/" + rel.lstrip("/")
            if path in kept_files:
                kept_sums.append(line)
            elif ledger.locate(path)[0] is None:
                files.add(path)  # listed but absent from the source image: not there either
        counts = fields.get(PARTIAL_FIELD)
        known = partial_counts(counts) if counts else None
        total, kept_n = (known[1], known[0]) if known else (len(files), len(kept_files))
        ledger.packages.append(
            PackageAccount("dpkg", name, fields.get("Version", ""), arch, total, kept_n)
        )
        if mode == "keep":
            continue
        if not kept_files:
            continue
        stanza = _trim_conffiles(lines, ledger)
        if kept_n < total and PARTIAL_FIELD not in fields:
            stanza.append(f"{PARTIAL_FIELD}: kept {kept_n} of {total} files")
        kept_stanzas.append("\n".join(stanza) + "\n")
        ledger.add_metadata(base + ".list", _encode("".join(p + "\n" for p in kept_list)))
        ledger.add_metadata(base + ".md5sums", _encode("".join(s + "\n" for s in kept_sums)))
        conffiles = ledger.regular(base + ".conffiles")
        if conffiles is not None:
            keep = [p for p in _decode(conffiles).splitlines() if ledger.locate(p.split(" ")[0])[2]]
            ledger.add_metadata(base + ".conffiles", _encode("".join(p + "\n" for p in keep)))
    if mode == "keep":
        for entry in _subtree(ledger.tree, DPKG_DIR):
            ledger.add_metadata(entry)
        return
    ledger.add_metadata(DPKG_STATUS, _encode("\n".join(kept_stanzas)))
    for path in DPKG_SUPPORT:
        ledger.add_metadata(path)


def _trim_conffiles(lines: list[str], ledger: _Ledger) -> list[str]:
    """A status record with its ``Conffiles`` continuation lines limited to kept files."""
    out: list[str] = []
    in_conffiles = False
    conffiles: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if in_conffiles:
                if ledger.locate(line.split()[0])[2]:
                    conffiles.append(line)
                continue
            out.append(line)
            continue
        in_conffiles = line.partition(":")[0].strip() == "Conffiles"
        if in_conffiles:
            out.append(line)
            conffiles = []
            out.append("\0conffiles")  # placeholder, filled once the lines are known
        else:
            out.append(line)
    if "\0conffiles" in out:
        at = out.index("\0conffiles")
        if conffiles:
            out[at : at + 1] = conffiles
        else:
            del out[at - 1 : at + 1]
    return out


def _subtree(tree: FileTree, top: str) -> Iterator[str]:
    root = tree.get(top)
    if root is None:
        return
    stack = [root]
    while stack:
        node = stack.pop()
        yield node.path
        stack.extend(node.children.values() if node.children else ())


# --- apk ----------------------------------------------------------------------------


def _apk(ledger: _Ledger, mode: str) -> None:
    for db in APK_DATABASES:
        data = ledger.regular(db)
        if data is not None:
            break
    else:
        return
    out: list[str] = []
    for block in _decode(data).split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        if not lines:
            continue
        name = version = arch = ""
        folder = ""
        files = kept = 0
        trimmed: list[str] = []
        owned: list[str] = []
        skipping = False
        for line in lines:
            tag, value = line[:2], line[2:]
            if tag == "P:":
                name = value
            elif tag == "V:":
                version = value
            elif tag == "A:":
                arch = value
            if tag == "F:":
                folder = value
                skipping = False
            elif tag == "R:":
                path = "/" + posixpath.join(folder, value).lstrip("/")
                canonical, _, is_kept = ledger.locate(path)
                files += 1
                if canonical is not None:
                    owned.append(canonical)
                kept += is_kept
                skipping = not is_kept
                if skipping:
                    continue
            elif tag in ("Z:", "a:", "M:") and skipping:
                continue
            else:
                skipping = False
            trimmed.append(line)
        if not name:
            continue
        account = PackageAccount("apk", name, version, arch, files, kept)
        for path in owned:
            ledger.own(path, account.key)
        ledger.packages.append(account)
        if kept:
            out.append("\n".join(trimmed) + "\n")
    if mode == "keep":
        ledger.add_metadata(db)
    else:
        ledger.add_metadata(db, _encode("\n".join(out) + ("\n" if out else "")))


# --- Python distributions -----------------------------------------------------------


def _pip(ledger: _Ledger, mode: str) -> None:
    for entry in ledger.tree.walk():
        match = _SITE_RE.match(entry.path)
        if not entry.is_dir or match is None:
            continue
        site, info_dir = match.group(1), entry.path
        record = ledger.regular(f"{info_dir}/RECORD")
        metadata = ledger.regular(f"{info_dir}/METADATA")
        if record is None or metadata is None:
            continue
        name, version = _metadata_name(_decode(metadata))
        if not name:
            continue
        key = f"pip:{name}"
        files = kept = 0
        rows: list[list[str]] = []
        for row in csv.reader(io.StringIO(_decode(record))):
            if not row:
                continue
            path = posixpath.normpath(f"{site}/{row[0]}")
            if path == info_dir or path.startswith(info_dir + "/"):
                rows.append(row)
                continue
            canonical, is_dir, is_kept = ledger.locate(path)
            if is_dir:
                continue
            files += 1
            if canonical is not None:
                ledger.own(canonical, key)
            if is_kept:
                kept += 1
                rows.append(row)
        ledger.packages.append(PackageAccount("pip", name, version, "", files, kept))
        if not kept and mode != "keep":
            continue
        for path in _subtree(ledger.tree, info_dir):
            ledger.add_metadata(path)
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        ledger.add_metadata(f"{info_dir}/RECORD", _encode(text.getvalue()))


def _metadata_name(text: str) -> tuple[str, str]:
    name = version = ""
    for line in text.splitlines():
        if not line.strip():
            break
        if line.startswith("Name:"):
            name = canonical_pip_name(line[5:].strip())
        elif line.startswith("Version:"):
            version = line[8:].strip()
    return name, version


# --- npm ----------------------------------------------------------------------------


def _npm(ledger: _Ledger, mode: str) -> None:
    for entry in ledger.tree.walk():
        if not entry.is_dir or _NPM_DIR_RE.match(entry.path) is None:
            continue
        manifest = f"{entry.path}/package.json"
        data = ledger.regular(manifest)
        parsed = parse_package_json(data) if data is not None else None
        if parsed is None:
            continue
        name, version = parsed
        key = f"npm:{name}"
        files = kept = 0
        stack = [entry]
        while stack:
            node = stack.pop()
            for child_name, child in (node.children or {}).items():
                if child.is_dir:
                    if child_name != "node_modules":
                        stack.append(child)
                    continue
                ledger.own(child.path, key)
                if child.path == manifest:  # the metadata itself, kept when the package is
                    continue
                files += 1
                kept += child.path in ledger.kept
        ledger.packages.append(PackageAccount("npm", name, version, "", files, kept))
        if kept or mode == "keep":
            ledger.add_metadata(manifest)


# --- reading the rootfs on disk -----------------------------------------------------


def disk_reader(root: Path, tree: FileTree) -> Reader:
    """Read a tree's regular file from its mirror at ``root`` (as unpacked by ocislim).

    Only paths whose every parent is a directory in the tree are read, and the last
    component is opened with ``O_NOFOLLOW``, so no link planted by the image is
    followed.  None when unreadable.
    """

    def read(path: str) -> bytes | None:
        parent = posixpath.dirname(path)
        while parent != "/":
            entry = tree.get(parent)
            if entry is None or not entry.is_dir or entry.info.issym():
                return None
            parent = posixpath.dirname(parent)
        try:
            fd = os.open(root / path.lstrip("/"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read()

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


__all__ = ["Accounting", "PackageAccount", "account", "disk_reader"]
