"""Perl's imports: what a Perl script or module loads, read from its text, found in @INC.

:func:`perl_imports` reads ``use Foo::Bar``, ``require Foo::Bar``, ``use parent`` /
``use base`` with their class lists, ``require "Foo/Bar.pm"`` and ``do "x/y.pl"`` (a
literal string), Moose's and Moo's ``extends`` and ``with`` (which load the classes
and roles they name), the driver a DBI data source names (``"dbi:SQLite:dbname=x"``:
DBI loads ``DBD::SQLite`` when it connects), a named character ``\\N{NAME}`` (which
loads ``_charnames``) and ``use lib`` directories (``$FindBin::Bin`` and relative paths
taken from the script's directory), skipping pod, comments and everything after
``__END__`` / ``__DATA__``.

:class:`PerlImports` resolves them against the image's ``@INC`` (:data:`PERL_INC`, in
Perl's own order, after the ``use lib`` directories), reads every module found in
turn (at most :data:`MAX_FILES` per script), and keeps each one with its *family*:
``Foo/Bar.pm``, the directory ``Foo/Bar/`` below the same ``@INC`` directory, and
``auto/Foo/Bar/`` (XS objects, autosplit files) in any ``@INC`` directory, and for
the modules of :data:`MODULE_DATA` their data directories (Unicode::UCD's
``unicore``); modules
load their parts by name at run time (Encode loads ``Encode::JP`` by encoding name,
DateTime its ``DateTime::Locale::*`` and ``DateTime::TimeZone::*``), so the files of
``Foo/Bar/`` are read for their imports too.  A touched module
(the trace read it) keeps its family too, and its imports are read the same way.

Every seed carries ``Reason("lazy", rule="perl-imports")`` with a detail naming the
module and who imported it.  Pure apart from the ``read_text`` callable it is given.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ocislim.errors import UnsafeArchiveError
from ocislim.layers.tree import Entry, FileTree
from ocislim.slim.plan import Reason, Seed
from ocislim.slim.treeglob import tree_dirs

RULE = "perl-imports"
# @INC in Perl's order: Debian's, then the layouts of Perl built from source (the
# official image's /usr/local/lib/perl5) and of other distributions.
PERL_INC = (
    "/etc/perl",
    "/usr/local/lib/*/perl/5.*",
    "/usr/local/share/perl/5.*",
    "/usr/lib/*/perl5/5.*",
    "/usr/share/perl5",
    "/usr/lib/*/perl-base",
    "/usr/lib/*/perl/5.*",
    "/usr/share/perl/5.*",
    "/usr/local/lib/site_perl",
    "/usr/local/lib/perl5/site_perl/5.*/*-linux*",
    "/usr/local/lib/perl5/site_perl/5.*",
    "/usr/local/lib/perl5/vendor_perl/5.*/*-linux*",
    "/usr/local/lib/perl5/vendor_perl/5.*",
    "/usr/local/lib/perl5/5.*/*-linux*",
    "/usr/local/lib/perl5/5.*",
    "/usr/lib/perl5/site_perl",
    "/usr/share/perl5/site_perl",
    "/usr/lib/perl5/vendor_perl",
    "/usr/share/perl5/vendor_perl",
    "/usr/lib/perl5/core_perl",
    "/usr/share/perl5/core_perl",
)
# Module files read for their imports, per script at most.
MAX_FILES = 3000
# Larger files are not read (a module is rarely over 1 MB; DateTime's catalogs are 100 kB).
MAX_TEXT = 4 << 20
# Documentation left out of a kept family (DateTime::Locale's 10 MB of .pod).
FAMILY_SKIP = ("*.pod",)
# Modules that read data files below @INC by computed names: the data directories
# their family includes (in every @INC directory holding one).
MODULE_DATA = {"Unicode/UCD.pm": ("unicore",)}

_NAME = r"[A-Za-z_]\w*(?:::\w+)*"
# A statement that loads a module: at a line's start or after ; { } ( or a word
# that introduces an expression (`eval { require X }`, `... or require X`).
_LOAD = re.compile(
    r"(?:^|[;{}(]|\b(?:eval|do|and|or|not|if|unless|return)\b|&&|\|\|"
    r"|\beval[ \t]*(?:[\"']|qq?[{(]))[ \t]*"
    rf"\b(use|require)[ \t]+({_NAME})(?![\w:])([^;]*)",
    re.MULTILINE,
)
# A module loaded at run time by a loader function given its name as a literal:
# Module::Runtime's ``require_module('Template::Tiny')``, Class::Load's ``load_class``,
# Module::Load's ``load``.
_LOADER_CALL = re.compile(
    r"(?<![>$@%\w])(?:[\w:]*::)?(?:require_module|use_module|use_package_optimistically"
    r"|load_class|try_load_class|load_optional_class|load_first_existing_class|load)"
    rf"[ \t]*\(?[ \t]*([\"'])({_NAME})\1"
)
# Moose's and Moo's ``extends 'Base'`` / ``with 'Role', 'Other'`` load what they name.
_CLASS_SUGAR = re.compile(r"(?:^|[;{}])[ \t]*(?:extends|with)\b[ \t]*\(?([^;]*)", re.MULTILINE)
# A DBI data source: ``DBI->connect("dbi:Pg:dbname=app")`` loads DBD::Pg by that name.
_DBI_DSN = re.compile(r"[\"'](?i:dbi):(\w+):")
# ``require "Foo/Bar.pm"`` and ``do "unicore/Name.pl"``: both search @INC.
_REQUIRE_FILE = re.compile(r"\b(?:require|do)[ \t]*\(?[ \t]*([\"'])([^\"'\n$@]{1,255})\1")
# A character by name, ``\N{GREEK SMALL LETTER ALPHA}`` (not ``\N{U+3B1}``): the lexer
# loads _charnames for it, which reads unicore's name tables.
_NAMED_CHAR = re.compile(r"\\N\{(?!U\+)[ \t]*[A-Za-z]")
_QW = re.compile(r"\bqw\s*(?:\((.*?)\)|\[(.*?)\]|\{(.*?)\}|/(.*?)/|<(.*?)>)", re.DOTALL)
_STRING = re.compile(r"([\"'])([^\"'\n]*)\1")
_FINDBIN = re.compile(r"\$\{?(?:FindBin::)?(?:Real)?Bin\}?")
_POD_START = re.compile(r"^=[A-Za-z]")
_END = re.compile(r"^__(?:END|DATA)__\b")
_COMMENT = re.compile(r"(?:^|(?<=[\s;{}]))#.*$")


@dataclass
class PerlSource:
    """What one Perl file loads: modules as relative file names under @INC
    (``Foo/Bar.pm``), with the name written (``Foo::Bar``), and ``use lib`` directories
    (absolute, or relative to the file's directory)."""

    modules: dict[str, str] = field(default_factory=dict)  # Foo/Bar.pm -> Foo::Bar
    libs: list[str] = field(default_factory=list)


def code_of(text: str) -> str:
    """``text`` without pod, comments and what follows ``__END__`` / ``__DATA__``."""
    lines: list[str] = []
    in_pod = False
    for line in text.splitlines():
        if in_pod:
            in_pod = not line.startswith("=cut")
            continue
        if _POD_START.match(line):
            in_pod = True
            continue
        if _END.match(line):
            break
        if "#" in line and "'" not in line and '"' not in line:
            line = _COMMENT.sub("", line)
        elif line.lstrip().startswith("#"):
            line = ""
        lines.append(line)
    return "\n".join(lines)


def module_file(name: str) -> str | None:
    """``Foo::Bar`` as ``Foo/Bar.pm`` (None for a name that is not a package name)."""
    if not re.fullmatch(_NAME, name) or len(name) > 255:
        return None
    return name.replace("::", "/") + ".pm"


def safe_relative(path: str) -> str | None:
    """A literal ``require`` path as a relative file name under @INC, or None: never
    absolute, never with a ``..`` or empty component, a NUL or a control character."""
    if not path or path.startswith("/") or any(ord(c) < 32 for c in path):
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return path


def perl_imports(text: str) -> PerlSource:
    """The modules and ``use lib`` directories of Perl source ``text`` (see the module
    docstring); ``use parent -norequire`` loads nothing."""
    source = PerlSource()
    code = code_of(text)

    def add(name: str) -> None:
        relative = module_file(name)
        if relative is not None and name not in ("lib",):
            source.modules.setdefault(relative, name)

    for match in _LOAD.finditer(code):
        verb, name, rest = match.groups()
        if verb == "use" and name in ("parent", "base"):
            words = _words(rest)
            if "-norequire" not in rest:
                for word in words:
                    add(word)
            add(name)
        elif verb == "use" and name == "lib":
            source.libs += [w for w in (_lib_dir(w) for w in _words(rest, raw=True)) if w]
        else:
            add(name)
    for match in _LOADER_CALL.finditer(code):
        add(match.group(2))
    for match in _CLASS_SUGAR.finditer(code):
        for word in _words(match.group(1)):
            add(word)
    for match in _DBI_DSN.finditer(code):
        add(f"DBD::{match.group(1)}")
    if _NAMED_CHAR.search(code):
        add("_charnames")
    for match in _REQUIRE_FILE.finditer(code):
        relative = safe_relative(match.group(2))
        if relative is not None:
            source.modules.setdefault(relative, relative)
    return source


def _words(rest: str, raw: bool = False) -> list[str]:
    """The words of a ``use`` statement's list: ``qw(...)`` items and quoted strings (with
    ``raw``, a double-quoted string keeps its ``$`` variables for :func:`_lib_dir`)."""
    words: list[str] = []
    for match in _QW.finditer(rest):
        words += next(g for g in match.groups() if g is not None).split()
    rest = _QW.sub(" ", rest)
    for match in _STRING.finditer(rest):
        words.append(match.group(2))
    if not raw:
        words = [w for w in words if "$" not in w and "@" not in w]
    return words


def _lib_dir(word: str) -> str | None:
    """A ``use lib`` item as a path: ``$FindBin::Bin`` becomes ``.`` (the script's
    directory); an item with any other variable is skipped."""
    word = _FINDBIN.sub(".", word)
    if not word or "$" in word or "@" in word or "\x00" in word:
        return None
    return word


class PerlImports:
    """Reads Perl files' imports in ``tree`` and keeps what they load (see the module
    docstring); each module file is read once, each family kept once."""

    def __init__(self, tree: FileTree, read_text: Callable[[str], str | None]) -> None:
        self.tree = tree
        self.read_text = read_text
        self._inc: list[tuple[str, str]] | None = None
        self._read: set[str] = set()
        self._families: set[str] = set()

    def inc(self) -> list[str]:
        """The image's @INC directories, in Perl's order, as Perl names them."""
        return [path for path, _ in self._inc_dirs()]

    def _inc_dirs(self) -> list[tuple[str, str]]:
        if self._inc is None:
            self._inc = tree_dirs(self.tree, PERL_INC)
        return self._inc

    def in_inc(self, path: str) -> bool:
        """``path`` (canonical) is below one of the image's @INC directories."""
        return any(path.startswith(c + "/") for _, c in self._inc_dirs())

    def script(self, script: str) -> list[Seed]:
        """For a Perl script that runs (counted as run, or the application's own source):
        every module it loads, transitively, each with its family."""
        return self._closure(script, [(script, script)])

    def touched(self, path: str) -> list[Seed]:
        """For a touched file below an @INC directory: its family, and what it loads."""
        if not path.endswith((".pm", ".pl")) or self._canon(path) in self._read:
            return []
        for directory, canonical in self._inc_dirs():
            if path.startswith(canonical + "/"):
                relative = path[len(canonical) + 1 :]
                why = Reason(
                    "lazy",
                    detail=f"Perl module {_display(relative)}, touched",
                    rule=RULE,
                    by=path,
                )
                family = self._family(directory, relative, why)
                parts = [(f, path) for f in self._family_files(directory, relative)]
                return [*family, *self._closure(path, [(path, path), *parts])]
        return []

    def _closure(self, origin: str, queue: list[tuple[str, str]]) -> list[Seed]:
        out: list[Seed] = []
        libs: list[str] = []
        read = 0
        while queue and read < MAX_FILES:
            path, importer = queue.pop(0)
            if self._canon(path) in self._read and path != origin:
                continue
            self._read.add(self._canon(path))
            read += 1
            text = self._text(path)
            if text is None:
                continue
            source = perl_imports(text)
            base = posixpath.dirname(path)
            for lib in source.libs:
                directory = posixpath.normpath(posixpath.join(base, lib))
                entry = self._entry(directory)
                if entry is not None and entry.is_dir and directory not in libs:
                    libs.append(directory)
            for relative, name in source.modules.items():
                found = self._find(relative, libs)
                if found is None:
                    continue  # a built-in (Internals) or a module the image lacks
                directory, module = found
                if self._canon(module) in self._read:
                    continue
                via = "" if importer == origin else f", from {origin}"
                why = Reason(
                    "lazy",
                    detail=f"Perl module {name}, imported by {importer}{via}",
                    rule=RULE,
                    by=origin,
                )
                out += self._family(directory, relative, why)
                queue.append((module, module))
                # Its parts are loaded by name (Module::Implementation, Encode's tables).
                queue += [(f, module) for f in self._family_files(directory, relative)]
        return out

    def _family_files(self, directory: str, relative: str) -> list[str]:
        """The ``.pm``/``.pl`` files of the directory ``Foo/Bar/`` beside ``Foo/Bar.pm``."""
        if not relative.endswith((".pm", ".pl")):
            return []
        own = self._entry(f"{directory}/{relative[:-3]}")
        out: list[str] = []
        stack = [own] if own is not None and own.is_dir else []
        while stack and len(out) < MAX_FILES:
            node = stack.pop()
            for name in sorted(node.children or {}):
                child = (node.children or {})[name]
                if child.is_dir:
                    stack.append(child)
                elif child.kind == "file" and name.endswith((".pm", ".pl")):
                    out.append(child.path)
        return out

    def _find(self, relative: str, libs: list[str]) -> tuple[str, str] | None:
        for directory in (*libs, *self.inc()):
            candidate = f"{directory}/{relative}"
            entry = self._entry(candidate)
            if entry is not None and not entry.is_dir:
                return directory, candidate
        return None

    def _family(self, directory: str, relative: str, why: Reason) -> list[Seed]:
        """``Foo/Bar.pm``, ``Foo/Bar/`` beside it, ``auto/Foo/Bar/`` anywhere in @INC."""
        module = f"{directory}/{relative}"
        if self._canon(module) in self._families:
            return []
        self._families.add(self._canon(module))
        seeds = [Seed(module, why)]
        stem = relative.rsplit(".", 1)[0] if relative.endswith((".pm", ".pl")) else None
        if stem is None:
            return seeds
        own = self._entry(f"{directory}/{stem}")
        if own is not None and own.is_dir:
            seeds.append(Seed(own.path, why, recursive=True, skip=FAMILY_SKIP))
        data = [f"auto/{stem}", *MODULE_DATA.get(relative, ())]
        for inc in self.inc():
            for below in data:
                found = self._entry(f"{inc}/{below}")
                if found is not None and found.is_dir:
                    seeds.append(Seed(found.path, why, recursive=True, skip=FAMILY_SKIP))
        return seeds

    def _canon(self, path: str) -> str:
        try:
            return self.tree.resolve(path)
        except UnsafeArchiveError:
            return path

    def _entry(self, path: str) -> Entry | None:
        """The entry at ``path``, through links on the way."""
        return self.tree.get(self._canon(path))

    def _text(self, path: str) -> str | None:
        entry = self._entry(path)
        if entry is None or entry.kind != "file" or entry.size > MAX_TEXT:
            return None
        return self.read_text(self._canon(path))


def _display(relative: str) -> str:
    if relative.endswith(".pm"):
        return relative[:-3].replace("/", "::")
    return relative
