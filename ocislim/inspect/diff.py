"""``ocislim diff``: what differs between two images, each read once, streaming.

Types (``--type``): ``file`` (merged trees), ``apt``/``apk``/``pip``/``npm``
(installed packages), ``size``, ``config`` and ``history``.  Images may be in
different formats; only their contents are compared.

File comparison: a path only in B is *added*, only in A *removed*; a path in
both is *modified* when its type, content (size or SHA-256), permission bits,
owner (uid/gid), symlink target, device numbers or xattrs differ.  Timestamps
are ignored.  Every path is listed, directories too, so ``added`` and
``removed`` are exactly the set differences of the two unpacked trees.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

from ocislim.errors import UsageError
from ocislim.humanize import human_size, plural
from ocislim.image.source import Image
from ocislim.inspect.packages import (
    APK_DATABASES,
    DPKG_STATUS,
    DPKG_STATUS_DIR,
    find_packages,
)
from ocislim.inspect.scan import ImageScan, scan, wants_capture
from ocislim.inspect.table import section, shorten, table
from ocislim.inspect.xray import image_identity
from ocislim.layers.tree import Entry
from ocislim.progress import NULL_PROGRESS, Progress

DIFF_TYPES = ("file", "apt", "apk", "pip", "npm", "size", "config", "history")
PACKAGE_TYPES = {"apt": "dpkg", "apk": "apk", "pip": "pip", "npm": "npm"}


def parse_types(text: str | None) -> list[str]:
    """``"file,apt"`` -> ``["file", "apt"]`` in canonical order; ``None``: every type."""
    if text is None:
        return list(DIFF_TYPES)
    wanted = {t.strip() for t in text.split(",") if t.strip()}
    unknown = sorted(wanted - set(DIFF_TYPES))
    if unknown or not wanted:
        raise UsageError(
            f"--type: unknown type(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {','.join(DIFF_TYPES)}"
        )
    return [t for t in DIFF_TYPES if t in wanted]


def _capture_for(types: Sequence[str]) -> Callable[[str], bool] | None:
    """Capture only the package databases the chosen types read."""
    wanted = {t for t in types if t in PACKAGE_TYPES}
    if not wanted:
        return None

    def capture(path: str) -> bool:
        if not wants_capture(path):
            return False
        if path == DPKG_STATUS or path.startswith(DPKG_STATUS_DIR):
            return "apt" in wanted
        if path in APK_DATABASES:
            return "apk" in wanted
        if path.endswith("/package.json"):
            return "npm" in wanted
        if "-packages/" in path:
            return "pip" in wanted
        return False

    return capture


def _entry_size(entry: Entry) -> int:
    return entry.data.size if entry.data is not None else 0


def _changes(a: Entry, b: Entry, scan_a: ImageScan, scan_b: ImageScan) -> list[str]:
    changes = []
    ia, ib = a.info, b.info
    if a.kind != b.kind:
        changes.append("type")
    elif a.kind == "file":
        if _entry_size(a) != _entry_size(b):
            changes.append("content")
        else:
            da, db = scan_a.content_digest(a), scan_b.content_digest(b)
            if da is None or db is None or da != db:
                changes.append("content")
    elif a.kind == "symlink" and ia.linkname != ib.linkname:
        changes.append("link")
    elif a.kind in ("char", "block") and (ia.devmajor, ia.devminor) != (ib.devmajor, ib.devminor):
        changes.append("device")
    # A symlink's mode means nothing; across a type change the mode is part of "type".
    same_kind = a.kind == b.kind and a.kind != "symlink"
    if same_kind and ia.mode & 0o7777 != ib.mode & 0o7777:
        changes.append("mode")
    if (ia.uid, ia.gid) != (ib.uid, ib.gid):
        changes.append("owner")
    if a.xattrs != b.xattrs:
        changes.append("xattrs")
    return changes


def diff_files(scan_a: ImageScan, scan_b: ImageScan) -> dict[str, list[dict[str, Any]]]:
    """``{"added", "removed", "modified"}`` between two merged trees, sorted by path."""
    entries_a = {e.path: e for e in scan_a.tree.walk() if e.path != "/"}
    added: list[dict[str, Any]] = []
    modified: list[dict[str, Any]] = []
    for b in scan_b.tree.walk():
        if b.path == "/":
            continue
        a = entries_a.pop(b.path, None)
        if a is None:
            added.append({"path": b.path, "type": b.kind, "size": _entry_size(b)})
            continue
        changes = _changes(a, b, scan_a, scan_b)
        if changes:
            modified.append(
                {
                    "path": b.path,
                    "size": _entry_size(b),
                    "size_a": _entry_size(a),
                    "size_b": _entry_size(b),
                    "type": b.kind if a.kind == b.kind else f"{a.kind} -> {b.kind}",
                    "changes": changes,
                }
            )
    removed = [
        {"path": a.path, "type": a.kind, "size": _entry_size(a)}
        for a in sorted(entries_a.values(), key=lambda e: e.path)
    ]
    return {"added": added, "removed": removed, "modified": modified}


def diff_packages(
    before: dict[str, str],
    after: dict[str, str],
    partial_before: dict[str, tuple[int, int]] | None = None,
    partial_after: dict[str, tuple[int, int]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``{"added": [{name, version}], "removed": [...], "changed": [{name, from, to}]}``.

    A package in both whose version is the same but that B keeps in part (a trimmed
    database's ``Ocislim-Partial`` mark, ``partial_*``: name -> (kept, files)) and A
    does not, or with other counts, is ``changed`` too, with B's ``kept`` and
    ``removed`` file counts (changed entries of a partial package carry them as well).
    """
    pa, pb = partial_before or {}, partial_after or {}
    changed: list[dict[str, Any]] = []
    for n in sorted(before.keys() & after.keys()):
        if before[n] == after[n] and pa.get(n) == pb.get(n):
            continue
        entry: dict[str, Any] = {"name": n, "from": before[n], "to": after[n]}
        if n in pb:
            kept, files = pb[n]
            entry |= {"kept": kept, "removed": files - kept}
        changed.append(entry)
    return {
        "added": [{"name": n, "version": after[n]} for n in sorted(after.keys() - before.keys())],
        "removed": [
            {"name": n, "version": before[n]} for n in sorted(before.keys() - after.keys())
        ],
        "changed": changed,
    }


def _sizes(image: Image, result: ImageScan | None) -> dict[str, int]:
    out = {
        "layers": len(image.layers),
        "compressed": sum(layer.descriptor.size for layer in image.layers),
    }
    if result is not None:
        out["uncompressed"] = sum(layer.uncompressed_size for layer in result.layers)
        seen: set[int] = set()
        files = 0
        for entry in result.tree.walk():
            if entry.data is not None and entry.inode not in seen:
                seen.add(entry.inode)
                files += entry.data.size
        out["files_size"] = files
    return out


def _config_view(image: Image) -> dict[str, Any]:
    return {"platform": str(image.config.platform), **image.config.summary()}


def diff_config(a: Image, b: Image) -> dict[str, dict[str, Any]]:
    """``{field: {"from", "to"}}`` for every config field that differs."""
    va, vb = _config_view(a), _config_view(b)
    return {k: {"from": va[k], "to": vb[k]} for k in va if va[k] != vb[k]}


def diff_history(a: Image, b: Image) -> dict[str, Any]:
    """History steps (``created_by``) removed and added, aligned with difflib."""
    steps_a = [str(h.get("created_by") or "") for h in a.config.history]
    steps_b = [str(h.get("created_by") or "") for h in b.config.history]
    common = 0
    for x, y in zip(steps_a, steps_b, strict=False):
        if x != y:
            break
        common += 1
    removed: list[str] = []
    added: list[str] = []
    matcher = difflib.SequenceMatcher(a=steps_a, b=steps_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            removed += steps_a[i1:i2]
        if tag in ("insert", "replace"):
            added += steps_b[j1:j2]
    return {
        "steps_a": len(steps_a),
        "steps_b": len(steps_b),
        "common_prefix": common,
        "removed": removed,
        "added": added,
    }


def diff(
    image_a: Image,
    image_b: Image,
    types: Sequence[str] = DIFF_TYPES,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, Any]:
    """Compare two images; returns the JSON-ready report (keys per the chosen types).

    Layers are read only when a chosen type needs them (file, packages, size),
    each image once; file contents are hashed only for ``file``.
    """
    needs_layers = any(t in ("file", "size", *PACKAGE_TYPES) for t in types)
    scans: list[ImageScan | None] = [None, None]
    if needs_layers:
        for i, image in enumerate((image_a, image_b)):
            progress.stage("diff", f"reading image {'AB'[i]}: {image.source}")
            scans[i] = scan(
                image,
                hash_contents="file" in types,
                capture=_capture_for(types),
                top=0,
                inefficiencies=0,
                progress=progress,
            )
    scan_a, scan_b = scans
    out: dict[str, Any] = {
        "a": image_identity(image_a),
        "b": image_identity(image_b),
        "types": list(types),
    }
    differing: list[str] = []
    if "file" in types:
        assert scan_a is not None and scan_b is not None
        files = diff_files(scan_a, scan_b)
        out["files"] = files
        if any(files.values()):
            differing.append("file")
    package_types = [t for t in types if t in PACKAGE_TYPES]
    if package_types:
        assert scan_a is not None and scan_b is not None
        pa, pb = find_packages(scan_a), find_packages(scan_b)
        out["packages"] = {}
        for t in package_types:
            manager = PACKAGE_TYPES[t]
            before = (pa[manager].packages if manager in pa else None) or {}
            after = (pb[manager].packages if manager in pb else None) or {}
            partial_a = pa[manager].partial if manager in pa else {}
            partial_b = pb[manager].partial if manager in pb else {}
            result: dict[str, Any] = diff_packages(before, after, partial_a, partial_b)
            if any(result.values()):
                differing.append(t)
            result["in_a"] = manager in pa
            result["in_b"] = manager in pb
            out["packages"][t] = result
    if "size" in types:
        sa, sb = _sizes(image_a, scan_a), _sizes(image_b, scan_b)
        out["size"] = {"a": sa, "b": sb, "delta": {k: sb[k] - sa[k] for k in sa}}
        if any(out["size"]["delta"].values()):
            differing.append("size")
    if "config" in types:
        out["config"] = diff_config(image_a, image_b)
        if out["config"]:
            differing.append("config")
    if "history" in types:
        out["history"] = diff_history(image_a, image_b)
        if out["history"]["removed"] or out["history"]["added"]:
            differing.append("history")
    out["differences"] = differing
    out["identical"] = not differing
    return out


def render_text(rep: dict[str, Any]) -> str:
    """The diff report as aligned tables, one section per type."""
    lines = [
        f"A: {rep['a']['source']} ({rep['a']['format']}) {rep['a']['manifest_digest']}",
        f"B: {rep['b']['source']} ({rep['b']['format']}) {rep['b']['manifest_digest']}",
        "",
    ]
    if "files" in rep:
        files = rep["files"]
        rows: list[list[object]] = []
        for f in files["added"]:
            rows.append(["+", "", human_size(f["size"]), f["type"], f["path"]])
        for f in files["removed"]:
            rows.append(["-", human_size(f["size"]), "", f["type"], f["path"]])
        for f in files["modified"]:
            rows.append(
                [
                    "M",
                    human_size(f["size_a"]),
                    human_size(f["size_b"]),
                    ",".join(f["changes"]),
                    f["path"],
                ]
            )
        rows.sort(key=lambda r: str(r[4]))
        title = (
            f"Files: {len(files['added'])} added, {len(files['removed'])} removed, "
            f"{len(files['modified'])} modified"
        )
        body = table(["", "SIZE A", "SIZE B", "CHANGE", "PATH"], rows, right=(1, 2))
        lines += section(title, body if rows else ["no differences"])
    for kind, result in rep.get("packages", {}).items():
        if not result["in_a"] and not result["in_b"]:
            lines += section(f"Packages ({kind})", ["no database in either image"])
            continue
        rows = [["+", p["name"], "", p["version"]] for p in result["added"]]
        rows += [["-", p["name"], p["version"], ""] for p in result["removed"]]
        rows += [["~", p["name"], p["from"], p["to"] + _part(p)] for p in result["changed"]]
        rows.sort(key=lambda r: str(r[1]))
        title = (
            f"Packages ({kind}): {len(result['added'])} added, {len(result['removed'])} "
            f"removed, {len(result['changed'])} changed"
        )
        body = table(["", "NAME", "VERSION A", "VERSION B"], rows)
        lines += section(title, body if rows else ["no differences"])
    if "size" in rep:
        size = rep["size"]
        rows = []
        for key in ("layers", "compressed", "uncompressed", "files_size"):
            if key not in size["a"]:
                continue
            show = (lambda v: str(v)) if key == "layers" else human_size
            rows.append([key, show(size["a"][key]), show(size["b"][key]), show(size["delta"][key])])
        lines += section("Size", table(["", "A", "B", "DELTA"], rows, right=(1, 2, 3)))
    if "config" in rep:
        rows = [
            [k, shorten(_show(v["from"]), 60), shorten(_show(v["to"]), 60)]
            for k, v in rep["config"].items()
        ]
        body = table(["FIELD", "A", "B"], rows) if rows else ["no differences"]
        lines += section("Config", body)
    if "history" in rep:
        hist = rep["history"]
        rows = [["-", shorten(s, 100)] for s in hist["removed"]]
        rows += [["+", shorten(s, 100)] for s in hist["added"]]
        title = (
            f"History: {hist['steps_a']} steps in A, {hist['steps_b']} in B, "
            f"first {hist['common_prefix']} shared"
        )
        lines += section(title, table(["", "STEP"], rows) if rows else ["no differences"])
    if rep["identical"]:
        lines.append("No differences in what was compared.")
    else:
        lines.append("Differences in: " + ", ".join(rep["differences"]))
    return "\n".join(lines).rstrip() + "\n"


def _part(p: dict[str, Any]) -> str:
    """`` (kept K, removed R files)`` for a package kept in part."""
    return f" (kept {p['kept']}, removed {plural(p['removed'], 'file')})" if "kept" in p else ""


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "-"
    return str(value) or "-"
