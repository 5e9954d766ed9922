"""The ``python-app-imports`` rule: what the application's own Python code imports.

A trace sees the imports one run made.  Real applications import some modules only
inside a function (a route that exports a PDF imports its library when first
called), so a distribution no probe reached would be dropped although the code names
it.  This rule reads the application's own ``.py`` files (the trees ``app-whole``
keeps, and the scripts the command names) for the modules they import, keeps the
distribution each comes from (:meth:`~ocislim.slim.langrules.LangRules.imported_seeds`),
then reads the Python files of what it newly kept in turn, so an imported library's
own imports come too.

Reading is textual (a regular expression per line, never executing or compiling the
code): an import in a docstring keeps a distribution it did not need, which costs
size, never correctness.  Relative imports stay inside their package and are skipped.
Pure apart from the ``read_text`` callable; bounded by :data:`MAX_FILES`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from ocislim.layers.tree import FileTree
from ocislim.slim.langrules import LangRules
from ocislim.slim.plan import Seed

MAX_FILES = 50_000  # a whole Django is 3,000 files; a hostile tree gets no further

# `import a.b, c as d` and `from a.b import x` at the start of a line (after indentation);
# `importlib.import_module("a.b")` and `__import__("a")` with a literal name anywhere.
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. \t,]+)", re.MULTILINE)
_FROM = re.compile(r"^[ \t]*from[ \t]+(\w[\w.]*)[ \t]+import\b", re.MULTILINE)
_DYNAMIC = re.compile(r"""(?:import_module|__import__)\(\s*[bru]?["'](\w[\w.]*)["']""")
_NAME = re.compile(r"^[A-Za-z_]\w*$")


def imported_names(source: str) -> set[str]:
    """The top-level module names ``source`` imports absolutely (``a`` of ``a.b``)."""
    names: set[str] = set()
    for match in _IMPORT.finditer(source):
        for part in match.group(1).split(","):
            words = part.split()
            if words:
                names.add(words[0].split(".")[0])
    for match in _FROM.finditer(source):
        names.add(match.group(1).split(".")[0])
    for match in _DYNAMIC.finditer(source):
        names.add(match.group(1).split(".")[0])
    return {n for n in names if _NAME.match(n)}


# Below an application's root, these hold other code (a virtualenv's packages, Node's)
# or caches, each kept or dropped by its own rules.
OTHER_CODE = frozenset({"site-packages", "dist-packages", "node_modules", "__pycache__"})


def python_files(
    tree: FileTree, roots: Iterable[str], skip: frozenset[str] = frozenset()
) -> Iterator[str]:
    """The ``.py`` regular files at or below each of ``roots`` (in-image paths), in order,
    not descending into directories named in ``skip``; links are not followed."""
    for root in roots:
        entry = tree.get(root)
        if entry is None:
            continue
        stack = [entry]
        while stack:
            current = stack.pop()
            if current.kind == "file":
                if current.path.endswith(".py"):
                    yield current.path
            elif current.is_dir:
                children = current.children or {}
                stack.extend(
                    children[name]
                    for name in sorted(children, reverse=True)
                    if name not in skip or not children[name].is_dir
                )


def is_python_script(text: str) -> bool:
    """A ``#!`` line that runs a Python (``/usr/bin/python3``, ``/usr/bin/env python``)."""
    first = text.split("\n", 1)[0]
    return first.startswith("#!") and "python" in first


def import_seeds(
    tree: FileTree,
    roots: Iterable[str],
    scripts: Iterable[str],
    read_text: Callable[[str], str | None],
    lang: LangRules,
) -> list[Seed]:
    """Seeds keeping the distributions the application's Python code imports: the ``.py``
    files below ``roots`` (not in :data:`OTHER_CODE` directories) and those of
    ``scripts`` that are Python (by name or ``#!`` line); then the distributions those
    distributions import in turn (each file read once)."""
    out: list[Seed] = []
    queue = deque(python_files(tree, roots, OTHER_CODE))
    for script in scripts:
        if script.endswith(".py") or is_python_script(read_text(script) or ""):
            queue.append(script)
    seen: set[str] = set(queue)
    asked: set[str] = set()
    read = 0
    while queue and read < MAX_FILES:
        path = queue.popleft()
        read += 1
        names = imported_names(read_text(path) or "") - asked
        asked |= names
        for name in sorted(names):
            seeds = lang.imported_seeds(name, path)
            out += seeds
            kept = [s.path for s in seeds if s.recursive] + [
                s.path for s in seeds if not s.recursive and s.path.endswith(".py")
            ]
            for found in python_files(tree, kept):
                if found not in seen:
                    seen.add(found)
                    queue.append(found)
    return out
