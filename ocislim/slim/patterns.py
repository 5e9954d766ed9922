"""Path globs for ``--exclude-pattern`` and the data rules: ``*``, ``?``, ``[...]`` and ``**``.

Matching is on absolute in-image paths.  ``*`` and ``?`` never match ``/``;
``**`` as a whole component matches zero or more components (so ``/a/**``
matches ``/a`` and everything below it, and ``/**/x`` matches ``/x``); a
pattern without a leading ``/`` matches at any depth (as if it began with
``/**/``).  Compiled patterns are cached; matching is pure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from ocislim.errors import UsageError


def _component(part: str) -> str:
    """Regex for one path component (no ``/``) with ``*``, ``?`` and classes."""
    out: list[str] = []
    i = 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = part.find("]", i + 2 if part[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = part[i + 1 : end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\")
                out.append(f"[{'^/' if negate else ''}{body}]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The regex for ``pattern``; a :class:`UsageError` when it is empty."""
    if not pattern.strip("/"):
        raise UsageError(f"pattern {pattern!r} names no path")
    if not pattern.startswith("/"):
        pattern = "/**/" + pattern
    parts = [p for p in pattern.split("/") if p]
    regex = ""
    for part in parts:
        if part == "**":
            regex += "(?:/[^/]+)*"  # zero or more whole components
        else:
            regex += "/" + _component(part)
    try:
        return re.compile(regex or "/", re.DOTALL)
    except re.error as exc:
        raise UsageError(f"pattern {pattern!r}: {exc}") from None


def matches(pattern: str, path: str) -> bool:
    """Whether absolute ``path`` matches ``pattern`` (see the module docstring)."""
    return compile_glob(pattern).fullmatch(path) is not None


class PatternSet:
    """Several globs; ``match(path)`` returns the first that matches, or None."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        # Absolute patterns without wildcards match one path: a dict lookup, so that
        # thousands of them (a rule's list of files to skip) cost no regex each.
        self._literal: dict[str, int] = {}
        self._compiled: list[tuple[int, str, re.Pattern[str]]] = []
        for index, pattern in enumerate(self.patterns):
            if pattern.startswith("/") and not any(c in pattern for c in "*?["):
                parts = [p for p in pattern.split("/") if p]
                if not parts:
                    compile_glob(pattern)  # the UsageError of an empty pattern
                self._literal.setdefault("/" + "/".join(parts), index)
            else:
                self._compiled.append((index, pattern, compile_glob(pattern)))

    def match(self, path: str) -> str | None:
        literal = self._literal.get(path)
        for index, pattern, regex in self._compiled:
            if literal is not None and index > literal:
                break
            if regex.fullmatch(path) is not None:
                return pattern
        return None if literal is None else self.patterns[literal]

    def __bool__(self) -> bool:
        return bool(self.patterns)
