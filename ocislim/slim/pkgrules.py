"""Package-aware keeping with Debian's package database, as switchable levels.

The database's file lists (``/var/lib/dpkg/info/*.list``, ``PKG[:ARCH].list``)
say which package owns each path.  When a traced file belongs to a package, a
level rule keeps more of that package's files (every kept path carries
``Reason("lazy", rule=NAME, by=TOUCHED)``):

- ``package-data``: the package's data and configuration: its files under
  ``/usr/share`` (documentation, manuals and translations left out) and ``/etc``;
- ``package-helpers``: its helper programs, files under ``/usr/lib*/<dir>/`` and
  ``/usr/libexec`` that are not shared libraries;
- ``package-whole``: every file of the package (documentation left out).

Beside the levels, ``perl-distribution`` (a touched Perl module's Debian package under
@INC, or its CPAN ``.packlist``) and ``skeleton-var-lib`` (the ``/var/lib`` entries of
the package of a program that ran) are on by default.

:func:`package_summary` reports, for the report's reader, which packages are kept
whole, partly, or not at all.  Pure apart from the ``read_text`` callable.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Collection, Iterable

from ocislim.inspect.packages import parse_dpkg_sources
from ocislim.layers.tree import FileTree
from ocislim.slim.langrules import LangRule
from ocislim.slim.patterns import PatternSet
from ocislim.slim.pkgledger import DPKG_DIR, DPKG_INFO, DPKG_STATUS
from ocislim.slim.plan import Reason, Seed

PKG_RULES: tuple[LangRule, ...] = (
    LangRule(
        "perl-distribution",
        "a touched Perl module keeps its distribution: the files its Debian package "
        "installs under @INC, or the files its CPAN distribution's .packlist lists",
        default=False,  # perl-imports keeps what the modules load (docs/rules.md)
    ),
    LangRule(
        "skeleton-var-lib",
        "a program that ran keeps the /var/lib entries its Debian package owns (its state "
        "directories, as the package installed them)",
    ),
    LangRule(
        "package-data",
        "a traced file's Debian package keeps its data and configuration "
        "(/usr/share, /etc; documentation left out)",
        default=False,
    ),
    LangRule(
        "package-helpers",
        "a traced file's Debian package keeps its helper programs (/usr/lib/<dir>/, "
        "/usr/libexec; not shared libraries)",
        default=False,
    ),
    LangRule(
        "package-whole",
        "a traced file's Debian package is kept whole (documentation left out)",
        default=False,
    ),
)

_DOCS = PatternSet(
    ["/usr/share/doc/**", "/usr/share/man/**", "/usr/share/info/**", "/usr/share/locale/**"]
)
_DATA = PatternSet(["/usr/share/**", "/etc/**"])
_HELPERS = PatternSet(["/usr/lib*/*/**", "/usr/libexec/**"])
_SHARED_LIB = re.compile(r"\.so(\.\d+)*$")


class DpkgIndex:
    """Owners of paths from the tree's dpkg file lists (read once, on first use)."""

    def __init__(self, tree: FileTree, read_text: Callable[[str], str | None]) -> None:
        self.tree = tree
        self.read_text = read_text
        self._owner: dict[str, str] | None = None
        self._files: dict[str, list[str]] = {}
        self._sorted: list[str] | None = None
        self._sources: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._owner is None:
            self._owner = {}
            info = self.tree.get(DPKG_INFO)
            for name in sorted((info.children or {}) if info else {}):
                if not name.endswith(".list"):
                    continue
                package = name[: -len(".list")].split(":", 1)[0]
                text = self.read_text(f"{DPKG_INFO}/{name}") or ""
                paths = [line for line in text.splitlines() if line.startswith("/")]
                self._files.setdefault(package, []).extend(paths)
                for path in paths:
                    self._owner.setdefault(path, package)
        return self._owner

    def owner(self, path: str) -> str | None:
        return self._load().get(path)

    def files(self, package: str) -> list[str]:
        self._load()
        return self._files.get(package, [])

    @property
    def packages(self) -> list[str]:
        self._load()
        return sorted(self._files)

    def source(self, package: str) -> str:
        """The Debian source package ``package`` was built from (itself when the
        status file does not say)."""
        if self._sources is None:
            self._sources = parse_dpkg_sources(self.read_text(DPKG_STATUS) or "")
        return self._sources.get(package, package)

    def packaged_under(self, directory: str) -> list[tuple[str, str]]:
        """``(path, owner)`` of every path the file lists name below ``directory``."""
        owners = self._load()
        if self._sorted is None:
            self._sorted = sorted(owners)
        prefix = directory.rstrip("/") + "/"
        start = bisect.bisect_left(self._sorted, prefix)
        end = bisect.bisect_left(self._sorted, prefix[:-1] + "0")  # "0" sorts right after "/"
        return [(path, owners[path]) for path in self._sorted[start:end]]


def level_keeps(path: str, levels: Collection[str]) -> bool:
    """Whether a package's file ``path`` is kept at ``levels`` (names of PKG_RULES)."""
    if _DOCS.match(path) is not None:
        return False
    if "package-whole" in levels:
        return True
    if "package-data" in levels and _DATA.match(path) is not None:
        return True
    return (
        "package-helpers" in levels
        and _HELPERS.match(path) is not None
        and not _SHARED_LIB.search(path)
    )


# Perl's module directories (@INC) of Debian and others.
PERL_INC = PatternSet(
    [
        "/usr/share/perl5/**",
        "/usr/lib/*/perl5/**",
        "/usr/lib/*/perl/**",
        "/usr/share/perl/**",
        "/usr/lib/*/perl-base/**",
        "/usr/local/share/perl/**",
        "/usr/local/lib/*/perl/**",
        "/usr/lib/perl5/**",
        "/usr/local/lib/perl5/**",
    ]
)


# What a running Perl never reads: documentation and the C headers for compiling XS.
PERL_NOT_RUN = PatternSet(
    ["/**/*.pod", "/usr/lib/*/perl/5.*/CORE/*.h", "/usr/lib/perl5/core_perl/CORE/*.h"]
)
# A packlist line: the installed file, optionally followed by ``key=value`` pairs.
_PACKLIST_LINE = re.compile(r"^(/.*?)(?:\s+[A-Za-z_]+=\S*)*\s*$")


class PerlDistributions:
    """``perl-distribution``: a touched module under @INC keeps the @INC files of the
    Debian package that owns it, and every file the ``.packlist`` of the CPAN
    distribution listing it names (ExtUtils::Install writes one per distribution
    under ``auto/``); each package or packlist once."""

    def __init__(self, index: DpkgIndex, enabled: Iterable[str]) -> None:
        self.index = index
        self.on = "perl-distribution" in set(enabled)
        self._done: set[str] = set()
        self._packlists: dict[str, str] | None = None  # installed file -> its packlist
        self._listed: dict[str, list[str]] = {}

    def _packlist_of(self, path: str) -> str | None:
        if self._packlists is None:
            self._packlists = {}
            for entry in self.index.tree.walk():
                if entry.is_dir or not entry.path.endswith("/.packlist"):
                    continue
                if PERL_INC.match(entry.path) is None:
                    continue
                text = self.index.read_text(entry.path) or ""
                files = []
                for line in text.splitlines():
                    found = _PACKLIST_LINE.match(line)
                    if found is not None:
                        files.append(found.group(1))
                self._listed[entry.path] = files
                for listed in files:
                    self._packlists.setdefault(listed, entry.path)
        return self._packlists.get(path)

    def _packlist_seeds(self, path: str) -> list[Seed]:
        packlist = self._packlist_of(path)
        if packlist is None or packlist in self._done:
            return []
        self._done.add(packlist)
        reason = Reason(
            "lazy",
            detail=f"Perl distribution of {packlist} (touched {path})",
            rule="perl-distribution",
            by=path,
        )
        out = [Seed(packlist, reason, follow=False)]
        for member in self._listed[packlist]:
            entry = self.index.tree.get(member)
            if entry is not None and not entry.is_dir and PERL_NOT_RUN.match(member) is None:
                out.append(Seed(member, reason, follow=False))
        return out

    def seeds(self, touched: Iterable[str]) -> list[Seed]:
        if not self.on:
            return []
        out: list[Seed] = []
        for path in touched:
            if PERL_INC.match(path) is None:
                continue
            out += self._packlist_seeds(path)
            package = self.index.owner(path)
            if package is None or package in self._done:
                continue
            self._done.add(package)
            reason = Reason(
                "lazy",
                detail=f"Perl distribution {package} (touched {path})",
                rule="perl-distribution",
                by=path,
            )
            for member in self.index.files(package):
                if PERL_INC.match(member) is None or PERL_NOT_RUN.match(member) is not None:
                    continue
                entry = self.index.tree.get(member)
                if entry is not None and not entry.is_dir:
                    out.append(Seed(member, reason, follow=False))
        return out


class PackageRules:
    """Applies the enabled package levels to touched paths; each package fires once."""

    def __init__(self, index: DpkgIndex, enabled: Iterable[str]) -> None:
        self.index = index
        names = {r.name for r in PKG_RULES if r.name.startswith("package-")}
        self.levels = frozenset(enabled) & names
        self._done: set[str] = set()

    def seeds(self, touched: Iterable[str]) -> list[Seed]:
        if not self.levels:
            return []
        out: list[Seed] = []
        for path in touched:
            package = self.index.owner(path)
            if package is None or package in self._done:
                continue
            self._done.add(package)
            rule = max(self.levels, key=[r.name for r in PKG_RULES].index)  # the widest
            reason = Reason(
                "lazy", detail=f"Debian package {package} (touched {path})", rule=rule, by=path
            )
            for member in self.index.files(package):
                entry = self.index.tree.get(member)
                if entry is None or entry.is_dir or not level_keeps(member, self.levels):
                    continue
                out.append(Seed(member, reason, follow=False))
        return out


class LibraryData:
    """``python-ctypes-libraries``, the data part: a shared library a program loads by
    name keeps the data files (``/etc``, ``/usr/share``; no docs, manuals, translations:
    the ``package-data`` level) of every package of its Debian source but ``-dev`` and
    ``-doc`` ones: libmagic reads ``/etc/magic`` and ``/usr/share/misc/magic.mgc``
    (libmagic1's and libmagic-mgc's, both of source ``file``).  Each source once."""

    def __init__(self, index: DpkgIndex, enabled: Iterable[str]) -> None:
        self.index = index
        self.on = "python-ctypes-libraries" in frozenset(enabled)
        self._done: set[str] = set()

    def seeds(self, programs: Iterable[str]) -> list[Seed]:
        """The data of the source packages of the shared objects among ``programs`` (the
        paths that ran or count as run)."""
        if not self.on:
            return []
        out: list[Seed] = []
        for library in programs:
            package = self.index.owner(library) if _SHARED_LIB.search(library) else None
            source = self.index.source(package) if package is not None else None
            if source is None or source in self._done:
                continue
            self._done.add(source)
            reason = Reason(
                "lazy",
                detail=f"data of Debian source {source} (the library {library})",
                rule="python-ctypes-libraries",
                by=library,
            )
            for sibling in self.index.packages:
                name = sibling.split(":", 1)[0]
                if self.index.source(sibling) != source or name.endswith(("-dev", "-doc")):
                    continue
                for member in self.index.files(sibling):
                    entry = self.index.tree.get(member)
                    if entry is not None and not entry.is_dir and level_keeps(member, _DATA_LEVEL):
                        out.append(Seed(member, reason, follow=False))
        return out


_DATA_LEVEL = frozenset({"package-data"})
VAR_LIB = "/var/lib/"


class PackageStateDirs:
    """``skeleton-var-lib``: a program that ran (an executed path) keeps the entries under
    ``/var/lib`` that its Debian package lists (the dpkg database itself aside); each
    package once."""

    def __init__(self, index: DpkgIndex, enabled: Iterable[str]) -> None:
        self.index = index
        self.on = "skeleton-var-lib" in set(enabled)
        self._done: set[str] = set()

    def seeds(self, programs: Iterable[str]) -> list[Seed]:
        if not self.on:
            return []
        out: list[Seed] = []
        for path in programs:
            package = self.index.owner(path)
            if package is None or package in self._done:
                continue
            self._done.add(package)
            reason = Reason(
                "lazy",
                detail=f"/var/lib entries of Debian package {package} (ran {path})",
                rule="skeleton-var-lib",
                by=path,
            )
            for member in self.index.files(package):
                if not member.startswith(VAR_LIB) or member.startswith(DPKG_DIR):
                    continue
                if self.index.tree.get(member) is not None:
                    out.append(Seed(member, reason, follow=False))
        return out


def package_summary(index: DpkgIndex, kept: Collection[str]) -> dict[str, list[str]]:
    """Installed packages by how much of their (non-directory) files are kept:
    ``whole``, ``partly`` or ``none``."""
    out: dict[str, list[str]] = {"whole": [], "partly": [], "none": []}
    for package in index.packages:
        files = [
            p
            for p in index.files(package)
            if (e := index.tree.get(p)) is not None and not e.is_dir and _DOCS.match(p) is None
        ]
        if not files:
            continue
        count = sum(1 for p in files if p in kept)
        key = "whole" if count == len(files) else "partly" if count else "none"
        out[key].append(package)
    return out
