"""Language runtimes load lazily too: rules, as data, that widen what a trace touched.

A trace sees only the modules one run imported; the next run may import others
(``importlib``, plugins, optional features).  Each :class:`LangRule` names a
behaviour, says what it keeps, and can be switched off (or, for the ones off by
default, on) by name; every path it keeps carries ``Reason("lazy", rule=NAME)``.

- ``python-stdlib``: when a file of a Python standard library directory
  (``.../lib/pythonX.Y`` holding ``os.py``, the interpreter's landmark) is touched,
  or the interpreter itself (``PREFIX/bin/pythonX.Y``, ``libpythonX.Y.so``: a program
  that another rule counts as run, a CGI script's ``#!`` interpreter), keep that
  library (the interpreter's own, ``PREFIX/lib/pythonX.Y``): pure modules and
  ``lib-dynload`` extension modules (their ELF closures follow from the plan's ELF
  pass).  Bytecode caches of modules that were not touched are left out, as are
  ``site-packages``/``dist-packages`` (see below) and the extras.
- ``python-stdlib-extras`` (off by default): test suites and tools too, and the few
  rarely imported modules with large closures (``nis``, ``_dbm``, ``readline``,
  ``_pydecimal``) unless traced.
- ``python-distribution``: when a file of an installed distribution is touched
  (a path its ``*.dist-info/RECORD`` or ``*.egg-info/installed-files.txt`` lists,
  or, without such a list, anything under a top-level name of
  ``top_level.txt``), keep the whole distribution; a touched top-level package
  that no distribution claims is kept whole.  Either way without the gettext sources
  that have their compiled catalog beside them (:mod:`ocislim.slim.catalogs`), and
  without its ``tests`` directories (nor are their imports read).
- ``python-tests`` (off by default): a kept distribution's ``tests`` directories too.
- ``node-package``: when a file of a package under ``node_modules`` (or Debian's
  ``/usr/share/nodejs``, ``/usr/lib/nodejs``) is touched, keep the package's
  directory.

Perl's and Ruby's imports are read by :mod:`ocislim.slim.perlimports` and
:mod:`ocislim.slim.rubyimports` (rules ``perl-imports`` and ``ruby-imports``, listed with
the runtime rules); this module dispatches touched files and scripts to them.

Pure apart from the ``read_text`` callable it is given (metadata files).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from ocislim.layers.tree import Entry, FileTree
from ocislim.slim.catalogs import compiled_catalog_sources, is_compiled_catalog_source
from ocislim.slim.perlimports import PerlImports
from ocislim.slim.plan import Reason, Seed
from ocislim.slim.rubyimports import RubyImports


@dataclass(frozen=True)
class LangRule:
    name: str
    description: str
    default: bool = True


LANG_RULES: tuple[LangRule, ...] = (
    LangRule(
        "python-stdlib",
        "a Python interpreter that ran (a touched file of its library, or the interpreter "
        "itself) needs its whole standard library (pure modules and lib-dynload "
        "extensions; untouched bytecode caches left out)",
    ),
    LangRule(
        "python-stdlib-extras",
        "with python-stdlib, also the standard library's test suites and tools, and the "
        "rarely imported modules with large closures (nis, _dbm, readline, _pydecimal)",
        default=False,
    ),
    LangRule(
        "python-distribution",
        "a touched file of an installed Python distribution keeps the whole distribution",
    ),
    LangRule(
        "python-tests",
        "with python-distribution, also the tests directories inside a kept distribution "
        "(a test suite is run by its test runner, not imported by the program; a traced "
        "test file is kept anyway)",
        default=False,
    ),
    LangRule(
        "python-ctypes-libraries",
        "with python-distribution, the shared libraries a Python file read for its imports "
        "loads by name (ctypes.util.find_library('magic'), CDLL('libmagic.so.1'), cffi's "
        "dlopen), each with its ELF closure, counted as run",
    ),
    LangRule(
        "node-package",
        "a touched file of a Node package keeps the package's whole directory",
    ),
)

# Standard-library subdirectories that are test suites or tools, not runtime modules.
PYTHON_STDLIB_EXTRAS = (
    "test",
    "idlelib",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "turtledemo",
    "config-*",  # static libpython and Makefile, for building extensions
    # Rarely imported modules whose closures are large (measured on bookworm: 4.5 MB of
    # the Flask fixture's 44): NIS (deprecated; libnsl, libtirpc and Kerberos), the
    # Berkeley DB binding (libdb; dbm falls back to dbm.dumb), interactive line editing
    # (libreadline, ncurses; cmd and pdb run without it) and decimal's pure-Python twin.
    # A traced import still keeps them.
    "lib-dynload/nis.*",
    "lib-dynload/_dbm.*",
    "lib-dynload/readline.*",
    "_pydecimal.py",
)
# A distribution's test suite (``pandas/tests``, ``scipy/*/tests``): left out of a kept
# distribution unless ``python-tests`` is on.  Only the plural: ``numpy.testing`` and
# ``django.test`` are imported at run time.
PYTHON_TESTS_DIR = "tests"
# Third-party code inside a standard library directory has its own rule.
PYTHON_SITE_DIRS = ("site-packages", "dist-packages")
PYTHON_LIBDIR_RE = re.compile(r"^python\d+\.\d+t?$")
# The interpreter (PREFIX/bin/python3.11, python3) and the library that embeds it.
PYTHON_BINARY_RE = re.compile(r"^python(?P<major>\d+)(?P<minor>\.\d+t?)?$")
PYTHON_EMBED_RE = re.compile(r"^libpython(?P<version>\d+\.\d+t?)\.so(?:\.[\d.]+)?$")
PYTHON_LANDMARK = "os.py"
PYTHON_DIST_SUFFIXES = (".dist-info", ".egg-info")

NODE_MODULES = "node_modules"
# Debian installs Node packages outside any node_modules directory.
NODE_ROOTS = ("/usr/share/nodejs", "/usr/lib/nodejs")
# Where Node looks last for a bare name (Debian's multiarch root, npm's global prefix).
_TRIPLETS = (
    "x86_64-linux-gnu", "aarch64-linux-gnu", "arm-linux-gnueabihf", "i386-linux-gnu",
    "powerpc64le-linux-gnu", "s390x-linux-gnu", "riscv64-linux-gnu",
)  # fmt: skip
NODE_GLOBAL_ROOTS = (
    *(f"/usr/lib/{t}/nodejs" for t in _TRIPLETS),
    "/usr/local/lib/node_modules",
    "/usr/lib/node_modules",
)
_NODE_SUFFIXES = (".js", ".mjs", ".cjs")
# Perl's and Ruby's sources (a .cgi counts by its #! line).
_PERL_SUFFIXES = (".pl", ".pm", ".cgi")
_RUBY_SUFFIXES = (".rb", ".ru")
# Files of imported Python packages read for their own imports, per script at most.
_MAX_IMPORT_FILES = 5000
_PY_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+([A-Za-z_]\w*)[\w.]*[ \t]+import\b"
    r"|import[ \t]+([A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*))",
    re.MULTILINE,
)
# ``importlib.import_module("yaml")`` and ``__import__("yaml")`` with a literal name.
_PY_IMPORT_CALL = re.compile(
    r"""\b(?:import_module|__import__)\s*\(\s*['"]([A-Za-z_]\w*)[\w.]*['"]"""
)
# A shared library a Python file loads by name: ``ctypes.util.find_library("magic")``,
# ``CDLL("libmagic.so.1")``, ``cdll.LoadLibrary(...)``, cffi's ``ffi.dlopen("cairo")``.
_PY_LIBRARY_CALL = re.compile(
    r"""\b(?:find_library|CDLL|PyDLL|LoadLibrary|dlopen)\s*\(\s*['"]([A-Za-z0-9_.+-]{1,128})['"]"""
)
# Where the loader finds a library by name (Debian's multiarch directories first).
_LIBRARY_DIRS = (
    *(f"/usr/lib/{t}" for t in _TRIPLETS),
    "/usr/local/lib",
    "/usr/lib64",
    "/usr/lib",
)
# Express requires its view engine by the name the app sets: ``app.set('view engine', 'ejs')``.
_JS_VIEW_ENGINE = re.compile(r"""\.set\(\s*['"]view engine['"]\s*,\s*['"]([\w.@/-]+)['"]""")
_JS_IMPORT = re.compile(
    r"""\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)"""
    r"""|\bimport\s*(?:[\w*{}\s,]+?\s*from\s*)?\(?\s*['"]([^'"]+)['"]"""
)


def rule_names() -> tuple[str, ...]:
    return tuple(r.name for r in LANG_RULES)


def default_enabled() -> frozenset[str]:
    return frozenset(r.name for r in LANG_RULES if r.default)


def glob_escape(path: str) -> str:
    """``path`` as a glob matching only itself."""
    return re.sub(r"([*?\[])", r"[\1]", path)


@dataclass
class _Distribution:
    info_dir: str
    members: frozenset[str]  # absolute paths listed by RECORD / installed-files.txt
    tops: frozenset[str]  # top-level names (used when there is no file list)


class LangRules:
    """Applies the enabled rules to touched paths; remembers what it already kept.

    ``read_text(path)`` returns the text of an in-image file (or None).
    """

    def __init__(
        self,
        tree: FileTree,
        read_text: Callable[[str], str | None],
        enabled: Collection[str] | None = None,
    ) -> None:
        self.tree = tree
        self.read_text = read_text
        self.enabled = frozenset(default_enabled() if enabled is None else enabled)
        self._stdlib_done: set[str] = set()
        self._packages_done: set[str] = set()
        self._catalogs: dict[str, list[str]] = {}
        self._tests: dict[str, list[str]] = {}
        self._imports_done: set[str] = set()
        self._libraries_done: set[str] = set()
        self._sites: dict[str, list[_Distribution]] | None = None
        self._perl = PerlImports(tree, read_text)
        self._ruby = RubyImports(tree, read_text)

    def seeds(self, touched: Iterable[str]) -> list[Seed]:
        """Seeds for every rule that ``touched`` (canonical in-image paths) triggers."""
        out: list[Seed] = []
        for path in touched:
            if "python-stdlib" in self.enabled:
                out += self._python_stdlib(path)
            if "python-distribution" in self.enabled:
                out += self._python_distribution(path)
            if "node-package" in self.enabled:
                out += self._node_package(path)
            if "perl-imports" in self.enabled and path.endswith(_PERL_SUFFIXES[:2]):
                out += self._perl.touched(path) or self._perl_script(path)
            if "ruby-imports" in self.enabled and path.endswith(_RUBY_SUFFIXES):
                out += self._ruby.touched(path)
        return out

    def _perl_script(self, path: str) -> list[Seed]:
        """A touched Perl file outside @INC (the program's own script, a ``do FILE``):
        what it loads, as for a script counted as run."""
        return self._perl.script(path) if not self._perl.in_inc(path) else []

    # -- Python standard library ------------------------------------------------------

    def _python_stdlib(self, path: str) -> list[Seed]:
        out: list[Seed] = []
        libdir = self._stdlib_dir(path)
        if libdir is not None:
            detail = f"standard library of the Python that ran (touched {path})"
            libdirs = [libdir]
        else:
            detail = f"standard library of the interpreter {path}"
            libdirs = self.interpreter_stdlib(path)
        for libdir in libdirs:
            if libdir in self._stdlib_done:
                continue
            self._stdlib_done.add(libdir)
            base = glob_escape(libdir)
            skip = [f"{base}/**/__pycache__", *(f"{base}/{d}" for d in PYTHON_SITE_DIRS)]
            if "python-stdlib-extras" not in self.enabled:
                skip += [f"{base}/{d}" for d in PYTHON_STDLIB_EXTRAS]
            reason = Reason("lazy", detail=detail, rule="python-stdlib", by=path)
            out.append(Seed(libdir, reason, recursive=True, skip=tuple(skip)))
        return out

    def _stdlib_dir(self, path: str) -> str | None:
        parts = path.split("/")
        for i in range(len(parts) - 1, 0, -1):
            if PYTHON_LIBDIR_RE.match(parts[i]) and parts[i - 1] == "lib":
                candidate = "/".join(parts[: i + 1])
                if self._is_stdlib(candidate):
                    if i + 1 < len(parts) and parts[i + 1] in PYTHON_SITE_DIRS:
                        return None  # third-party code, not the standard library
                    return candidate
        return None

    def _is_stdlib(self, directory: str) -> bool:
        landmark = self.tree.get(directory + "/" + PYTHON_LANDMARK)
        return landmark is not None and not landmark.is_dir

    def interpreter_stdlib(self, path: str) -> list[str]:
        """The standard libraries of the Python interpreter at ``path`` (canonical): for
        ``PREFIX/bin/pythonX.Y`` (or ``libpythonX.Y.so*`` below ``PREFIX/lib``) the
        library ``PREFIX/lib/pythonX.Y``; for an unversioned ``PREFIX/bin/pythonX`` every
        ``PREFIX/lib/pythonX.*``.  Only directories holding the landmark ``os.py``
        count; anything else gives ``[]``."""
        directory, name = posixpath.split(path)
        binary = PYTHON_BINARY_RE.match(name)
        embed = PYTHON_EMBED_RE.match(name)
        if binary is not None and posixpath.basename(directory) == "bin":
            prefix = posixpath.dirname(directory)
            version = binary["major"] + (binary["minor"] or "")
        elif embed is not None and "/lib/" in path:
            prefix = path[: path.index("/lib/")]
            version = embed["version"]
        else:
            return []
        lib = f"{prefix.rstrip('/')}/lib"
        if "." in version:
            candidates = [f"{lib}/python{version}"]
        else:
            entry = self.tree.get(lib)
            names = sorted((entry.children or {}) if entry is not None and entry.is_dir else {})
            candidates = [
                f"{lib}/{n}"
                for n in names
                if PYTHON_LIBDIR_RE.match(n) and n.startswith(f"python{version}.")
            ]
        return [c for c in candidates if self._is_stdlib(c)]

    # -- Python distributions ---------------------------------------------------------

    def _site_index(self) -> dict[str, list[_Distribution]]:
        if self._sites is None:
            self._sites = {}
            for entry in self.tree.walk():
                if entry.is_dir and posixpath.basename(entry.path) in PYTHON_SITE_DIRS:
                    self._sites[entry.path] = self._distributions(entry)
        return self._sites

    def _distributions(self, site: Entry) -> list[_Distribution]:
        found = []
        for name in sorted(site.children or {}):
            if not name.endswith(PYTHON_DIST_SUFFIXES):
                continue
            info_dir = f"{site.path}/{name}"
            members: set[str] = set()
            record = self.read_text(f"{info_dir}/RECORD")
            if record is not None:
                for row in csv.reader(io.StringIO(record)):
                    if row and row[0]:
                        members.add(posixpath.normpath(f"{site.path}/{row[0]}"))
            installed = self.read_text(f"{info_dir}/installed-files.txt")
            if installed is not None:
                for line in installed.splitlines():
                    if line.strip():
                        members.add(posixpath.normpath(f"{info_dir}/{line.strip()}"))
            tops: set[str] = set()
            top_level = self.read_text(f"{info_dir}/top_level.txt")
            if top_level is not None:
                tops.update(t.strip().split("/")[0] for t in top_level.splitlines() if t.strip())
            found.append(_Distribution(info_dir, frozenset(members), frozenset(tops)))
        return found

    def _python_distribution(self, path: str) -> list[Seed]:
        site, top = self._site_and_top(path)
        if site is None or top is None:
            return []
        dists = self._site_index().get(site, [])
        owners = [d for d in dists if path in d.members]
        if not owners:
            owners = [d for d in dists if not d.members and top.split(".")[0] in d.tops]
        if not owners and any(d.info_dir == f"{site}/{top}" for d in dists):
            owners = [d for d in dists if d.info_dir == f"{site}/{top}"]
        out: list[Seed] = []
        for dist in owners:
            if dist.info_dir in self._packages_done:
                continue
            self._packages_done.add(dist.info_dir)
            reason = Reason(
                "lazy",
                detail=f"distribution {posixpath.basename(dist.info_dir)} (touched {path})",
                rule="python-distribution",
                by=path,
            )
            out.append(Seed(dist.info_dir, reason, recursive=True))
            out += [
                Seed(m, reason)
                for m in sorted(dist.members)
                if not is_compiled_catalog_source(self.tree, m) and not self._in_tests(site, m)
            ]
            for name in sorted(dist.tops):
                out += self._top_level(site, name, reason)
        if not owners:
            package = f"{site}/{top}"
            entry = self.tree.get(package)
            if entry is not None and entry.is_dir and package not in self._packages_done:
                self._packages_done.add(package)
                reason = Reason(
                    "lazy",
                    detail=f"package {top} (touched {path})",
                    rule="python-distribution",
                    by=path,
                )
                out.append(Seed(package, reason, recursive=True, skip=self._left_out(package)))
        return out

    def _top_level(self, site: str, name: str, reason: Reason) -> list[Seed]:
        seeds = []
        directory = self.tree.get(f"{site}/{name}")
        if directory is not None and directory.is_dir:
            seeds.append(
                Seed(directory.path, reason, recursive=True, skip=self._left_out(directory.path))
            )
        site_entry = self.tree.get(site)
        for child in sorted((site_entry.children or {}) if site_entry else {}):
            if child == f"{name}.py" or (child.startswith(f"{name}.") and ".so" in child):
                seeds.append(Seed(f"{site}/{child}", reason))
        return seeds

    def _left_out(self, top: str) -> tuple[str, ...]:
        """The skip globs of a package kept whole: compiled catalogs' sources, and its
        tests directories unless ``python-tests`` is on."""
        paths = [*self._catalog_sources(top), *self._tests_dirs(top)]
        return tuple(glob_escape(p) for p in paths)

    def _tests_dirs(self, top: str) -> list[str]:
        """The ``tests`` directories at or below ``top`` (none with ``python-tests``)."""
        entry = self.tree.get(top)
        if "python-tests" in self.enabled or entry is None or not entry.is_dir:
            return []
        if top not in self._tests:
            found = [top] if posixpath.basename(top) == PYTHON_TESTS_DIR else []
            found += [
                e.path
                for e in _walk(entry)
                if e.is_dir and posixpath.basename(e.path) == PYTHON_TESTS_DIR
            ]
            self._tests[top] = sorted(found)
        return self._tests[top]

    def _in_tests(self, site: str, path: str) -> bool:
        """``path`` (below ``site``) is inside a tests directory left out of a kept
        distribution."""
        if "python-tests" in self.enabled:
            return False
        return PYTHON_TESTS_DIR in path[len(site) + 1 :].split("/")[:-1]

    def _catalog_sources(self, top: str) -> list[str]:
        """The ``.po`` sources beside their ``.mo`` below ``top`` (left out of a kept
        package: :mod:`ocislim.slim.catalogs`)."""
        if top not in self._catalogs:
            self._catalogs[top] = compiled_catalog_sources(self.tree, top)
        return self._catalogs[top]

    def _site_and_top(self, path: str) -> tuple[str | None, str | None]:
        parts = path.split("/")
        for i in range(len(parts) - 2, 0, -1):
            if parts[i] in PYTHON_SITE_DIRS:
                site = "/".join(parts[: i + 1])
                if site in self._site_index():
                    return site, parts[i + 1]
        return None, None

    # -- scripts counted as run --------------------------------------------------------

    def imported(self, scripts: Iterable[str]) -> list[Seed]:
        """For ``scripts`` that another rule counts as run (never traced: a CGI script),
        what the rules would keep had they run and imported their modules: every
        installed module a Python script imports (``import NAME``, ``from NAME import``,
        found in the image's site directories) keeps its distribution
        (``python-distribution``), read in turn for the modules it imports; every package
        a Node script requires (``require('NAME')``, ``import ... from 'NAME'``, found in
        ``node_modules`` directories above it or Debian's roots) keeps its directory
        (``node-package``), with the dependencies its ``package.json`` lists; a Perl
        script (``.pl``, ``.pm``, a perl ``#!``) keeps the modules it loads with their
        families (``perl-imports``), a Ruby script (``.rb``, ``.ru``, a ruby ``#!``) the
        features and gems it requires (``ruby-imports``).  Other files give nothing; a
        name found nowhere (a built-in module) is skipped."""
        out: list[Seed] = []
        for script in scripts:
            language = self._language(script)
            if language == "python" and "python-distribution" in self.enabled:
                out += self._python_imports(script)
            elif language == "node" and "node-package" in self.enabled:
                out += self._node_imports(script)
            elif language == "perl" and "perl-imports" in self.enabled:
                out += self._perl.script(script)
            elif language == "ruby" and "ruby-imports" in self.enabled:
                out += self._ruby.script(script)
        return out

    def _language(self, script: str) -> str | None:
        if script.endswith(".py"):
            return "python"
        if script.endswith(_NODE_SUFFIXES):
            return "node"
        if script.endswith(_PERL_SUFFIXES[:2]):
            return "perl"
        if script.endswith(_RUBY_SUFFIXES):
            return "ruby"
        head = (self.read_text(script) or "")[:200]
        if not head.startswith("#!"):
            return None
        words = [posixpath.basename(w) for w in head[2:].split("\n", 1)[0].split()[:2]]
        if any(w.startswith("python") for w in words):
            return "python"
        if any(w in ("node", "nodejs") for w in words):
            return "node"
        if any(w.startswith("perl") for w in words):
            return "perl"
        if any(w.startswith("ruby") for w in words):
            return "ruby"
        return None

    def _python_imports(self, script: str) -> list[Seed]:
        out: list[Seed] = []
        queue, read = [script], 0
        while queue and read < _MAX_IMPORT_FILES:
            path = queue.pop()
            read += 1
            text = self.read_text(path) or ""
            if "python-ctypes-libraries" in self.enabled:
                out += self._python_libraries(path, text)
            for name in python_imports(text):
                if name in self._imports_done:
                    continue
                self._imports_done.add(name)
                module = self._python_module(name)
                if module is None:
                    continue
                why = Reason(
                    "lazy",
                    detail=f"module {name}, imported by {script} (counted as run)",
                    rule="python-distribution",
                    by=script,
                )
                out += [Seed(module, why), *self._python_distribution(module)]
                top = posixpath.dirname(module) if module.endswith("/__init__.py") else module
                queue += self._python_files(top)
        return out

    def _python_libraries(self, path: str, text: str) -> list[Seed]:
        """The shared libraries the Python file ``path`` (its ``text``) loads by a name
        it spells (:data:`_PY_LIBRARY_CALL`), found as the loader finds them."""
        out: list[Seed] = []
        for name in dict.fromkeys(_PY_LIBRARY_CALL.findall(text)):
            library = self._shared_library(name)
            if library is not None and library not in self._libraries_done:
                self._libraries_done.add(library)
                why = Reason(
                    "lazy",
                    detail=f"library {name}, loaded by name in {path}",
                    rule="python-ctypes-libraries",
                    by=path,
                )
                out.append(Seed(library, why))
        return out

    def _shared_library(self, name: str) -> str | None:
        """The library ``name`` names in the image's library directories: a file name
        (``libmagic.so.1``) as it is, a bare name (``magic``) as ``find_library`` reads
        it, the ``libNAME.so.N`` the loader would open (the shortest such name)."""
        for directory in _LIBRARY_DIRS:
            entry = self.tree.get(directory)
            children = (entry.children or {}) if entry is not None and entry.is_dir else {}
            if ".so" in name:
                if name in children:
                    return f"{directory}/{name}"
                continue
            versioned = sorted(
                (c for c in children if c.startswith(f"lib{name}.so.")), key=lambda c: (len(c), c)
            )
            if versioned:
                return f"{directory}/{versioned[0]}"
        return None

    def entry_packages(self, script: str) -> list[str]:
        """The installed packages the Python ``script`` imports directly (the directories
        in site directories its ``import`` lines name).  For a console-script wrapper
        (pip's ``/usr/local/bin/tool``: ``from tool.cli import main``) they are the
        application itself, installed where no application tree is."""
        if self._language(script) != "python":
            return []
        packages = []
        for name in python_imports(self.read_text(script) or ""):
            module = self._python_module(name)
            if module is not None and module.endswith("/__init__.py"):
                packages.append(posixpath.dirname(module))
        return packages

    def _python_module(self, name: str) -> str | None:
        """A file (or the directory) of top-level module ``name`` in a site directory."""
        for site in sorted(self._site_index()):
            entry = self.tree.get(site)
            children = (entry.children or {}) if entry is not None else {}
            package = children.get(name)
            if package is not None and package.is_dir:
                init = (package.children or {}).get("__init__.py")
                return init.path if init is not None else package.path
            for child in sorted(children):
                if child == f"{name}.py" or (child.startswith(f"{name}.") and ".so" in child):
                    return f"{site}/{child}"
        return None

    def _python_files(self, path: str) -> list[str]:
        """The ``.py`` files at or below ``path``."""
        entry = self.tree.get(path)
        if entry is None:
            return []
        if not entry.is_dir:
            return [path] if path.endswith(".py") else []
        tests = tuple(f"{d}/" for d in self._tests_dirs(path))
        return [
            e.path
            for e in _walk(entry)
            if e.path.endswith(".py") and not e.is_dir and not e.path.startswith(tests)
        ]

    def _node_imports(self, script: str) -> list[Seed]:
        out: list[Seed] = []
        text = self.read_text(script) or ""
        queue = [(posixpath.dirname(script), name) for name in node_requires(text)]
        while queue:
            base, name = queue.pop(0)
            package = self._node_resolve(base, name)
            if package is None or package in self._packages_done:
                continue
            out += self._node_package(f"{package}/package.json")
            for dependency in node_dependencies(self.read_text(f"{package}/package.json")):
                queue.append((package, dependency))
        return out

    def _node_resolve(self, base: str, name: str) -> str | None:
        """The directory of package ``name`` as Node finds it from directory ``base``:
        ``node_modules`` in ``base`` and above, then the global roots."""
        directory = base
        candidates = []
        while True:
            if posixpath.basename(directory) != NODE_MODULES:
                candidates.append(f"{directory.rstrip('/')}/{NODE_MODULES}/{name}")
            if directory == "/":
                break
            directory = posixpath.dirname(directory)
        candidates += [f"{root}/{name}" for root in (*NODE_ROOTS, *NODE_GLOBAL_ROOTS)]
        for candidate in candidates:
            entry = self.tree.get(candidate)
            if entry is not None and entry.is_dir:
                return candidate
        return None

    # -- Node -------------------------------------------------------------------------

    def _node_package(self, path: str) -> list[Seed]:
        package = node_package_dir(path)
        if package is None or package in self._packages_done:
            return []
        entry = self.tree.get(package)
        if entry is None or not entry.is_dir:
            return []
        self._packages_done.add(package)
        reason = Reason(
            "lazy",
            detail=f"Node package {package.rsplit('/', 1)[-1]} (touched {path})",
            rule="node-package",
            by=path,
        )
        return [Seed(package, reason, recursive=True)]


def python_imports(text: str) -> list[str]:
    """The top-level module names Python source ``text`` imports (absolute imports
    only, anywhere in the file: a function's lazy import too; then the literal names
    given to ``importlib.import_module`` and ``__import__``), in order, each once."""
    names: dict[str, None] = {}
    for match in _PY_IMPORT.finditer(text):
        if match.group(1):
            names[match.group(1)] = None
        else:
            for part in match.group(2).split(","):
                names[part.strip().split(".")[0]] = None
    for match in _PY_IMPORT_CALL.finditer(text):
        names[match.group(1)] = None
    return list(names)


def node_requires(text: str) -> list[str]:
    """The package names JavaScript ``text`` requires or imports (bare names only, not
    relative paths nor ``node:`` built-ins): ``NAME`` or ``@scope/NAME``, each once; and
    the view engine an Express app sets, which Express requires by that name."""
    names: dict[str, None] = {}
    specs = [m.group(1) or m.group(2) for m in _JS_IMPORT.finditer(text)]
    specs += [m.group(1) for m in _JS_VIEW_ENGINE.finditer(text)]
    for spec in specs:
        if spec.startswith((".", "/", "node:")) or ":" in spec:
            continue
        parts = spec.split("/")
        name = "/".join(parts[:2]) if spec.startswith("@") else parts[0]
        if name and (not spec.startswith("@") or len(parts) > 1):
            names[name] = None
    return list(names)


def node_dependencies(package_json: str | None) -> list[str]:
    """The names a ``package.json`` lists in ``dependencies``, ``optionalDependencies``
    and ``peerDependencies`` (unreadable JSON: none)."""
    if not package_json:
        return []
    try:
        data = json.loads(package_json)
    except ValueError:
        return []
    names: list[str] = []
    for key in ("dependencies", "optionalDependencies", "peerDependencies"):
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict):
            names += [n for n in section if isinstance(n, str) and n not in names]
    return names


def _walk(entry: Entry) -> Iterable[Entry]:
    stack = [entry]
    while stack:
        node = stack.pop()
        for name in sorted(node.children or {}, reverse=True):
            child = (node.children or {})[name]
            yield child
            if child.is_dir:
                stack.append(child)


def node_package_dir(path: str) -> str | None:
    """The package directory holding ``path`` (``.../node_modules/[@scope/]name``, or
    a Debian root's ``/usr/share/nodejs/name``, ``/usr/lib/<triplet>/nodejs/name``), if any."""
    parts = path.split("/")
    start = None
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == NODE_MODULES:
            start = i + 1
            break
    if start is None:
        for root in NODE_ROOTS:
            if path.startswith(root + "/"):
                start = root.count("/") + 1
                break
    # Debian's multiarch root of packages with native code: /usr/lib/<triplet>/nodejs.
    multiarch = parts[1:3] == ["usr", "lib"] and parts[4:5] == ["nodejs"]
    if start is None and multiarch and "-linux-" in parts[3]:
        start = 5
    if start is None or start >= len(parts):
        return None
    end = start + 2 if parts[start].startswith("@") else start + 1
    if end > len(parts):
        return None
    return "/".join(parts[:end])
