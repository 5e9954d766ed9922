"""The per-format halves of :func:`ocislim.slim.pkgdb.account`: dpkg, apk, Python
distributions and npm packages, each reading its database from the tree, counting
each package's kept files into the :class:`~ocislim.slim.pkgledger.Ledger` and, for
``trim``, writing the database files that list only what is kept.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from collections.abc import Iterator

from ocislim.inspect.packages import APK_DATABASES, canonical_pip_name, parse_package_json
from ocislim.layers.tree import FileTree
from ocislim.slim.pkgledger import (
    DPKG_DIR,
    DPKG_INFO,
    DPKG_STATUS,
    DPKG_SUPPORT,
    PARTIAL_FIELD,
    Ledger,
    PackageAccount,
)

_PARTIAL_RE = re.compile(r"kept (\d+) of (\d+) files")
_SITE_RE = re.compile(r"^(.*/(?:site|dist)-packages)/[^/]+\.dist-info$")
_NPM_DIR_RE = re.compile(
    r"^(?:.*/node_modules|/usr/share/nodejs|/usr/lib/nodejs|/usr/lib/[^/]+/nodejs)"
    r"/(?:@[^/]+/)?[^/.@][^/]*$"
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


def dpkg_db(ledger: Ledger, mode: str) -> None:
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


def _trim_conffiles(lines: list[str], ledger: Ledger) -> list[str]:
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


def apk_db(ledger: Ledger, mode: str) -> None:
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


def pip_db(ledger: Ledger, mode: str) -> None:
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


def npm_db(ledger: Ledger, mode: str) -> None:
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
