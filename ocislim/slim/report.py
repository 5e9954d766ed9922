"""``slim.report.json``: what a build kept and why, how it probed and verified, sizes, times.

The report is a plain JSON object whose shape is fixed by ``report.schema.json``
(JSON Schema 2020-12, shipped in this package; :func:`validate` checks an object
against it).  ``--keep-from`` reads an earlier report back with :func:`load`.
Writing is atomic (temporary name, then rename).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ocislim import __version__
from ocislim.errors import InputNotFoundError, UsageError
from ocislim.humanize import human_size
from ocislim.image.source import Image
from ocislim.image.writer import WrittenImage
from ocislim.outputs import write_text_atomic
from ocislim.slim.plan import KeepPlan
from ocislim.slim.probes import Outcome, ProbePlan
from ocislim.slim.verify import Verification

REPORT_VERSION = 1
SCHEMA_NAME = "report.schema.json"


@cache
def schema() -> dict[str, Any]:
    """The report's JSON Schema."""
    text = resources.files("ocislim.slim").joinpath(SCHEMA_NAME).read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


def validate(report: Any) -> None:
    """Raise :class:`UsageError` naming the first problem when ``report`` does not fit."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(report))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise UsageError(f"not an ocislim build report: at {where}: {error.message}")


def load(path: Path) -> dict[str, Any]:
    """An earlier report, validated."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputNotFoundError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from None
    try:
        validate(data)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    result: dict[str, Any] = data
    return result


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as :func:`readable_json` to ``path`` (temporary name, rename)."""
    write_text_atomic(path, readable_json(data))


def readable_json(data: Any) -> str:
    """Key-sorted JSON, one line per member of the top object and per item of its lists
    (a kept path, a removed one), deeper values compact; ends with a newline.

    As easy to read and grep as ``indent=2`` for a report of thousands of paths, and
    written by the C encoder, which ``indent`` turns off (several times slower).
    """

    def compact(value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    if not isinstance(data, dict) or not data:
        return compact(data) + "\n"
    members = []
    for key in sorted(data):
        value = data[key]
        if isinstance(value, list) and value:
            items = ",\n".join(f"    {compact(item)}" for item in value)
            members.append(f"  {compact(key)}: [\n{items}\n  ]")
        else:
            members.append(f"  {compact(key)}: {compact(value)}")
    return "{\n" + ",\n".join(members) + "\n}\n"


def _keep_from(reports: Sequence[Path] | Path | None) -> str | list[str] | None:
    """One ``--keep-from`` report as its path, several as a list, none as None."""
    if reports is None or isinstance(reports, Path):
        return str(reports) if reports else None
    paths = [str(p) for p in reports]
    return paths[0] if len(paths) == 1 else paths or None


def paths(stats: dict[str, int]) -> int:
    """Paths of a merged tree (every kind, the root ``/`` not counted) from its counts."""
    return stats["files"] + stats["directories"] + stats["symlinks"] + stats["other"]


def layer_compressions(media_types: Sequence[str]) -> str:
    """``gzip``, ``zstd`` or ``none`` for layers of these media types; mixed: ``gzip+none``."""
    found = sorted(
        {
            "gzip" if t.endswith("gzip") else "zstd" if t.endswith("zstd") else "none"
            for t in media_types
        }
    )
    return "+".join(found) or "none"


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def build_report(
    *,
    image: Image,
    source_stats: dict[str, int],
    output_stats: dict[str, int],
    written: WrittenImage | None,
    layer_size: int | None,
    tag: str,
    plan: KeepPlan,
    probe_plan: ProbePlan | None,
    command: list[str],
    baseline: Outcome | None,
    verification: Verification,
    timings: dict[str, float],
    rules: dict[str, list[str]],
    seccomp_path: Path | None,
    keep_from: Sequence[Path] | Path | None,
    notes: list[str],
    packages: dict[str, Any] | None = None,
    removed: list[dict[str, Any]] | None = None,
    removed_dirs: list[dict[str, Any]] | None = None,
    compression: str | None = None,
) -> dict[str, Any]:
    """The report object (see ``report.schema.json`` for every key; ``packages``,
    ``removed`` and ``removed_dirs`` are left out when None).  ``compression``: of the
    written layer.  ``kept`` lists the plan's paths; the root ``/`` is not a path."""
    layers_size = sum(layer.descriptor.size for layer in image.layers)
    source = {
        "image": str(image.source),
        "format": image.format,
        "reference": image.ref_name,
        "manifest_digest": str(image.manifest_digest),
        "config_digest": str(image.manifest.config.digest),
        "platform": str(image.platform),
        "layers": len(image.layers),
        "compressed_size": layers_size,
        "compression": layer_compressions([layer.descriptor.media_type for layer in image.layers]),
        "paths": paths(source_stats),
        **source_stats,
    }
    output: dict[str, Any] = {
        "image": str(written.path) if written else None,
        "format": written.format if written else None,
        "reference": tag,
        "manifest_digest": str(written.manifest_digest) if written else None,
        "config_digest": str(written.config_digest) if written else None,
        "layers": 1,
        "compressed_size": layer_size,
        "archive_size": written.size if written else None,
        **({"compression": compression} if compression else {}),
        "paths": paths(output_stats),
        **output_stats,
    }
    last = verification.rounds[-1].outcome if verification.rounds else None
    extra: dict[str, Any] = {
        k: v
        for k, v in (("packages", packages), ("removed", removed), ("removed_dirs", removed_dirs))
        if v is not None
    }
    return extra | {
        "version": REPORT_VERSION,
        "ocislim": __version__,
        "source": source,
        "output": output,
        "ratio": {
            "content_size": _ratio(output_stats["content_size"], source_stats["content_size"]),
            "compressed_size": _ratio(output["compressed_size"] or 0, layers_size)
            if written
            else None,
            "files": _ratio(output_stats["files"], source_stats["files"]),
        },
        "probes": {
            "command": command,
            "plan": probe_plan.to_json() if probe_plan else None,
            "source": baseline.to_json() if baseline else None,
            "slim": last.to_json() if last else None,
        },
        "kept": [k.to_json() for k in plan.kept if k.path != "/"],
        "refused": [
            {"path": r.path, "why": r.why, "reason": r.reason.to_json()} for r in plan.refused
        ],
        "unresolved": [{"path": p, "reason": r.to_json()} for p, r in plan.unresolved],
        "verification": verification.to_json(),
        "rules": rules,
        "keep_from": _keep_from(keep_from),
        "seccomp_profile": str(seccomp_path) if seccomp_path else None,
        "timings": timings,
        "notes": list(notes),
    }


def summary(report: dict[str, Any], report_path: Path) -> dict[str, Any]:
    """The short form ``build --json`` prints.  ``paths`` and ``kept`` count paths (the
    root ``/`` never); ``files`` regular files; ``compression`` names the layer blobs'."""
    src, out = report["source"], report["output"]
    return {
        "source": {k: src[k] for k in ("image", "reference", "files", "content_size")}
        | {
            "compressed_size": src["compressed_size"],
            "compression": src.get("compression"),
            "paths": src.get("paths", paths(src)),
        },
        "output": {
            k: out[k]
            for k in (
                "image",
                "format",
                "reference",
                "manifest_digest",
                "files",
                "content_size",
                "compressed_size",
                "archive_size",
            )
        }
        | {"compression": out.get("compression"), "paths": out.get("paths", paths(out))},
        "ratio": report["ratio"],
        "kept": sum(1 for k in report["kept"] if k["path"] != "/"),
        "verification": {
            "passed": report["verification"]["passed"],
            "rounds": len(report["verification"]["rounds"]),
        },
        "report": str(report_path),
        "seccomp_profile": report["seccomp_profile"],
        "timings": report["timings"],
        "packages": report["packages"]["counts"] if "packages" in report else None,
    }


def _size(n: float | None) -> str:
    return "-" if n is None else human_size(n)


def _how(side: dict[str, Any]) -> str:
    """`` gzip``, `` uncompressed``: how a side's layer blobs are stored (never "compressed"
    for bytes that are not)."""
    how = side.get("compression")
    return "" if not how else " uncompressed" if how == "none" else f" {how}"


def _packages_line(counts: dict[str, int] | None) -> list[str]:
    if not counts or not sum(counts.values()):
        return []
    total = sum(counts.values())
    left = counts["whole"] + counts["partial"]
    return [
        f"packages:    {total} -> {left} ({counts['whole']} whole, {counts['partial']} partial; "
        f"{counts['removed']} removed)"
    ]


def render_summary(short: dict[str, Any]) -> str:
    """The text summary ``build`` prints: sizes before and after, ratio, the report's place."""
    src, out, ratio = short["source"], short["output"], short["ratio"]
    content = ratio["content_size"]
    shrink = f", {1 / content:.1f}x smaller" if content else ""
    verified = short["verification"]
    if verified["passed"] is None:
        check = "skipped (--no-verify)"
    else:
        rounds = verified["rounds"]
        outcome = "passed" if verified["passed"] else "FAILED"
        check = f"{outcome} ({rounds} round{'s' * (rounds != 1)})"
    lines = [
        f"slim image:  {out['image']} ({out['format']}, {out['reference']})",
        f"files:       {src['files']} -> {out['files']}",
        f"paths:       {src['paths']} -> {out['paths']} (each kept path with its reasons "
        "in the report)",
        f"content:     {_size(src['content_size'])} -> {_size(out['content_size'])} "
        f"({content:.1%} of the original{shrink})"
        if content is not None
        else "content: -",
        f"layers:      {_size(src['compressed_size'])}{_how(src)} -> "
        f"{_size(out['compressed_size'])}{_how(out)}"
        + (f" ({ratio['compressed_size']:.1%})" if ratio["compressed_size"] is not None else ""),
        f"verified:    {check}",
        *_packages_line(short.get("packages")),
        f"report:      {short['report']}",
    ]
    if short.get("seccomp_profile"):
        lines.append(f"seccomp:     {short['seccomp_profile']}")
    return "\n".join(lines) + "\n"
