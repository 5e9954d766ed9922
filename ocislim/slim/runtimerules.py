"""Runtimes that load their own files lazily: rules, as data, triggered by the runtime running.

A rule fires when the trace (or a verification round) touched a file that shows
the runtime ran (its :attr:`RuntimeRule.triggers`, globs over canonical in-image
paths) and keeps the trees the runtime loads by name later
(:attr:`RuntimeRule.keeps`, globs, each kept whole minus :attr:`RuntimeRule.skip`).
Each is a :class:`~ocislim.slim.langrules.LangRule` switchable by name; every path
kept carries ``Reason("lazy", rule=NAME, by=TRIGGER)``.

``{home}`` in a keep pattern stands for the directory a trigger matched as the
runtime's home (the JVM's ``JAVA_HOME``, found by its ``lib/jvm.cfg``).

Pure: the result depends on the merged tree and the touched paths.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ocislim.layers.tree import FileTree
from ocislim.slim.langrules import LangRule, glob_escape
from ocislim.slim.patterns import PatternSet
from ocislim.slim.plan import Reason, Seed

# Runtimes that look time zones up by name in the system's data.
_TZ_RUNTIMES = (
    "/usr/lib/python3*/**",
    "/usr/local/lib/python3*/**",
    "/usr/lib/jvm/**",
    "/opt/java/**",
    "/usr/share/perl/**",
    "/usr/lib/*/perl/**",
    "/usr/lib/*/perl-base/**",
    "/usr/lib/ruby/**",
    "/usr/local/lib/ruby/**",
    "/usr/lib/php/**",
    "/usr/local/lib/php/**",
    "/usr/share/zoneinfo/**",
    "/etc/localtime",
)
# Perl's core library (Debian's perl-base, libperl, perl-modules; others' privlib).
_PERL_CORE = (
    "/usr/lib/*/perl-base",
    "/usr/lib/*/perl/5.*",
    "/usr/share/perl/5.*",
    "/usr/lib/perl5/core_perl",
    "/usr/share/perl5/core_perl",
)
# Modules installed beside it: Debian's vendor directories, site directories.
_PERL_VENDOR = (
    "/usr/share/perl5",
    "/usr/lib/*/perl5/5.*",
    "/usr/local/share/perl/5.*",
    "/usr/local/lib/*/perl/5.*",
    "/usr/lib/perl5/vendor_perl",
    "/usr/share/perl5/vendor_perl",
    "/usr/local/lib/perl5",
)
_PERL_INC = (*_PERL_CORE, *_PERL_VENDOR)
# C headers for compiling XS modules (8 MB on bookworm): never read by a running Perl.
_PERL_HEADERS = ("/usr/lib/*/perl/5.*/CORE/*.h", "/usr/lib/perl5/core_perl/CORE/*.h")


@dataclass(frozen=True)
class RuntimeRule(LangRule):
    triggers: tuple[str, ...] = ()
    keeps: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    home: str | None = None  # a file below the runtime's home, relative to it


RUNTIME_RULES: tuple[RuntimeRule, ...] = (
    RuntimeRule(
        "java-runtime",
        "a JVM that ran keeps its runtime image: lib/ (native libraries, modules, "
        "jvm.cfg, tzdb.dat, jspawnhelper), conf/ with security/, release",
        triggers=("/**/lib/server/libjvm.so", "/**/lib/modules", "/**/bin/java"),
        home="lib/jvm.cfg",
        keeps=("{home}/lib", "{home}/conf", "{home}/release", "{home}/bin/java"),
        # classes_nocoops.jsa serves only -XX:-UseCompressedOops (heaps over 32 GB); without
        # it such a JVM runs without the class-data archive.
        skip=("{home}/lib/src.zip", "{home}/lib/ct.sym", "{home}/lib/server/classes_nocoops.jsa"),
    ),
    RuntimeRule(
        "java-option-files",
        "a JVM that ran keeps the files its option variables (JAVA_TOOL_OPTIONS, "
        "JDK_JAVA_OPTIONS, _JAVA_OPTIONS) name: @argfiles, -Djava.security.properties, "
        "-javaagent and -agentpath libraries, logging and VM options files",
        triggers=("/**/lib/server/libjvm.so", "/**/lib/modules", "/**/bin/java"),
        home="lib/jvm.cfg",
    ),
    RuntimeRule(
        "perl-inc",
        "a Perl that ran keeps its core library (every core module and its auto/ shared "
        "objects: Encode, POSIX, Data::Dumper, IO::Compress ...; not the C headers)",
        triggers=tuple(f"{d}/**" for d in _PERL_INC),
        keeps=_PERL_CORE,
        skip=_PERL_HEADERS,
    ),
    RuntimeRule(
        "perl-vendor",
        "a Perl that ran keeps its vendor and site module directories whole (modules "
        "from distribution packages or CPAN that this run did not load; not .pod files)",
        triggers=tuple(f"{d}/**" for d in _PERL_INC),
        keeps=_PERL_VENDOR,
        skip=("*.pod",),  # documentation (DateTime::Locale's 10 MB); the data is in .pm
    ),
    RuntimeRule(
        "ruby-stdlib",
        "a Ruby that ran keeps its standard library and the gems' specifications",
        triggers=("/usr/lib/ruby/**", "/usr/local/lib/ruby/**", "/usr/lib/*/ruby/**"),
        keeps=(
            "/usr/lib/ruby/[0-9]*",
            "/usr/lib/*/ruby/[0-9]*",
            "/usr/local/lib/ruby/[0-9]*",
            "/usr/lib/ruby/gems/*/specifications",
            "/usr/local/lib/ruby/gems/*/specifications",
            "/usr/lib/ruby/vendor_ruby",
            "/usr/share/rubygems-integration",
        ),
    ),
    RuntimeRule(
        "ruby-gem",
        "a touched file of an installed Ruby gem (GEM_HOME/gems/NAME-VERSION: "
        "/usr/local/bundle, /var/lib/gems, bundler's git checkouts) keeps the gem's "
        "directory, its specification and its compiled extensions",
    ),
    RuntimeRule(
        "php-runtime",
        "a PHP that ran keeps its extensions and ini files (php.ini, conf.d)",
        triggers=("/usr/lib/php/**", "/etc/php/**", "/usr/local/lib/php/**", "/**/bin/php*"),
        keeps=(
            "/usr/lib/php/[0-9]*",
            "/etc/php",
            "/usr/local/lib/php/extensions",
            "/usr/local/etc/php",
        ),
    ),
    RuntimeRule(
        "web-server",
        "nginx or httpd that ran keeps its modules, its whole configuration (included "
        "files, mime.types) and its state directories",
        triggers=(
            "/etc/nginx/**",
            "/usr/sbin/nginx",
            "/etc/apache2/**",
            "/etc/httpd/**",
            "/usr/sbin/apache2",
            "/usr/sbin/httpd",
            "/usr/local/apache2/**",
        ),
        keeps=(
            "/etc/nginx",
            "/usr/lib/nginx",
            "/usr/share/nginx",
            "/var/lib/nginx",
            "/var/log/nginx",
            "/etc/apache2",
            "/usr/lib/apache2/modules",
            "/etc/httpd",
            "/usr/lib64/httpd/modules",
            "/usr/local/apache2/conf",
            "/usr/local/apache2/modules",
            "/etc/mime.types",
        ),
    ),
    RuntimeRule(
        "tool-helpers",
        "git-style tools keep their libexec helper programs and data directory",
        triggers=(
            "/usr/bin/git",
            "/usr/lib/git-core/**",
            "/usr/libexec/git-core/**",
            "/usr/share/git-core/**",
        ),
        keeps=(
            "/usr/lib/git-core",
            "/usr/libexec/git-core",
            "/usr/share/git-core",
            "/usr/share/perl5/Git*",
        ),
    ),
    RuntimeRule(
        "zoneinfo-runtime",
        "a runtime that loads time zones by name (Python, Java, Perl, Ruby, PHP, glibc "
        "reading /etc/localtime) keeps the time zone data",
        triggers=_TZ_RUNTIMES,
        keeps=("/usr/share/zoneinfo", "/etc/localtime", "/etc/timezone"),
        skip=("/usr/share/zoneinfo/right",),
    ),
)


def runtime_rule_names() -> tuple[str, ...]:
    return tuple(r.name for r in RUNTIME_RULES)


# The JVM's option variables, and the options in them that name a file.
JAVA_OPTION_VARS = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS")
_JAVA_FILE_OPTIONS = (
    re.compile(r"^@(?P<path>.+)$"),
    re.compile(r"^-javaagent:(?P<path>[^=]+)"),
    re.compile(r"^-agentpath:(?P<path>[^=]+)"),
    re.compile(r"^-Djava\.security\.properties==?(?P<path>.+)$"),
    re.compile(r"^-Djava\.util\.logging\.config\.file=(?P<path>.+)$"),
    re.compile(r"^-Djava\.security\.policy==?(?P<path>.+)$"),
    re.compile(r"^-XX:(?:Flags|VMOptionsFile)=(?P<path>.+)$"),
)


def java_option_files(env: Iterable[str], workdir: str = "/") -> list[tuple[str, str]]:
    """(path, VARIABLE) for every file the JVM option variables in ``env`` (K=V items)
    name; relative paths are taken from ``workdir``.  Options that are not files
    (``file:`` URLs aside, which are read as paths) are ignored."""
    found: list[tuple[str, str]] = []
    for item in env:
        name, _, value = item.partition("=")
        if name not in JAVA_OPTION_VARS:
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            words = value.split()
        for word in words:
            for option in _JAVA_FILE_OPTIONS:
                match = option.match(word)
                if match is None:
                    continue
                path = match.group("path").removeprefix("file:")
                path = posixpath.normpath(posixpath.join(workdir or "/", path))
                found.append((path, name))
                break
    return found


# Where a web server's configuration names the content it serves.
WEB_CONFIG_DIRS = ("/etc/nginx", "/etc/apache2", "/etc/httpd", "/usr/local/apache2/conf")
_DOC_ROOT = re.compile(r"^\s*(?:root|alias|DocumentRoot)\s+[\"']?(/[^\s;\"']*)", re.MULTILINE)


class RuntimeRules:
    """Applies the enabled runtime rules to touched paths; each (rule, home) fires once.

    ``read_text(path)`` gives an in-image file's text (the web servers' configuration);
    ``env`` (K=V items) and ``workdir`` are the probed program's (the JVM's option
    variables).
    """

    def __init__(
        self,
        tree: FileTree,
        enabled: Iterable[str],
        read_text: Callable[[str], str | None] = lambda path: None,
        env: Sequence[str] = (),
        workdir: str = "/",
    ) -> None:
        self.tree = tree
        self.read_text = read_text
        self.env = tuple(env)
        self.workdir = workdir
        wanted = frozenset(enabled)
        self.rules = [r for r in RUNTIME_RULES if r.name in wanted]
        self._triggers = {r.name: PatternSet(r.triggers) for r in self.rules}
        self._fired: set[tuple[str, str]] = set()
        self._keeps: dict[str, list[str]] = {}
        self._gems = "ruby-gem" in wanted

    def seeds(self, touched: Iterable[str]) -> list[Seed]:
        out: list[Seed] = []
        for path in touched:
            if self._gems:
                out += self._ruby_gem(path)
            for rule in self.rules:
                if self._triggers[rule.name].match(path) is None:
                    continue
                home = ""
                if rule.home is not None:
                    found = self._home(path, rule.home)
                    if found is None:
                        continue
                    home = found
                if (rule.name, home) in self._fired:
                    continue
                self._fired.add((rule.name, home))
                out += self._fire(rule, home, path)
        return out

    def _ruby_gem(self, path: str) -> list[Seed]:
        """``ruby-gem`` for one touched path: the gem holding it, once per gem."""
        parts = path.split("/")
        for i in range(len(parts) - 2, 0, -1):
            if parts[i] != "gems":
                continue
            home = "/".join(parts[:i]) or "/"
            if parts[i - 1] == "bundler":  # bundler's git checkouts: bundle/bundler/gems
                home = "/".join(parts[: i - 1]) or "/"
            specs = self.tree.get(f"{home}/specifications")
            if specs is None or not specs.is_dir:
                continue
            gem, name = "/".join(parts[: i + 2]), parts[i + 1]
            if ("ruby-gem", gem) in self._fired:
                return []
            self._fired.add(("ruby-gem", gem))
            reason = Reason(
                "lazy", detail=f"Ruby gem {name} (touched {path})", rule="ruby-gem", by=path
            )
            seeds = [Seed(gem, reason, recursive=True)]
            spec = f"{home}/specifications/{name}.gemspec"
            if self.tree.get(spec) is not None:
                seeds.append(Seed(spec, reason))
            extensions = self.tree.get(f"{home}/extensions")
            for platform in (extensions.children or {}).values() if extensions else ():
                for version in (platform.children or {}).values():
                    built = (version.children or {}).get(name)
                    if built is not None:
                        seeds.append(Seed(built.path, reason, recursive=True))
            return seeds
        return []

    def _home(self, path: str, landmark: str) -> str | None:
        directory = posixpath.dirname(path)
        while directory != "/":
            entry = self.tree.get(f"{directory}/{landmark}")
            if entry is not None and not entry.is_dir:
                return directory
            directory = posixpath.dirname(directory)
        return None

    def _fire(self, rule: RuntimeRule, home: str, trigger: str) -> list[Seed]:
        reason = Reason(
            "lazy",
            detail=f"{rule.name}: the runtime ran (touched {trigger})",
            rule=rule.name,
            by=trigger,
        )
        base = glob_escape(home)
        skip = tuple(s.replace("{home}", base) for s in rule.skip)
        seeds = []
        for pattern in rule.keeps:
            for path in self._matches(pattern.replace("{home}", base)):
                seeds.append(Seed(path, reason, recursive=True, skip=skip))
        if rule.name == "web-server":
            seeds += self._document_roots(reason)
        if rule.name == "java-option-files":
            seeds += self._java_option_files(trigger)
        return seeds

    def _java_option_files(self, trigger: str) -> list[Seed]:
        seeds = []
        for path, variable in java_option_files(self.env, self.workdir):
            if self.tree.get(path) is None:
                continue
            why = Reason(
                "lazy",
                detail=f"java-option-files: named by {variable}",
                rule="java-option-files",
                by=trigger,
            )
            seeds.append(Seed(path, why, recursive=True))
        return seeds

    def _document_roots(self, reason: Reason) -> list[Seed]:
        """The directories the server's configuration serves (``root``, ``alias``,
        ``DocumentRoot``): the site's own content."""
        roots: set[str] = set()
        for top in WEB_CONFIG_DIRS:
            entry = self.tree.get(top)
            if entry is None or not entry.is_dir:
                continue
            stack = [entry]
            while stack:  # only the configuration's own subtree
                node = stack.pop()
                for child in (node.children or {}).values():
                    if child.is_dir:
                        stack.append(child)
                        continue
                    text = self.read_text(child.path) or ""
                    roots.update(m.group(1).rstrip("/") or "/" for m in _DOC_ROOT.finditer(text))
        why = Reason(
            "lazy",
            detail="a document root the server's configuration names",
            rule="web-server",
            by=reason.by,
        )
        return [Seed(r, why, recursive=True) for r in sorted(roots) if r != "/"]

    def _matches(self, pattern: str) -> list[str]:
        if pattern not in self._keeps:
            if not any(c in pattern for c in "*?["):
                self._keeps[pattern] = [pattern] if self.tree.get(pattern) is not None else []
            else:
                self._keeps[pattern] = _glob(self.tree, pattern)
        return self._keeps[pattern]


def _glob(tree: FileTree, pattern: str) -> list[str]:
    """Tree paths matching ``pattern`` (no ``**``), walking only the directories it names."""
    parts = [p for p in pattern.split("/") if p]
    found = ["/"]
    for depth in range(len(parts)):
        prefix = "/" + "/".join(parts[: depth + 1])
        step = PatternSet([prefix])
        nxt = []
        for directory in found:
            entry = tree.get(directory)
            if entry is None or not entry.children:
                continue
            for name in sorted(entry.children):
                child = posixpath.join(directory, name)
                if step.match(child) is not None:
                    nxt.append(child)
        found = nxt
    return found
