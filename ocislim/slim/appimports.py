"""What the application's own code imports: ``python-app-imports``, ``node-app-requires``.

A trace sees the imports one run made.  Real applications import some modules only
inside a function (a route that exports a PDF imports its library when first
called), so a package no probe reached would be dropped although the code names it.
These rules read the application's own source files (below the trees ``app-whole``
keeps, and the scripts the command names) for the modules they import, keep the
distribution or package each comes from (through
:class:`~ocislim.slim.langrules.LangRules`), then read the code of what they newly
kept in turn, so an imported library's own imports come too: every module of a Python
distribution, and of a Node package what its entry points load by relative name.

Reading is textual (regular expressions, never executing or compiling the code): an
import in a comment keeps a package it did not need, which costs size, never
correctness.  Relative imports stay inside their package and are skipped.  Pure apart
from the ``read_text`` callable; bounded by :data:`MAX_FILES` per language.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ocislim.errors import UnsafeArchiveError
from ocislim.layers.tree import FileTree
from ocislim.slim.langrules import LangRules
from ocislim.slim.plan import Seed

MAX_FILES = 50_000  # a whole Django is 3,000 files; a hostile tree gets no further

# Directories of test suites, examples and benchmarks: their imports (test frameworks and
# what those pull in: 2.4 MB of polyfills for express) are not the running code's.
NOT_RUN = frozenset(
    {"test", "tests", "__tests__", "spec", "example", "examples", "benchmark", "benchmarks",
     "bench", "doc", "docs"}
)  # fmt: skip
# Below an application's root, these also hold other code (a virtualenv's packages,
# Node's) or caches, each kept or dropped by its own rules.
OTHER_CODE = NOT_RUN | {"site-packages", "dist-packages", "node_modules", "__pycache__"}

# Python: `import a.b, c as d` and `from a.b import x` at the start of a line (after
# indentation); `importlib.import_module("a.b")` and `__import__("a")` anywhere.
_PY_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. \t,]+)", re.MULTILINE)
_PY_FROM = re.compile(r"^[ \t]*from[ \t]+(\w[\w.]*)[ \t]+import\b", re.MULTILINE)
_PY_DYNAMIC = re.compile(r"""(?:import_module|__import__)\(\s*[bru]?["'](\w[\w.]*)["']""")
_PY_NAME = re.compile(r"^[A-Za-z_]\w*$")

# JavaScript: require("x"), import("x"), `import ... from "x"`, `export ... from "x"`,
# a bare `import "x"`.
_JS_SPECIFIER = re.compile(
    r"""(?:\brequire\s*\(\s*|\bimport\s*\(\s*|\bfrom\s*|^[ \t]*import\s*)(["'])([^"'\n]+)\1""",
    re.MULTILINE,
)
_JS_PACKAGE = re.compile(r"^(?:@[\w.~-][\w.~-]*/)?[\w.~-][\w.~-]*$")
# Node's own modules: require("util") is the built-in even where a package of that name
# is installed (Debian ships polyfills such as node-util for browsers).
NODE_BUILTINS = frozenset(
    {"assert", "async_hooks", "buffer", "child_process", "cluster", "console", "constants",
     "crypto", "dgram", "diagnostics_channel", "dns", "domain", "events", "fs", "http",
     "http2", "https", "inspector", "module", "net", "os", "path", "perf_hooks", "process",
     "punycode", "querystring", "readline", "repl", "stream", "string_decoder", "sys",
     "timers", "tls", "trace_events", "tty", "url", "util", "v8", "vm", "wasi",
     "worker_threads", "zlib"}
)  # fmt: skip
_JS_SUFFIXES = (".js", ".cjs", ".mjs")


def python_imports(source: str) -> set[str]:
    """The top-level module names ``source`` imports absolutely (``a`` of ``a.b``)."""
    names: set[str] = set()
    for match in _PY_IMPORT.finditer(source):
        for part in match.group(1).split(","):
            words = part.split()
            if words:
                names.add(words[0].split(".")[0])
    for match in _PY_FROM.finditer(source):
        names.add(match.group(1).split(".")[0])
    for match in _PY_DYNAMIC.finditer(source):
        names.add(match.group(1).split(".")[0])
    return {n for n in names if _PY_NAME.match(n)}


def node_requires(source: str) -> set[str]:
    """The package names (``x``, ``@scope/x``) ``source`` requires or imports; not
    relative or absolute paths, not Node's built-in modules."""
    names: set[str] = set()
    for match in _JS_SPECIFIER.finditer(source):
        spec = match.group(2)
        if spec.startswith((".", "/", "node:")) or ":" in spec:
            continue
        parts = spec.split("/")
        name = "/".join(parts[:2]) if spec.startswith("@") else parts[0]
        if _JS_PACKAGE.match(name) and name not in NODE_BUILTINS:
            names.add(name)
    return names


def node_relatives(source: str) -> set[str]:
    """The relative specifiers (``./lib/x``, ``../y``) ``source`` requires or imports."""
    return {m.group(2) for m in _JS_SPECIFIER.finditer(source) if m.group(2).startswith(".")}


TextReader = Callable[[str], str | None]


def _file(tree: FileTree, path: str) -> str | None:
    try:
        canonical = tree.resolve(path)
    except UnsafeArchiveError:
        return None
    entry = tree.get(canonical)
    return canonical if entry is not None and entry.kind == "file" else None


def _node_file(tree: FileTree, path: str) -> str | None:
    """The file ``require(path)`` loads, as Node tries them: the path itself, with a
    suffix, then a directory's ``index.js``."""
    for candidate in (path, *(path + s for s in _JS_SUFFIXES), path + "/index.js"):
        found = _file(tree, candidate)
        if found is not None:
            return found
    return None


def _strings(value: object, depth: int = 0) -> Iterator[str]:
    if depth > 8:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1)


def python_package_files(tree: FileTree, package: str, read_text: TextReader) -> list[str]:
    """Every module file of a kept Python package (its test suites aside)."""
    return list(source_files(tree, [package], (".py",), NOT_RUN))


def node_package_files(tree: FileTree, package: str, read_text: TextReader) -> list[str]:
    """The entry files of a kept Node package: ``main`` and the targets of ``exports`` in
    its ``package.json`` (``index.js`` without them); the rest of what it loads is
    followed through relative requires, so bundles for browsers and test files that
    nothing requires are not read."""
    try:
        meta = json.loads(read_text(package + "/package.json") or "{}")
    except (ValueError, RecursionError):
        meta = {}
    targets: list[str] = []
    if isinstance(meta, dict):
        if isinstance(meta.get("main"), str):
            targets.append(meta["main"])
        targets += [t for t in _strings(meta.get("exports")) if t.startswith(".")]
    files = []
    for target in targets or ["index.js"]:
        found = _node_file(tree, posixpath.normpath(posixpath.join(package, target)))
        if found is not None and found not in files:
            files.append(found)
    return files


def python_follow(tree: FileTree, path: str, source: str) -> list[str]:
    return []  # every module of a kept package is read already


def node_follow(tree: FileTree, path: str, source: str) -> list[str]:
    """The files ``path``'s relative requires load."""
    directory = posixpath.dirname(path)
    found = (
        _node_file(tree, posixpath.normpath(posixpath.join(directory, spec)))
        for spec in sorted(node_relatives(source))
    )
    return [f for f in found if f is not None]


@dataclass(frozen=True)
class Language:
    """How one language's application code is found, read and resolved.

    ``names``: the packages a source file imports; ``package_files``: where reading a
    kept package starts; ``follow``: the files of the same package a file loads by
    relative name."""

    rule: str
    suffixes: tuple[str, ...]
    interpreter: str  # a word of a ``#!`` line that runs it
    names: Callable[[str], set[str]]
    package_files: Callable[[FileTree, str, TextReader], list[str]]
    follow: Callable[[FileTree, str, str], list[str]]


PYTHON = Language(
    "python-app-imports", (".py",), "python", python_imports, python_package_files, python_follow
)
NODE = Language(
    "node-app-requires", _JS_SUFFIXES, "node", node_requires, node_package_files, node_follow
)
LANGUAGES = (PYTHON, NODE)


def source_files(
    tree: FileTree, roots: Iterable[str], suffixes: tuple[str, ...], skip: frozenset[str]
) -> Iterator[str]:
    """The regular files ending in ``suffixes`` at or below each of ``roots`` (in-image
    paths), in order, not descending into directories named in ``skip``; links are not
    followed."""
    for root in roots:
        entry = tree.get(root)
        if entry is None:
            continue
        stack = [entry]
        while stack:
            current = stack.pop()
            if current.kind == "file":
                if current.path.endswith(suffixes):
                    yield current.path
            elif current.is_dir:
                children = current.children or {}
                stack.extend(
                    children[name]
                    for name in sorted(children, reverse=True)
                    if name not in skip or not children[name].is_dir
                )


def runs_with(text: str, interpreter: str) -> bool:
    """A ``#!`` line naming ``interpreter`` (``/usr/bin/python3``, ``/usr/bin/env node``)."""
    first = text.split("\n", 1)[0]
    return first.startswith("#!") and interpreter in first


def import_seeds(
    language: Language,
    tree: FileTree,
    roots: Iterable[str],
    scripts: Iterable[str],
    read_text: TextReader,
    lang: LangRules,
) -> list[Seed]:
    """Seeds keeping what the application's ``language`` code imports: its files below
    ``roots`` (not in :data:`OTHER_CODE` directories) and those of ``scripts`` in that
    language (by suffix or ``#!`` line); then what the kept packages' own files (not in
    :data:`NOT_RUN` directories) import in turn (each file read once)."""
    resolve = lang.imported_seeds if language is PYTHON else lang.required_seeds
    out: list[Seed] = []
    queue = deque(source_files(tree, roots, language.suffixes, OTHER_CODE))
    for script in scripts:
        if script.endswith(language.suffixes) or runs_with(
            read_text(script) or "", language.interpreter
        ):
            queue.append(script)
    seen: set[str] = set(queue)
    asked: set[tuple[str, str]] = set()
    read = 0

    def enqueue(paths: Iterable[str]) -> None:
        for found in paths:
            if found not in seen:
                seen.add(found)
                queue.append(found)

    while queue and read < MAX_FILES:
        path = queue.popleft()
        read += 1
        text = read_text(path) or ""
        enqueue(language.follow(tree, path, text))
        for name in sorted(language.names(text)):
            # A Python module is the same from any file; a Node package depends on
            # where the requiring file sits (node_modules lookups go up from it).
            key = (name, "" if language is PYTHON else path.rsplit("/", 1)[0])
            if key in asked:
                continue
            asked.add(key)
            seeds = resolve(name, path)
            out += seeds
            for seed in seeds:
                if seed.recursive:
                    enqueue(language.package_files(tree, seed.path, read_text))
                elif seed.path.endswith(language.suffixes):
                    enqueue([seed.path])
    return out
