"""Facts about an image's merged tree: accounts, shells, CA bundles, special files, duplicates.

Everything here is a pure function of an :class:`ImageScan` (or of file
text), so it is tested on synthetic trees.  Paths are merged-tree paths;
symlinks are resolved inside the tree, never on the host.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ocislim.inspect.scan import CA_BUNDLE_PATHS, ImageScan
from ocislim.layers.tree import FileTree

SHELL_NAMES = (
    "sh",
    "bash",
    "rbash",
    "dash",
    "ash",
    "zsh",
    "ksh",
    "ksh93",
    "mksh",
    "csh",
    "tcsh",
    "fish",
    "busybox",
)
SHELL_DIRS = ("/bin", "/usr/bin", "/usr/local/bin")
CERT_MARKER = b"-----BEGIN CERTIFICATE-----"
_CAPABILITY_XATTR = "SCHILY.xattr.security.capability"


@dataclass(frozen=True)
class Account:
    name: str
    uid: int | None
    gid: int | None
    home: str
    shell: str


@dataclass(frozen=True)
class Group:
    name: str
    gid: int | None
    members: tuple[str, ...]


@dataclass(frozen=True)
class DuplicateGroup:
    """Regular files with the same content.  ``copies`` counts distinct inodes
    (hardlinks share one); the copies beyond the first waste ``wasted_bytes``."""

    size: int
    digest: str
    copies: int
    paths: tuple[str, ...]

    @property
    def wasted_bytes(self) -> int:
        return self.size * (self.copies - 1)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_passwd(text: str) -> list[Account]:
    """Accounts in ``/etc/passwd`` order; malformed lines and comments are skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 7:
            continue
        out.append(Account(fields[0], _int(fields[2]), _int(fields[3]), fields[5], fields[6]))
    return out


def parse_group(text: str) -> list[Group]:
    """Groups in ``/etc/group`` order; malformed lines and comments are skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 4:
            continue
        members = tuple(m for m in fields[3].split(",") if m)
        out.append(Group(fields[0], _int(fields[2]), members))
    return out


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", errors="replace")


def accounts(image: ImageScan) -> tuple[list[Account], list[Group]]:
    """Users and groups as ``/etc/passwd`` and ``/etc/group`` list them."""
    return (
        parse_passwd(_text(image.file_bytes("/etc/passwd"))),
        parse_group(_text(image.file_bytes("/etc/group"))),
    )


def _is_regular(tree: FileTree, path: str) -> tuple[bool, str]:
    """Whether ``path`` resolves to a regular file in the tree, and where it resolves to."""
    real = tree.resolve(path)
    entry = tree.get(real)
    return entry is not None and entry.kind == "file", real


def shells(image: ImageScan) -> list[dict[str, str]]:
    """Shells present: those ``/etc/shells`` lists plus well-known names in the bin dirs.

    A candidate counts when it resolves to a regular file.  Paths are shown
    with their directories resolved (``/bin/bash`` on a usr-merged system is
    ``/usr/bin/bash``), so one file reached through a directory link is listed once.
    """
    tree = image.tree
    candidates = {posixpath.join(d, n) for d in SHELL_DIRS for n in SHELL_NAMES}
    for line in _text(image.file_bytes("/etc/shells")).splitlines():
        line = line.strip()
        if line.startswith("/") and not line.startswith("#"):
            candidates.add(posixpath.normpath(line))
    found: dict[str, dict[str, str]] = {}
    for path in sorted(candidates):
        parent, name = posixpath.split(path)
        shown = posixpath.join(tree.resolve(parent), name)
        if shown in found:
            continue
        ok, real = _is_regular(tree, shown)
        if ok:
            found[shown] = {"path": shown, "target": real}
    return [found[p] for p in sorted(found)]


def ca_bundles(image: ImageScan) -> list[dict[str, object]]:
    """CA certificate bundles at the usual places (and certifi's copies), with cert counts.

    ``certificates`` is ``None`` when the bundle was too large to keep in memory.
    """
    tree = image.tree
    paths = set(CA_BUNDLE_PATHS)
    paths.update(p for p in image.captured_paths() if p.endswith("/certifi/cacert.pem"))
    out: list[dict[str, object]] = []
    for path in sorted(paths):
        ok, real = _is_regular(tree, path)
        if not ok:
            continue
        entry = tree.get(real)
        assert entry is not None
        data = image.file_bytes(real, follow=False)
        out.append(
            {
                "path": path,
                "target": real,
                "size": entry.size,
                "certificates": None if data is None else data.count(CERT_MARKER),
            }
        )
    return out


def special_files(tree: FileTree) -> list[dict[str, object]]:
    """Regular files with the setuid or setgid bit, or a ``security.capability`` xattr."""
    out: list[dict[str, object]] = []
    for entry in tree.walk():
        if entry.kind != "file":
            continue
        mode = entry.mode
        caps = _CAPABILITY_XATTR in entry.info.pax_headers
        if not mode & 0o6000 and not caps:
            continue
        out.append(
            {
                "path": entry.path,
                "mode": f"{mode & 0o7777:04o}",
                "uid": entry.info.uid,
                "gid": entry.info.gid,
                "setuid": bool(mode & 0o4000),
                "setgid": bool(mode & 0o2000),
                "capabilities": caps,
            }
        )
    return out


def duplicates(image: ImageScan) -> list[DuplicateGroup]:
    """Groups of two or more distinct non-empty regular files with equal content.

    Needs a scan made with ``hash_contents``.  Sorted by wasted bytes, largest first.
    """
    groups: dict[tuple[int, bytes], dict[int, list[str]]] = {}
    for entry in image.tree.walk():
        if entry.data is None or entry.data.size == 0:
            continue
        digest = image.content_digest(entry)
        if digest is None:
            continue
        groups.setdefault((entry.data.size, digest), {}).setdefault(entry.inode, []).append(
            entry.path
        )
    out = []
    for (size, digest), inodes in groups.items():
        if len(inodes) < 2:
            continue
        paths = tuple(sorted(p for group in inodes.values() for p in group))
        out.append(DuplicateGroup(size, "sha256:" + digest.hex(), len(inodes), paths))
    out.sort(key=lambda g: (-g.wasted_bytes, -g.size, g.paths))
    return out
