"""One streaming pass over an image's layers, collecting what xray and diff report.

:func:`scan` reads every layer once, in order, and merges it into a
:class:`FileTree` while it records, per layer, which paths were added,
modified or deleted and the largest files; the per-path sizes that dive's
wasted-space and efficiency figures need; a SHA-256 of every regular file's
content (when asked); and the bytes of the few small files that describe the
image (``/etc/passwd``, package databases, CA bundles, ...).  Nothing is
written to disk.  Every layer's digests are verified as it streams; a
mismatch or a hostile member raises (an :class:`~ocislim.errors.OcislimError`)
and the partial scan is discarded.

The result answers questions about the *merged* tree through
:meth:`ImageScan.content_digest` and :meth:`ImageScan.file_bytes`, which only
return data belonging to the entry that is finally visible at a path.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ocislim.image.source import Image
from ocislim.layers.merge import classify, iter_members
from ocislim.layers.tree import Entry, FileTree, implied_mtime
from ocislim.progress import NULL_PROGRESS, Progress

_CHUNK = 1 << 20
# A file of interest larger than this is hashed but not kept in memory.
MAX_CAPTURE = 16 << 20
EMPTY_DIGEST = hashlib.sha256(b"").digest()

# Files whose bytes describe the image: accounts, package databases, CA bundles.
CAPTURED_PATHS = frozenset(
    {
        "/etc/passwd",
        "/etc/group",
        "/etc/shells",
        "/etc/os-release",
        "/usr/lib/os-release",
        "/var/lib/dpkg/status",
        "/lib/apk/db/installed",
        "/usr/lib/apk/db/installed",
    }
)
CA_BUNDLE_PATHS = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
)
_PIP_METADATA = re.compile(
    r"/(?:site|dist)-packages/[^/]+(?:\.dist-info/METADATA|\.egg-info/PKG-INFO|\.egg-info)$"
)
# Debian installs node modules in these directories, which node searches like node_modules.
NPM_SYSTEM_ROOTS = re.compile(r"^(/usr/share/nodejs|/usr/lib/nodejs|/usr/lib/[^/]+/nodejs)/")
_NPM_MANIFEST = re.compile(
    r"(?:/node_modules|^/usr/share/nodejs|^/usr/lib/nodejs|^/usr/lib/[^/]+/nodejs)"
    r"/(?:@[^/]+/)?[^/.@][^/]*/package\.json$"
)


def npm_root(path: str) -> str:
    """The module directory (``.../node_modules`` or a system root) holding ``path``."""
    cut = path.find("/node_modules/")
    if cut >= 0:
        return path[: cut + len("/node_modules")]
    match = NPM_SYSTEM_ROOTS.match(path)
    return match.group(1) if match else path.rpartition("/")[0]


def wants_capture(path: str) -> bool:
    """True for the merged-tree paths whose bytes :func:`scan` keeps."""
    if path in CAPTURED_PATHS or path in CA_BUNDLE_PATHS:
        return True
    if path.startswith("/var/lib/dpkg/status.d/"):
        return True
    if path.endswith("/certifi/cacert.pem"):
        return True
    if path.endswith(("/METADATA", "/PKG-INFO", ".egg-info")):
        return _PIP_METADATA.search(path) is not None
    if path.endswith("/package.json"):
        return _NPM_MANIFEST.search(path) is not None
    return False


@dataclass
class LayerScan:
    """What one layer changed.  Counts are of non-directory entries.

    ``added``: paths no lower layer had; ``modified``: paths that replaced a
    lower layer's entry; ``deleted``/``deleted_bytes``: lower-layer entries (and
    their file bytes) hidden by this layer's whiteouts and opaque markers.
    ``top`` holds the largest regular files of the layer, biggest first.
    """

    index: int
    digest: str
    media_type: str
    size: int
    diff_id: str
    uncompressed_size: int = 0
    created_by: str | None = None
    comment: str | None = None
    entries: int = 0
    files: int = 0
    directories: int = 0
    whiteouts: int = 0
    added: int = 0
    modified: int = 0
    deleted: int = 0
    deleted_bytes: int = 0
    content_bytes: int = 0
    top: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class PathWaste:
    """A path present in more than one layer, with the bytes all its copies take."""

    path: str
    layers: int
    bytes: int


@dataclass
class ImageScan:
    """The outcome of :func:`scan`.  ``tree`` is the merged tree."""

    tree: FileTree
    layers: list[LayerScan]
    efficiency: float
    wasted_bytes: int
    inefficiencies: list[PathWaste]
    hashed: bool
    _digests: dict[tuple[int, int], bytes] = field(repr=False, default_factory=dict)
    _captured: dict[tuple[int, int], bytes] = field(repr=False, default_factory=dict)
    _captured_paths: set[str] = field(repr=False, default_factory=set)

    def content_digest(self, entry: Entry) -> bytes | None:
        """SHA-256 of a regular file's bytes (``None`` if not a file or not hashed)."""
        if entry.data is None:
            return None
        if entry.data.size == 0:
            return EMPTY_DIGEST
        return self._digests.get((entry.data.layer, entry.data.ordinal))

    def file_bytes(self, path: str, follow: bool = True) -> bytes | None:
        """The bytes of a captured file as the merged tree shows it at ``path``.

        Symlinks are followed inside the tree when ``follow``.  ``None`` when the
        path is absent, not a regular file, or was not captured.
        """
        real = self.tree.resolve(path) if follow else path
        entry = self.tree.get(real)
        if entry is None or entry.data is None:
            return None
        if entry.data.size == 0:
            return b""
        return self._captured.get((entry.data.layer, entry.data.ordinal))

    def captured_paths(self) -> list[str]:
        """Merged-tree paths whose bytes were captured and are still visible, sorted."""
        visible = []
        for path in self._captured_paths:
            entry = self.tree.get(path)
            if entry is not None and entry.data is not None:
                key = (entry.data.layer, entry.data.ordinal)
                if key in self._captured or entry.data.size == 0:
                    visible.append(path)
        return sorted(visible)


class _DiveLedger:
    """Per-path sizes across layers, as dive's efficiency metric counts them.

    dive builds one tree per layer and visits its leaves (entries with no
    children *in that layer*): a regular file counts its size, other leaves 0,
    and a whiteout of a directory the sizes of everything it hid.  For each
    path, ``cumulative`` sums its sizes over the layers, ``minimum`` keeps the
    smallest; efficiency is sum(minimum) / sum(cumulative) and wasted bytes are
    the cumulative sizes of the paths seen in two or more layers.
    """

    def __init__(self) -> None:
        # path -> [layers seen, cumulative size, minimum size]
        self.paths: dict[str, list[int]] = {}

    def add_layer(self, sizes: dict[str, int]) -> None:
        has_children: set[str] = set()
        for path in sizes:
            parent = path.rpartition("/")[0]
            while parent and parent not in has_children:
                has_children.add(parent)
                parent = parent.rpartition("/")[0]
        paths = self.paths
        for path, size in sizes.items():
            if path in has_children:
                continue
            record = paths.get(path)
            if record is None:
                paths[path] = [1, size, size]
            else:
                record[0] += 1
                record[1] += size
                if size < record[2]:
                    record[2] = size

    def result(self, keep: int) -> tuple[float, int, list[PathWaste]]:
        minimum = cumulative = wasted = 0
        repeated: list[PathWaste] = []
        for path, (count, total, smallest) in self.paths.items():
            minimum += smallest
            cumulative += total
            if count > 1:
                wasted += total
                repeated.append(PathWaste(path, count, total))
        efficiency = 1.0 if cumulative == 0 else minimum / cumulative
        repeated.sort(key=lambda w: (-w.bytes, w.path))
        return efficiency, wasted, repeated[:keep]


def _existing(tree: FileTree, path: str) -> Entry | None:
    """The entry that a member named ``path`` would replace, before it is applied."""
    parent_path = path.rpartition("/")[0] or "/"
    parent = tree.get(parent_path)
    if parent is None or parent.children is None:
        # A symlink (or nothing) on the way: resolve it as the tree will.
        parent = tree.get(tree.resolve(parent_path))
        if parent is None or parent.children is None:
            return None
    return parent.children.get(path.rpartition("/")[2])


def _lower_subtree(entry: Entry, layer: int) -> tuple[int, int, int]:
    """``(entries, bytes, dive bytes)`` of the part of ``entry``'s subtree lower layers made.

    A whiteout removes only what lower layers made; ``dive bytes`` is what dive
    charges the whiteout: the file bytes of a hidden directory, 0 for a file.
    """
    count = size = 0
    seen_inodes: set[int] = set()
    stack = [entry]
    while stack:
        node = stack.pop()
        if node.children:
            stack.extend(node.children.values())
        if node.layer == layer or node.is_dir:
            continue
        count += 1
        if node.data is not None and node.inode not in seen_inodes:
            seen_inodes.add(node.inode)
            size += node.data.size
    return count, size, size if entry.is_dir else 0


def _history_for_layers(history: list[dict[str, Any]], count: int) -> list[dict[str, Any] | None]:
    """The history entry that made each layer (``None`` where history runs short)."""
    made = [h for h in history if not h.get("empty_layer")]
    return [made[i] if i < len(made) else None for i in range(count)]


def scan(
    image: Image,
    *,
    hash_contents: bool = True,
    capture: Callable[[str], bool] | None = wants_capture,
    top: int = 10,
    inefficiencies: int = 20,
    progress: Progress = NULL_PROGRESS,
) -> ImageScan:
    """Read every layer of ``image`` once and return an :class:`ImageScan`.

    ``hash_contents``: compute a SHA-256 of every regular file (needed for
    duplicates and content diffs); otherwise only captured files are read.
    ``capture``: which merged-tree paths to keep the bytes of (``None``: none).
    ``top``: how many largest files to keep per layer.  Read-only; on error
    nothing is kept.
    """
    tree = FileTree(None, implied_mtime())
    ledger = _DiveLedger()
    digests: dict[tuple[int, int], bytes] = {}
    captured: dict[tuple[int, int], bytes] = {}
    captured_paths: set[str] = set()
    history = _history_for_layers(image.config.history, len(image.layers))
    results: list[LayerScan] = []
    total = len(image.layers)
    for layer in image.layers:
        k = layer.index
        desc = layer.descriptor
        made_by = history[k]
        info = LayerScan(
            index=k,
            digest=str(desc.digest),
            media_type=desc.media_type,
            size=desc.size,
            diff_id=str(layer.diff_id),
            created_by=(made_by or {}).get("created_by"),
            comment=(made_by or {}).get("comment"),
        )
        progress.stage("read", f"layer {k + 1}/{total} {desc.digest}")
        what = f"layer {k}"
        sizes: dict[str, int] = {}
        largest: list[tuple[int, str]] = []
        stats: dict[str, int] = {}
        for ordinal, member, tar in iter_members(layer, progress, stats):
            info.entries += 1
            kind, path, name = classify(member.name, what)
            if kind == "entry":
                if path == "/":
                    tree.add(path, member, k, ordinal, None, what)
                    continue
                if member.isdir():
                    info.directories += 1
                    tree.add(path, member, k, ordinal, None, what)
                    sizes[path] = 0
                    continue
                before = _existing(tree, path)
                entry = tree.add(path, member, k, ordinal, None, what)
                info.files += 1
                if before is None:
                    info.added += 1
                elif before.layer != k:
                    info.modified += 1
                if not member.isreg():
                    sizes[path] = 0
                    continue
                size = member.size
                sizes[path] = size
                info.content_bytes += size
                if top > 0:
                    if len(largest) < top:
                        heapq.heappush(largest, (size, path))
                    elif size > largest[0][0]:
                        heapq.heapreplace(largest, (size, path))
                keep = capture is not None and capture(entry.path)
                if size and (hash_contents or keep):
                    _read_member(tar, member, (k, ordinal), hash_contents, keep, digests, captured)
                if keep:
                    captured_paths.add(entry.path)
            elif kind == "whiteout":
                assert name is not None
                info.whiteouts += 1
                target = tree.get(tree.resolve(path).rstrip("/") + "/" + name)
                dive_size = 0
                if target is not None:
                    count, removed, dive_size = _lower_subtree(target, k)
                    info.deleted += count
                    info.deleted_bytes += removed
                tree.whiteout(path, name, k, what)
                sizes[path.rstrip("/") + "/" + name] = dive_size
            elif kind == "opaque":
                info.whiteouts += 1
                directory = tree.get(tree.resolve(path))
                if directory is not None and directory.children:
                    for child in directory.children.values():
                        count, removed, _ = _lower_subtree(child, k)
                        info.deleted += count
                        info.deleted_bytes += removed
                tree.opaque(path, k, what)
        info.uncompressed_size = stats.get("uncompressed_size", 0)
        info.top = sorted(largest, key=lambda item: (-item[0], item[1]))
        ledger.add_layer(sizes)
        results.append(info)
    efficiency, wasted, repeated = ledger.result(inefficiencies)
    visible = _visible_keys(tree)
    return ImageScan(
        tree=tree,
        layers=results,
        efficiency=efficiency,
        wasted_bytes=wasted,
        inefficiencies=repeated,
        hashed=hash_contents,
        _digests={key: d for key, d in digests.items() if key in visible},
        _captured={key: b for key, b in captured.items() if key in visible},
        _captured_paths=captured_paths,
    )


def _read_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    key: tuple[int, int],
    hash_it: bool,
    keep: bool,
    digests: dict[tuple[int, int], bytes],
    captured: dict[tuple[int, int], bytes],
) -> None:
    stream = tar.extractfile(member)
    if stream is None:
        return
    keep = keep and member.size <= MAX_CAPTURE
    if member.size <= _CHUNK:
        data = stream.read()
        if hash_it:
            digests[key] = hashlib.sha256(data).digest()
        if keep:
            captured[key] = data
        return
    hasher = hashlib.sha256()
    parts: list[bytes] = []
    while chunk := stream.read(_CHUNK):
        if hash_it:
            hasher.update(chunk)
        if keep:
            parts.append(chunk)
    if hash_it:
        digests[key] = hasher.digest()
    if keep:
        captured[key] = b"".join(parts)


def _visible_keys(tree: FileTree) -> set[tuple[int, int]]:
    """``(layer, ordinal)`` of every regular file the merged tree still shows."""
    return {
        (entry.data.layer, entry.data.ordinal) for entry in tree.walk() if entry.data is not None
    }
