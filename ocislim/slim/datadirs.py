"""The ``program-data-dirs`` rule: a file read from a package's own data directory keeps
that directory whole.

Programs read data by name from a directory of their own: pandoc its templates and
reference documents (``/usr/share/pandoc``), groff its devices and macros, Tcl its
library and encodings, vim its runtime, ghostscript its Resource tree.  The probe reads
what one run needed; the next run asks for another template.  When the trace saw a
regular file below ``/usr/share/X``, ``/usr/lib/X``, ``/usr/libexec/X`` or
``/usr/lib/<triplet>/X``, this rule keeps the shallowest directory on the way down to
that file that

- holds packaged files of one Debian *source* package only (a directory several
  sources install into, like ``/usr/share/fonts``, is nobody's own: the rule looks one
  level deeper), and
- holds at most :data:`MAX_DATA_DIR` bytes (a larger one: one level deeper too).

A program that ran (or counts as run) keeps every such directory of its source package
as well, when together they are at most :data:`MAX_DATA_DIR` (gawk's extensions in
``/usr/lib/<triplet>/gawk``, which a probe of ``gawk -i join`` never loaded); a source
with more (TeX, Erlang) keeps only the directories read.

Documentation and manuals inside are left out.  Directories another rule decides on
(the runtimes' trees, the web servers' modules, gconv, time zones, locales) are left to
that rule.  Without a dpkg database the rule keeps nothing.  Pure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable

from ocislim.layers.tree import Entry
from ocislim.slim.langrules import LangRule
from ocislim.slim.patterns import PatternSet
from ocislim.slim.pkgrules import DpkgIndex
from ocislim.slim.plan import Reason, Seed
from ocislim.slim.plugindirs import DECIDED_ELSEWHERE

DATA_DIR_RULES: tuple[LangRule, ...] = (
    LangRule(
        "program-data-dirs",
        "a file read below /usr/share/X, /usr/lib/X or /usr/libexec/X keeps the directory "
        "whole when one Debian source package installs everything in it (pandoc's "
        "templates, groff's devices, Tcl's library); documentation left out",
    ),
)

# A directory kept whole is at most this large; a larger one is looked into instead.
MAX_DATA_DIR = 32 << 20

_ROOTS = ("/usr/share", "/usr/lib", "/usr/libexec")
_TRIPLET_MARK = "-linux-gnu"
# Decided by other rules, or never read by a running program (documentation,
# translations, bug-report scripts, shell completions, desktop menus).
_LEFT_OUT = PatternSet(
    (
        "/usr/share/doc/**",
        "/usr/share/man/**",
        "/usr/share/info/**",
        "/usr/share/locale/**",
        "/usr/share/i18n/**",
        "/usr/share/bug/**",
        "/usr/share/lintian/**",
        "/usr/share/common-licenses/**",
        "/usr/share/bash-completion/**",
        "/usr/share/zsh/**",
        "/usr/share/fish/**",
        "/usr/share/menu/**",
        "/usr/share/applications/**",
        "/usr/share/pixmaps/**",
        "/usr/share/metainfo/**",
        "/usr/share/gtk-doc/**",
        "/usr/share/zoneinfo/**",
        "/usr/share/perl/**",
        "/usr/share/perl5/**",
        "/usr/share/nodejs/**",
        "/usr/share/lua/**",
        "/usr/share/php/**",
        "/usr/share/java/**",
        "/usr/share/postgresql/**",
        "/usr/share/git-core/**",
        "/usr/share/nginx/**",
        "/usr/share/rubygems-integration/**",
        "/usr/share/ruby*/**",
        "/usr/share/python*/**",
        "/usr/lib/git-core/**",
        "/usr/libexec/git-core/**",
        "/usr/lib/locale/**",
        "/usr/lib/*/lua/**",
        "/usr/lib/*/nodejs/**",
        "/usr/lib/nodejs/**",
    )
)
_DOCS = ("/**/doc", "/**/man", "/**/*.pod")


class ProgramDataDirs:
    """The rule's seeds for the data directories of touched paths and of run programs."""

    def __init__(self, index: DpkgIndex, enabled: Collection[str]) -> None:
        self._index = index
        self._tree = index.tree
        self._on = "program-data-dirs" in enabled
        self._own: dict[str, tuple[str, int] | None] = {}  # directory -> (source, bytes)
        self._kept: set[str] = set()
        self._sources_done: set[str] = set()

    def seeds(self, touched: Iterable[str], programs: Iterable[str] = ()) -> list[Seed]:
        """Seeds for the data directories not yet kept of ``touched`` files, and of the
        Debian source packages of ``programs`` that ran (canonical paths) when all of
        a source's own directories together are at most :data:`MAX_DATA_DIR`."""
        if not self._on:
            return []
        out: list[Seed] = []
        for path in touched:
            entry = self._tree.follow(path)
            own = self._own_dir(path) if entry is not None and entry.kind == "file" else None
            if own is not None and own[0] not in self._kept:
                out.append(self._seed(own[0], own[1], path, ""))
        for program in programs:
            package = self._index.owner(program)
            source = self._index.source(package) if package else None
            if source is None or source in self._sources_done:
                continue
            self._sources_done.add(source)
            found = {own[0]: own for p in self._source_files(source) if (own := self._own_dir(p))}
            if sum(size for _, _, size in found.values()) > MAX_DATA_DIR:
                continue  # a large tree (TeX, Erlang): only the directories read are kept
            for directory, owner, _ in sorted(found.values()):
                if directory not in self._kept:
                    out.append(self._seed(directory, owner, program, f" (ran {program})"))
        return out

    def _seed(self, directory: str, source: str, by: str, why: str) -> Seed:
        self._kept.add(directory)
        reason = Reason(
            "lazy",
            detail=f"the data directory of Debian source {source}{why}",
            rule="program-data-dirs",
            by=by,
        )
        return Seed(directory, reason, recursive=True, skip=_DOCS)

    def _source_files(self, source: str) -> list[str]:
        """The regular files the packages built from ``source`` installed."""
        out = []
        for package in self._index.packages:
            if self._index.source(package) != source:
                continue
            for path in self._index.files(package):
                entry = self._tree.get(path)
                if entry is not None and entry.kind == "file":
                    out.append(path)
        return out

    def _own_dir(self, path: str) -> tuple[str, str, int] | None:
        """The shallowest data directory holding ``path`` that one source owns, with that
        source and the directory's size (None: none, or a place other rules decide on)."""
        if _LEFT_OUT.match(path) is not None or DECIDED_ELSEWHERE.match(path) is not None:
            return None
        for directory in _candidates(path):
            if directory not in self._own:
                self._own[directory] = self._own_source(directory)
            own = self._own[directory]
            if own is not None:
                return directory, *own
        return None

    def _own_source(self, directory: str) -> tuple[str, int] | None:
        """The one source package whose packages installed every file below
        ``directory`` and the directory's size, when it is small enough to keep whole;
        else None."""
        entry = self._tree.get(directory)
        if entry is None or not entry.is_dir:
            return None
        sources = set()
        for path, owner in self._index.packaged_under(directory):
            member = self._tree.get(path)
            if member is not None and not member.is_dir:
                sources.add(self._index.source(owner))
                if len(sources) > 1:
                    return None
        size = _size(entry, MAX_DATA_DIR)
        if len(sources) != 1 or size > MAX_DATA_DIR:
            return None
        return sources.pop(), size


def _candidates(path: str) -> list[str]:
    """The directories from the data root down to ``path``'s parent, shallowest first
    (``/usr/share/X``, ``/usr/share/X/Y``, ...; ``/usr/lib/<triplet>/X`` for a triplet)."""
    for root in _ROOTS:
        if path.startswith(root + "/"):
            break
    else:
        return []
    parts = path[len(root) + 1 :].split("/")[:-1]  # the directories below the root
    if root == "/usr/lib" and parts and _TRIPLET_MARK in parts[0]:
        root, parts = f"{root}/{parts[0]}", parts[1:]
    return [posixpath.join(root, *parts[: i + 1]) for i in range(len(parts))]


def _size(entry: Entry, limit: int) -> int:
    """Bytes of the regular files below ``entry``; stops counting past ``limit``."""
    total = 0
    stack = [entry]
    while stack and total <= limit:
        node = stack.pop()
        for child in (node.children or {}).values():
            if child.is_dir:
                stack.append(child)
            elif child.kind == "file":
                total += child.size
    return total
