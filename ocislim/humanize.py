"""Human-readable renderings shared by every command's text output."""

from __future__ import annotations


def human_size(n: float) -> str:
    """Bytes in decimal units: ``512 B``, ``1.5 kB``, ``32.1 MB``."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1000:
        return f"{sign}{n:.0f} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            return f"{sign}{n:.1f} {unit}"
    raise AssertionError("unreachable")


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 object``, ``2 objects``: ``n`` and the noun in the number it takes."""
    return f"{n} {word if n == 1 else words or word + 's'}"
