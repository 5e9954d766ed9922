"""Ruby's requires: what a Ruby script loads, read from its text, found on the load path.

:func:`ruby_requires` reads ``require 'x'``, ``require_relative 'x'`` and
``autoload :X, 'x'`` (literal strings only: no interpolation), skipping comments,
``=begin``/``=end`` blocks and everything after ``__END__``.

:class:`RubyImports` resolves a feature against the standard library and site/vendor
directories (:data:`RUBY_LOAD_PATH`) and the ``lib`` directory of every installed gem
(:data:`GEM_HOMES`: each a directory holding ``gems/`` and ``specifications/``).  A
feature found inside a gem keeps the gem whole, its specification and its compiled
extensions (as ``ruby-gem`` keeps a touched gem) and the gems its specification names
as runtime dependencies, and every ``.rb`` file of its ``require_paths`` (``lib`` by
default) is read in turn; a feature found on the load path keeps its file and the directory of the
same name beside it (``net/http.rb`` and ``net/http/``), read in turn; a
``require_relative`` keeps the file it names.  At most :data:`MAX_FILES` files are read
per script.  Every seed carries ``Reason("lazy", rule="ruby-imports")`` with a detail
naming the feature and who required it.

Pure apart from the ``read_text`` callable it is given.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from ocislim.layers.tree import Entry, FileTree
from ocislim.slim.plan import Reason, Seed
from ocislim.slim.treeglob import tree_dirs

RULE = "ruby-imports"
# Ruby's load path, in its order (Debian's layout, then Ruby built under /usr/local).
RUBY_LOAD_PATH = (
    "/usr/local/lib/site_ruby/[0-9]*",
    "/usr/local/lib/*/site_ruby",
    "/usr/local/lib/site_ruby",
    "/usr/lib/ruby/vendor_ruby/[0-9]*",
    "/usr/lib/*/ruby/vendor_ruby/[0-9]*",
    "/usr/lib/ruby/vendor_ruby",
    "/usr/lib/ruby/[0-9]*",
    "/usr/lib/*/ruby/[0-9]*",
    "/usr/local/lib/ruby/site_ruby/[0-9]*/*-linux*",
    "/usr/local/lib/ruby/site_ruby/[0-9]*",
    "/usr/local/lib/ruby/site_ruby",
    "/usr/local/lib/ruby/vendor_ruby/[0-9]*/*-linux*",
    "/usr/local/lib/ruby/vendor_ruby/[0-9]*",
    "/usr/local/lib/ruby/vendor_ruby",
    "/usr/local/lib/ruby/[0-9]*",
    "/usr/local/lib/ruby/[0-9]*/*-linux*",
)
# Where gems are installed: Debian's bundled gems, rubygems-integration, `gem install`
# (/var/lib/gems), Ruby built under /usr/local, the official image's GEM_HOME.
GEM_HOMES = (
    "/usr/local/bundle",
    "/usr/local/lib/ruby/gems/[0-9]*",
    "/var/lib/gems/[0-9]*",
    "/usr/lib/ruby/gems/[0-9]*",
    "/usr/lib/*/rubygems-integration/[0-9]*",
    "/usr/share/rubygems-integration/[0-9]*",
    "/usr/share/rubygems-integration/all",
)
MAX_FILES = 3000
MAX_TEXT = 4 << 20
_FEATURE = re.compile(
    r"""\b(require|require_relative)\b[ \t]*\(?[ \t]*(['"])([^'"\n]{1,255})\2"""
    r"""|\bautoload\b[ \t]*\(?[ \t]*:?[A-Za-z_]\w*[ \t]*,[ \t]*(['"])([^'"\n]{1,255})\4"""
)
_COMMENT = re.compile(r"(?:^|(?<=[\s;]))#.*$")
_REQUIRE_PATHS = re.compile(r"\.require_paths\s*=\s*\[([^\]]*)\]")
_GEM_STRING = re.compile(r"[\"']([^\"'\n]+)[\"']")
_GEM_DEPENDENCY = re.compile(
    r"\badd_(?:runtime_)?dependency\s*\(?\s*(?:%q<([^>\n]+)>|[\"']([^\"'\n]+)[\"'])"
)
_VERSION = re.compile(r"^(?P<name>.+?)-(?P<version>\d[\w.]*)$")


def code_of(text: str) -> str:
    """``text`` without ``=begin``/``=end`` blocks, comments and what follows ``__END__``."""
    lines: list[str] = []
    in_doc = False
    for line in text.splitlines():
        if in_doc:
            in_doc = not line.startswith("=end")
            continue
        if line.startswith("=begin"):
            in_doc = True
            continue
        if line.rstrip() == "__END__":
            break
        if line.lstrip().startswith("#"):
            continue
        if "#" in line and "'" not in line and '"' not in line:
            line = _COMMENT.sub("", line)
        lines.append(line)
    return "\n".join(lines)


def ruby_requires(text: str) -> list[tuple[str, str]]:
    """(kind, feature) for every literal ``require`` (kind ``require``, ``autoload``
    counting as one) and ``require_relative`` of Ruby source ``text``, in order, once
    each; a string with interpolation (``#{``), a NUL or a control character is skipped."""
    found: dict[tuple[str, str], None] = {}
    for match in _FEATURE.finditer(code_of(text)):
        if match.group(1):
            kind, feature = match.group(1), match.group(3)
        else:
            kind, feature = "require", match.group(5)
        if "#{" in feature or any(ord(c) < 32 for c in feature):
            continue
        found[(kind, feature)] = None
    return list(found)


def safe_feature(feature: str) -> str | None:
    """A ``require`` feature as a relative name on the load path, or None: never
    absolute, never with a ``.``/``..`` or empty component."""
    if not feature or feature.startswith("/"):
        return None
    if any(p in ("", ".", "..") for p in feature.split("/")):
        return None
    return feature


@dataclass(frozen=True)
class Gem:
    home: str  # GEM_HOME: holds gems/ and specifications/
    name: str  # NAME-VERSION

    @property
    def path(self) -> str:
        return f"{self.home}/gems/{self.name}"


class RubyImports:
    """Reads Ruby files' requires in ``tree`` and keeps what they load (see the module
    docstring); each file is read once, each gem kept once."""

    def __init__(self, tree: FileTree, read_text: Callable[[str], str | None]) -> None:
        self.tree = tree
        self.read_text = read_text
        self._load_path: list[str] | None = None
        self._gems: list[Gem] | None = None
        self._read: set[str] = set()
        self._kept: set[str] = set()
        self._paths: dict[str, list[str]] = {}

    def load_path(self) -> list[str]:
        if self._load_path is None:
            self._load_path = [path for path, _ in tree_dirs(self.tree, RUBY_LOAD_PATH)]
        return self._load_path

    def gems(self) -> list[Gem]:
        """Installed gems, each home's newest version of a name first."""
        if self._gems is None:
            self._gems = []
            for home, _ in tree_dirs(self.tree, GEM_HOMES):
                gems = self.tree.get(f"{home}/gems")
                specs = self.tree.get(f"{home}/specifications")
                if gems is None or not gems.is_dir or specs is None or not specs.is_dir:
                    continue
                names = [n for n, e in (gems.children or {}).items() if e.is_dir]
                self._gems += [Gem(home, n) for n in sorted(names, key=_gem_order)]
        return self._gems

    def gem_of(self, path: str) -> Gem | None:
        """The installed gem holding ``path``, if any."""
        for gem in self.gems():
            if path.startswith(gem.path + "/"):
                return gem
        return None

    def script(self, script: str) -> list[Seed]:
        """For a Ruby script that runs (counted as run, the application's own source):
        every feature it requires, transitively."""
        return self._closure(script, [(script, script)])

    def touched(self, path: str) -> list[Seed]:
        """For a touched Ruby file: what it requires (its gem is ``ruby-gem``'s)."""
        if path in self._read:
            return []
        gem = self.gem_of(path)
        queue = [(path, path)]
        if gem is not None and gem.path not in self._kept:
            self._kept.add(gem.path)  # kept by ruby-gem; its files are read here
            queue += [
                (f, path)
                for d in self._require_paths(gem)
                for f in self._rb_files(f"{gem.path}/{d}")
            ]
        return self._closure(path, queue)

    def _closure(self, origin: str, queue: list[tuple[str, str]]) -> list[Seed]:
        out: list[Seed] = []
        read = 0
        while queue and read < MAX_FILES:
            path, importer = queue.pop(0)
            if path in self._read:
                continue
            self._read.add(path)
            read += 1
            text = self._text(path)
            if text is None:
                continue
            for kind, feature in ruby_requires(text):
                via = "" if importer == origin or path == origin else f", from {origin}"
                why = Reason(
                    "lazy",
                    detail=f"Ruby feature '{feature}', required by {path}{via}",
                    rule=RULE,
                    by=origin,
                )
                if kind == "require_relative":
                    seeds, more = self._relative(path, feature, why)
                else:
                    seeds, more = self._feature(feature, why)
                out += seeds
                queue += [(m, origin) for m in more if m not in self._read]
        return out

    def _relative(self, path: str, feature: str, why: Reason) -> tuple[list[Seed], list[str]]:
        if "\x00" in feature:
            return [], []
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), feature))
        for candidate in (target, f"{target}.rb"):
            if candidate.endswith(".rb") and self._is_file(candidate):
                gem = self.gem_of(candidate)
                if gem is not None:
                    return self._gem(gem, why)
                return [Seed(candidate, why)], [candidate]
        return [], []

    def _feature(self, feature: str, why: Reason) -> tuple[list[Seed], list[str]]:
        relative = safe_feature(feature)
        if relative is None:
            return [], []
        names = (
            [relative]
            if relative.endswith((".rb", ".so"))
            else [f"{relative}.rb", f"{relative}.so"]
        )
        for directory in self.load_path():
            for name in names:
                candidate = f"{directory}/{name}"
                if self._is_file(candidate):
                    return self._load_path_file(candidate, why)
        for gem in self.gems():
            for name in names:
                if any(self._is_file(f"{gem.path}/{d}/{name}") for d in self._require_paths(gem)):
                    return self._gem(gem, why)
        for gem in self.gems():  # a compiled extension built outside the gem's lib
            for name in names:
                for built in self._extension_dirs(gem):
                    if self._is_file(f"{built}/{name}"):
                        return self._gem(gem, why)
        return [], []  # built into the interpreter (enumerator, thread) or absent

    def _load_path_file(self, path: str, why: Reason) -> tuple[list[Seed], list[str]]:
        if path in self._kept:
            return [], []
        self._kept.add(path)
        seeds, more = [Seed(path, why)], [path] if path.endswith(".rb") else []
        family = self.tree.follow(path.rsplit(".", 1)[0])
        if family is not None and family.is_dir:
            seeds.append(Seed(family.path, why, recursive=True))
            more += self._rb_files(family.path)
        return seeds, more

    def _gem(self, gem: Gem, why: Reason) -> tuple[list[Seed], list[str]]:
        """The gem whole, its specification and extensions, and the gems its
        specification lists as runtime dependencies (RubyGems activates them with it);
        their files to read."""
        if gem.path in self._kept:
            return [], []
        self._kept.add(gem.path)
        seeds = [Seed(gem.path, why, recursive=True)]
        spec = self._spec(gem)
        if self._is_file(spec):
            seeds.append(Seed(spec, why))
        seeds += [Seed(built, why, recursive=True) for built in self._extension_dirs(gem)]
        more = [f for d in self._require_paths(gem) for f in self._rb_files(f"{gem.path}/{d}")]
        for quoted, plain in _GEM_DEPENDENCY.findall(self._text(spec) or ""):
            name = quoted or plain
            dependency = next((g for g in self.gems() if _gem_name(g.name) == name), None)
            if dependency is not None:
                dep_why = Reason(
                    "lazy",
                    detail=f"Ruby gem {dependency.name}, a dependency of {gem.name} ({why.detail})",
                    rule=RULE,
                    by=why.by,
                )
                dep_seeds, dep_more = self._gem(dependency, dep_why)
                seeds += dep_seeds
                more += dep_more
        return seeds, more

    def _spec(self, gem: Gem) -> str:
        return f"{gem.home}/specifications/{gem.name}.gemspec"

    def _require_paths(self, gem: Gem) -> list[str]:
        """The gem's ``require_paths`` from its specification (``lib`` without one)."""
        if gem.name not in self._paths:
            found = _REQUIRE_PATHS.search(self._text(self._spec(gem)) or "")
            paths = _GEM_STRING.findall(found.group(1)) if found else []
            self._paths[gem.name] = [p for p in paths if safe_feature(p)] or ["lib"]
        return self._paths[gem.name]

    def _extension_dirs(self, gem: Gem) -> list[str]:
        extensions = self.tree.get(f"{gem.home}/extensions")
        out = []
        for platform in (extensions.children or {}).values() if extensions else ():
            for version in (platform.children or {}).values():
                built = (version.children or {}).get(gem.name)
                if built is not None and built.is_dir:
                    out.append(built.path)
        return sorted(out)

    def _rb_files(self, top: str) -> list[str]:
        entry = self.tree.follow(top)
        if entry is None or not entry.is_dir:
            return []
        out: list[str] = []
        stack: list[Entry] = [entry]
        while stack and len(out) < MAX_FILES:
            node = stack.pop()
            for name in sorted(node.children or {}):
                child = (node.children or {})[name]
                if child.is_dir:
                    stack.append(child)
                elif child.kind == "file" and name.endswith(".rb"):
                    out.append(child.path)
        return sorted(out)

    def _is_file(self, path: str) -> bool:
        entry = self.tree.follow(path)
        return entry is not None and not entry.is_dir

    def _text(self, path: str) -> str | None:
        entry = self.tree.follow(path)
        if entry is None or entry.kind != "file" or entry.size > MAX_TEXT:
            return None
        return self.read_text(entry.path)


def _gem_name(name: str) -> str:
    """``NAME`` of a gem directory ``NAME-VERSION``."""
    match = _VERSION.match(name)
    return match["name"] if match is not None else name


def _gem_order(name: str) -> tuple[str, tuple[int, ...]]:
    """Sort key: by name, newest version first."""
    match = _VERSION.match(name)
    if match is None:
        return name, ()
    numbers = tuple(-int(n) for n in re.findall(r"\d+", match["version"]))
    return match["name"], numbers
