"""Plain-text tables for the text output of ``xray`` and ``diff``.

Functions return strings; printing is the CLI's job.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()
) -> list[str]:
    """Lines of an aligned table: two spaces between columns, ``right`` columns
    right-aligned, the last column never padded (no trailing blanks)."""
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            if i in right:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell if last else cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    return lines


def section(title: str, lines: Sequence[str], indent: str = "  ") -> list[str]:
    """A titled block: the title, its lines indented, then a blank line."""
    return [title, *(indent + line if line else line for line in lines), ""]


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"
