"""Text renderings of a :class:`~ocislim.elf.closure.DepsResult` (the CLI prints them)."""

from __future__ import annotations

from ocislim.elf.results import DYNAMIC, DepsResult, ObjectReport
from ocislim.humanize import plural

# Reasons shown per path in the list view; the JSON output has all of them.
MAX_REASONS = 3


def render_list(result: DepsResult) -> str:
    """Every kept path with why, then what is missing and a one-line summary."""
    lines: list[str] = []
    width = min(max((len(p) for p in result.paths), default=0), 60)
    for path in result.paths:
        reasons = [str(r) for r in result.reasons[path]]
        shown = "; ".join(reasons[:MAX_REASONS])
        if len(reasons) > MAX_REASONS:
            shown += f"; (+{len(reasons) - MAX_REASONS} more)"
        lines.append(f"{path:<{width}}  {shown}")
    lines += _problems(result)
    lines.append(_summary(result))
    return "\n".join(lines) + "\n"


def render_tree(result: DepsResult) -> str:
    """Each object's load tree (each library expanded once), then its lazy loads."""
    lines: list[str] = []
    for report in result.objects:
        lines.append(_headline(report))
        if report.kind == DYNAMIC:
            seen: set[str] = {report.path}
            _subtree(report, report.path, "", seen, lines)
            lazy_roots = [e for e in report.lazy if e.via is None]
            if lazy_roots:
                lines.append("  loaded at run time:")
                for entry in lazy_roots:
                    where = entry.path or "NOT FOUND"
                    lines.append(f"    {entry.name} => {where}  [{entry.reason}]")
                    if entry.path and entry.kind == "library" and entry.path not in seen:
                        seen.add(entry.path)
                        _subtree(report, entry.path, "      ", seen, lines)
    lines += _problems(result)
    lines.append(_summary(result))
    return "\n".join(lines) + "\n"


def _headline(report: ObjectReport) -> str:
    parts = [report.path, f"({report.kind}"]
    if report.description:
        parts[-1] += f", {report.description}"
    parts[-1] += ")"
    if report.interpreter:
        parts.append(f"interpreter {report.interpreter}")
    if report.note:
        parts.append(f"- {report.note}")
    return " ".join(parts)


def _subtree(
    report: ObjectReport, node: str, indent: str, seen: set[str], lines: list[str]
) -> None:
    edges = list(report.dependencies.get(node, {}).items())
    for i, (name, target) in enumerate(edges):
        last = i == len(edges) - 1
        branch = "└── " if last else "├── "
        lines.append(f"{indent}{branch}{name} => {target or 'NOT FOUND'}")
        if target and target not in seen:
            seen.add(target)
            _subtree(report, target, indent + ("    " if last else "│   "), seen, lines)


def _problems(result: DepsResult) -> list[str]:
    lines = [f"missing: {name} (needed in the closure of {path})" for path, name in result.missing]
    lost = {(e.name, e.reason) for e in result.lazy if e.path is None}
    lines += [f"not in the image (lazy): {name} ({reason})" for name, reason in sorted(lost)]
    return lines


def _summary(result: DepsResult) -> str:
    kinds: dict[str, int] = {}
    for report in result.objects:
        kinds[report.kind] = kinds.get(report.kind, 0) + 1
    counted = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return (
        f"{plural(len(result.objects), 'object')} analysed ({counted}); "
        f"{plural(len(result.paths), 'path')} to keep; "
        f"{plural(len(result.missing), 'missing library', 'missing libraries')}"
    )
