"""``ocislim xray``: what is inside an image, from one streaming pass over its layers.

:func:`xray` returns a JSON-ready report (the ``--json`` output) and
:func:`render_text` turns it into the tables a person reads.  Definitions:

* ``paths`` and ``files`` are build's (README glossary): every path of the merged
  tree but ``/``, and its regular files; ``files_size`` their bytes (content_size);
* per layer, ``added``/``modified``/``deleted`` count non-directory paths
  (see :class:`~ocislim.inspect.scan.LayerScan`); ``top`` lists its largest files;
* ``wasted_bytes`` and ``efficiency`` are dive's: a path seen in two or more
  layers wastes the bytes of all its copies; efficiency is the sum over paths of
  their smallest size divided by the sum of all their sizes (1.0 when nothing
  has a size);
* ``duplicates`` are distinct files with equal content (SHA-256) in the merged
  tree; each group wastes ``size * (copies - 1)``.
"""

from __future__ import annotations

from typing import Any

from ocislim.humanize import human_size, plural
from ocislim.image.source import Image
from ocislim.inspect import contents
from ocislim.inspect.packages import find_packages
from ocislim.inspect.scan import ImageScan, scan
from ocislim.inspect.table import section, shorten, table
from ocislim.layers.stats import content_stats
from ocislim.progress import NULL_PROGRESS, Progress


def image_identity(image: Image) -> dict[str, Any]:
    return {
        "source": str(image.source),
        "format": image.format,
        "reference": image.ref_name,
        "platform": str(image.platform),
        "manifest_digest": str(image.manifest_digest),
        "config_digest": str(image.manifest.config.digest),
    }


def xray(image: Image, *, top: int = 10, progress: Progress = NULL_PROGRESS) -> dict[str, Any]:
    """Analyse ``image`` in one pass over its layers; returns the report as a dict."""
    result = scan(image, hash_contents=True, top=top, inefficiencies=max(top, 1), progress=progress)
    return report(image, result)


def report(image: Image, result: ImageScan) -> dict[str, Any]:
    """The xray report of an already scanned image."""
    tree = result.tree
    # The same counts as build's report (README glossary): files are regular files,
    # paths every kind but the root; a hardlink group's bytes count once.
    stats = content_stats(tree)
    dups = contents.duplicates(result)
    users, groups = contents.accounts(result)
    packages = find_packages(result)
    return {
        "image": image_identity(image),
        "size": sum(layer.size for layer in result.layers),
        "uncompressed_size": sum(layer.uncompressed_size for layer in result.layers),
        "paths": stats["files"] + stats["directories"] + stats["symlinks"] + stats["other"],
        "files": stats["files"],
        "files_size": stats["content_size"],
        "layers": [
            {
                "index": layer.index,
                "digest": layer.digest,
                "diff_id": layer.diff_id,
                "media_type": layer.media_type,
                "size": layer.size,
                "uncompressed_size": layer.uncompressed_size,
                "created_by": layer.created_by,
                "comment": layer.comment,
                "entries": layer.entries,
                "files": layer.files,
                "directories": layer.directories,
                "whiteouts": layer.whiteouts,
                "added": layer.added,
                "modified": layer.modified,
                "deleted": layer.deleted,
                "deleted_bytes": layer.deleted_bytes,
                "content_bytes": layer.content_bytes,
                "top": [{"path": path, "size": size} for size, path in layer.top],
            }
            for layer in result.layers
        ],
        "wasted_bytes": result.wasted_bytes,
        "efficiency": result.efficiency,
        "inefficiencies": [
            {"path": w.path, "layers": w.layers, "size": w.bytes} for w in result.inefficiencies
        ],
        "duplicates": {
            "groups": [
                {
                    "size": g.size,
                    "digest": g.digest,
                    "copies": g.copies,
                    "paths": list(g.paths),
                    "wasted_bytes": g.wasted_bytes,
                }
                for g in dups
            ],
            "wasted_bytes": sum(g.wasted_bytes for g in dups),
        },
        "special_files": contents.special_files(tree),
        "shells": contents.shells(result),
        "ca_bundles": contents.ca_bundles(result),
        "package_managers": [
            {"name": db.manager, "databases": db.databases, "packages": db.count}
            # dpkg entries of a trimmed database may be marked as kept in part
            | ({"partial": len(db.partial)} if db.manager == "dpkg" else {})
            for db in packages.values()
        ],
        "users": [
            {"name": u.name, "uid": u.uid, "gid": u.gid, "home": u.home, "shell": u.shell}
            for u in users
        ],
        "groups": [{"name": g.name, "gid": g.gid, "members": list(g.members)} for g in groups],
    }


def render_text(rep: dict[str, Any], top: int = 10) -> str:
    """The report as aligned tables; ``top`` bounds the long lists."""
    ident = rep["image"]
    lines = [
        f"Image:      {ident['source']} ({ident['format']})",
        f"Reference:  {ident['reference'] or '-'}",
        f"Platform:   {ident['platform']}",
        f"Manifest:   {ident['manifest_digest']}",
        f"Size:       {human_size(rep['size'])} compressed, "
        f"{human_size(rep['uncompressed_size'])} uncompressed, "
        f"{plural(rep['paths'], 'path')}, {plural(rep['files'], 'file')} holding "
        f"{human_size(rep['files_size'])}",
        f"Wasted:     {human_size(rep['wasted_bytes'])} in paths set by several layers; "
        f"efficiency {rep['efficiency'] * 100:.2f}%",
        f"Duplicates: {plural(len(rep['duplicates']['groups']), 'group')} of identical files waste "
        f"{human_size(rep['duplicates']['wasted_bytes'])}",
        "",
    ]
    rows = [
        [
            layer["index"] + 1,  # people count layers from 1, as progress does
            layer["digest"].split(":")[-1][:12],
            human_size(layer["size"]),
            human_size(layer["uncompressed_size"]),
            layer["added"],
            layer["modified"],
            layer["deleted"],
            shorten(layer["created_by"] or "-", 60),
        ]
        for layer in rep["layers"]
    ]
    headers = ["#", "DIGEST", "SIZE", "UNPACKED", "ADDED", "MODIFIED", "DELETED", "CREATED BY"]
    lines += section("Layers", table(headers, rows, right=(0, 2, 3, 4, 5, 6)))
    for layer in rep["layers"]:
        if not layer["top"]:
            continue
        rows = [[human_size(f["size"]), f["path"]] for f in layer["top"]]
        title = f"Largest files in layer {layer['index'] + 1}"
        lines += section(title, table(["SIZE", "PATH"], rows, right=(0,)))
    if rep["inefficiencies"]:
        rows = [
            [human_size(w["size"]), w["layers"], w["path"]] for w in rep["inefficiencies"][:top]
        ]
        lines += section(
            "Paths in several layers (wasted space)",
            table(["SIZE", "LAYERS", "PATH"], rows, right=(0, 1)),
        )
    groups = rep["duplicates"]["groups"]
    if groups:
        rows = []
        for g in groups[:top]:
            shown = ", ".join(g["paths"][:3])
            more = len(g["paths"]) - 3
            rows.append(
                [
                    human_size(g["wasted_bytes"]),
                    human_size(g["size"]),
                    g["copies"],
                    shorten(shown + (f" (+{more} more)" if more > 0 else ""), 100),
                ]
            )
        title = f"Duplicate files ({plural(len(groups), 'group')}"
        title += f", largest {top})" if len(groups) > top else ")"
        lines += section(title, table(["WASTED", "SIZE", "COPIES", "PATHS"], rows, right=(0, 1, 2)))
    special = rep["special_files"]
    rows = [[s["mode"], f"{s['uid']}:{s['gid']}", _bits(s), s["path"]] for s in special]
    lines += section(
        "Setuid / setgid / capability files",
        table(["MODE", "OWNER", "BITS", "PATH"], rows) if rows else ["none"],
    )
    rows = [[s["path"], s["target"] if s["target"] != s["path"] else ""] for s in rep["shells"]]
    lines += section("Shells", table(["PATH", "RESOLVES TO"], rows) if rows else ["none"])
    rows = [
        [
            c["path"],
            human_size(c["size"]),
            "?" if c["certificates"] is None else c["certificates"],
        ]
        for c in rep["ca_bundles"]
    ]
    lines += section(
        "CA certificate bundles",
        table(["PATH", "SIZE", "CERTIFICATES"], rows, right=(1, 2)) if rows else ["none"],
    )
    rows = [
        [
            p["name"],
            "?" if p["packages"] is None else p["packages"],
            p.get("partial", 0),
            ", ".join(p["databases"]),
        ]
        for p in rep["package_managers"]
    ]
    lines += section(
        "Package managers",
        table(["MANAGER", "PACKAGES", "PARTIAL", "DATABASE"], rows, right=(1, 2))
        if rows
        else ["none"],
    )
    rows = [[u["name"], u["uid"], u["gid"], u["home"], u["shell"]] for u in rep["users"]]
    lines += section(
        f"Users ({len(rows)})",
        table(["NAME", "UID", "GID", "HOME", "SHELL"], rows, right=(1, 2))
        if rows
        else ["no /etc/passwd"],
    )
    rows = [[g["name"], g["gid"], ",".join(g["members"])] for g in rep["groups"]]
    lines += section(
        f"Groups ({len(rows)})",
        table(["NAME", "GID", "MEMBERS"], rows, right=(1,)) if rows else ["no /etc/group"],
    )
    return "\n".join(lines).rstrip() + "\n"


def _bits(special: dict[str, Any]) -> str:
    flags = (("setuid", "setuid"), ("setgid", "setgid"), ("capabilities", "caps"))
    return ",".join(label for key, label in flags if special[key])
