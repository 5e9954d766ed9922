"""Runtimes that load their own files lazily: rules, as data, triggered by the runtime running.

A rule fires when the trace (or a verification round) touched a file that shows
the runtime ran (its :attr:`RuntimeRule.triggers`, globs over canonical in-image
paths) and keeps the trees the runtime loads by name later
(:attr:`RuntimeRule.keeps`, globs, each kept whole minus :attr:`RuntimeRule.skip`).
Each is a :class:`~ocislim.slim.langrules.LangRule` switchable by name; every path
kept carries ``Reason("lazy", rule=NAME, by=TRIGGER)``.

``web-server`` and ``cgi-scripts`` read the servers' configuration through
:class:`~ocislim.slim.webconfig.WebConfig`.  ``cgi-scripts`` treats the scripts of a
web server's ``ScriptAlias`` directories as run: their interpreters and the programs
they name count as run (:func:`~ocislim.slim.apprules.counted_as_run`), so these
rules fire for them in turn
(and the language rules too, which the :class:`~ocislim.slim.keeper.Keeper` applies).

``{home}`` in a keep pattern stands for the directory a trigger matched as the
runtime's home (the JVM's ``JAVA_HOME``, found by its ``lib/jvm.cfg``).

Pure: the result depends on the merged tree and the touched paths.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ocislim.layers.tree import FileTree
from ocislim.slim.apprules import (
    counted_as_run,
    script_command_seeds,
)
from ocislim.slim.commandtext import script_interpreter
from ocislim.slim.javapaths import java_option_files
from ocislim.slim.langrules import LangRule, glob_escape
from ocislim.slim.patterns import PatternSet
from ocislim.slim.plan import Reason, Seed
from ocislim.slim.webconfig import WebConfig, files_below

# Where each runtime's standard library lives: a touched file there means it ran.
_PYTHON_LIBS = ("/usr/lib/python3*/**", "/usr/local/lib/python3*/**")
_PERL_LIBS = ("/usr/share/perl/**", "/usr/lib/*/perl/**", "/usr/lib/*/perl-base/**")
_RUBY_LIBS = ("/usr/lib/ruby/**", "/usr/local/lib/ruby/**")
_PHP_LIBS = ("/usr/lib/php/**", "/usr/local/lib/php/**")
_TCL_LIBS = ("/usr/share/tcltk/tcl8.*/**", "/usr/lib/*/libtcl8.*.so*", "/usr/local/lib/libtcl8.*")
# Runtimes that look time zones up by name in the system's data.
_TZ_RUNTIMES = (
    *_PYTHON_LIBS,
    "/usr/lib/jvm/**",
    "/opt/java/**",
    *_PERL_LIBS,
    *_RUBY_LIBS,
    *_PHP_LIBS,
    *_TCL_LIBS,  # clock format -timezone :Europe/Paris
    "/usr/lib/R/**",  # format(x, tz = "Europe/Paris")
    "/usr/local/lib/R/**",
    "/usr/share/zoneinfo/**",
    "/etc/localtime",
)
_NODE_BINARIES = ("/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs", "/**/libnode.so*")
# Where Debian's libnode finds its externalized built-in modules (spelled in its bytes).
_LIBNODE = ("/usr/lib/*/libnode.so*", "/usr/lib/libnode.so*", "/usr/local/lib/libnode.so*")
_NODE_BUILTIN_PATH = re.compile(r"/usr/(?:share|lib)/nodejs/[\w@.+-]+(?:/[\w@.+-]+)*\.[cm]?js")
# Runtimes whose standard library runs command strings with /bin/sh -c.
# Lua's interpreters (os.execute and io.popen run /bin/sh too).
_LUA_BINARIES = ("/usr/bin/lua*", "/usr/local/bin/lua*", "/usr/lib/*/liblua5.*.so*",
                 "/usr/lib/*/libluajit-5.1.so*")  # fmt: skip
_SHELL_RUNTIMES = (
    *_PYTHON_LIBS,
    *_LUA_BINARIES,
    "/usr/share/nodejs/**",
    "/usr/lib/nodejs/**",
    "/usr/bin/node",
    "/usr/local/bin/node",
    "/usr/bin/nodejs",
    *_PERL_LIBS,
    *_RUBY_LIBS,
    *_PHP_LIBS,
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
# A file under @INC, or the interpreter itself (named by a script that did not run).
_PERL_TRIGGERS = (*(f"{d}/**" for d in _PERL_INC), "/usr/bin/perl", "/usr/bin/perl5*")
# The core files a Perl loads by itself, whatever a script names: Debian's perl-base (its
# essential set, 5.4 MB), and by name in any core directory (Perl built from source has
# no perl-base): pragmas, Config, Errno (for %!), the PerlIO layers (open on a scalar,
# :encoding), attributes, re, Carp, Exporter, POSIX, Fcntl.  Not unicore: since Perl 5.32
# the interpreter's Unicode tables are compiled in, and only charnames (\N{NAME}) and
# Unicode::UCD read unicore, which perl-imports keeps with them.
_PERL_CORE_DIRS = (
    "/usr/lib/*/perl/5.*",
    "/usr/share/perl/5.*",
    "/usr/lib/perl5/core_perl",
    "/usr/share/perl5/core_perl",
    "/usr/local/lib/perl5/5.*",
    "/usr/local/lib/perl5/5.*/*-linux*",
)
_PERL_ESSENTIAL_NAMES = (
    "strict.pm", "warnings.pm", "warnings", "feature.pm", "utf8.pm", "bytes.pm",
    "bytes_heavy.pl", "integer.pm", "constant.pm", "vars.pm", "lib.pm", "mro.pm",
    "auto/mro", "builtin.pm", "overload.pm", "overload", "overloading.pm", "re.pm",
    "auto/re", "attributes.pm", "auto/attributes", "Config.pm", "Config_heavy.pl",
    "Config_git.pl", "Errno.pm", "PerlIO.pm", "PerlIO", "auto/PerlIO", "DynaLoader.pm",
    "XSLoader.pm", "Carp.pm", "Carp", "Exporter.pm", "Exporter", "POSIX.pm",
    "auto/POSIX", "Fcntl.pm", "auto/Fcntl",
    "UNIVERSAL.pm", "Tie/Hash/NamedCapture.pm", "auto/Tie/Hash/NamedCapture",
)  # fmt: skip
_PERL_ESSENTIAL = (
    "/usr/lib/*/perl-base",
    *(f"{d}/{n}" for d in _PERL_CORE_DIRS for n in _PERL_ESSENTIAL_NAMES),
)
# C headers for compiling XS modules (8 MB on bookworm): never read by a running Perl.
_PERL_HEADERS = ("/usr/lib/*/perl/5.*/CORE/*.h", "/usr/lib/perl5/core_perl/CORE/*.h")


_WEB_SERVER_TRIGGERS = (
    "/etc/nginx/**",
    "/usr/sbin/nginx",
    "/etc/apache2/**",
    "/etc/httpd/**",
    "/usr/sbin/apache2",
    "/usr/sbin/httpd",
    "/usr/local/apache2/**",
)


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
        "a Perl that ran keeps the core files every Perl loads by itself (Debian's "
        "perl-base whole; elsewhere strict, warnings, Config, Errno, PerlIO layers, "
        "attributes, re, overload, Carp, Exporter, POSIX ...); the modules its "
        "scripts load are perl-imports'",
        triggers=_PERL_TRIGGERS,
        keeps=_PERL_ESSENTIAL,
        skip=_PERL_HEADERS,
    ),
    RuntimeRule(
        "perl-core-whole",
        "a Perl that ran keeps its core library whole (every core module and its auto/ "
        "shared objects: Encode's tables, Unicode::Collate ...; not the C headers)",
        default=False,
        triggers=_PERL_TRIGGERS,
        keeps=_PERL_CORE,
        skip=_PERL_HEADERS,
    ),
    RuntimeRule(
        "perl-vendor",
        "a Perl that ran keeps its vendor and site module directories whole (modules "
        "from distribution packages or CPAN that this run did not load; not .pod files)",
        default=False,
        triggers=_PERL_TRIGGERS,
        keeps=_PERL_VENDOR,
        skip=("*.pod",),  # documentation (DateTime::Locale's 10 MB); the data is in .pm
    ),
    RuntimeRule(
        "perl-imports",
        "the modules a Perl script that runs (counted as run, the application's own "
        "sources) or a touched module loads (use, require, use parent/base, use lib), "
        "found in @INC and read in turn, each with its family (Foo/Bar.pm, Foo/Bar/, "
        "auto/Foo/Bar/)",
    ),
    RuntimeRule(
        "ruby-stdlib",
        "a Ruby that ran keeps its standard library and the gems' specifications",
        triggers=(
            "/usr/lib/ruby/**",
            "/usr/local/lib/ruby/**",
            "/usr/lib/*/ruby/**",
            "/usr/bin/ruby*",
            "/usr/local/bin/ruby*",
        ),
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
        "ruby-imports",
        "the features a Ruby script that runs (counted as run, the application's own "
        "sources) or a touched Ruby file requires (require, require_relative, autoload), "
        "found on the load path or in a gem (kept whole with its specification) and read "
        "in turn",
    ),
    RuntimeRule(
        "lua-modules",
        "a Lua that ran keeps the module directories of its default package.path and "
        "package.cpath (Debian's /usr/share/lua/5.x and /usr/lib/<triplet>/lua/5.x, "
        "/usr/local's): require loads a module by name only when the code reaches it",
        triggers=(
            *_LUA_BINARIES,
            "/usr/share/lua/**",
            "/usr/lib/*/lua/**",
            "/usr/local/share/lua/**",
            "/usr/local/lib/lua/**",
        ),
        keeps=(
            "/usr/share/lua/5.*",
            "/usr/lib/*/lua/5.*",
            "/usr/lib/lua/5.*",
            "/usr/local/share/lua/5.*",
            "/usr/local/lib/lua/5.*",
        ),
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
        "nginx or httpd that ran keeps its modules (httpd: those an enabled LoadModule "
        "line names), its whole configuration (included files, mime.types), its state "
        "directories and every directory the configuration serves (root, alias, "
        "DocumentRoot, Alias, ScriptAlias)",
        triggers=_WEB_SERVER_TRIGGERS,
        keeps=(
            "/etc/nginx",
            "/usr/lib/nginx",
            "/usr/share/nginx",
            "/var/lib/nginx",
            "/var/log/nginx",
            "/etc/apache2",
            "/etc/httpd",
            "/usr/local/apache2/conf",
            "/etc/mime.types",
        ),
    ),
    RuntimeRule(
        "cgi-scripts",
        "the CGI scripts of the directories a web server's configuration names "
        "(ScriptAlias) count as run: each keeps its interpreter (firing that runtime's "
        "rules: python-stdlib, perl-inc, ruby-stdlib, php-runtime), the Python and Node "
        "packages it imports, and the programs it names (script-commands' reading)",
        triggers=_WEB_SERVER_TRIGGERS,
    ),
    RuntimeRule(
        "node-builtins",
        "a Node that ran keeps the files its libnode loads built-in modules from at start "
        "(Debian's externalized builtins: cjs-module-lexer, undici, acorn, acorn-walk under "
        "/usr/share/nodejs), the paths its bytes spell",
        triggers=_NODE_BINARIES,
    ),
    RuntimeRule(
        "tool-helpers",
        "git-style tools keep the helper programs they start from their own directories, "
        "and their data: git's libexec helpers and templates, GnuPG's gpg-agent, dirmngr "
        "and the programs of /usr/lib/gnupg",
        triggers=(
            "/usr/bin/git",
            "/usr/lib/git-core/**",
            "/usr/libexec/git-core/**",
            "/usr/share/git-core/**",
            # gpg starts its agent and key server helper as BINDIR + name, by no string.
            "/usr/bin/gpg",
            "/usr/bin/gpg2",
            "/usr/bin/gpgsm",
            "/usr/bin/gpgconf",
            "/usr/bin/gpg-connect-agent",
            "/usr/lib/gnupg/**",
            "/usr/libexec/gnupg/**",
        ),
        keeps=(
            "/usr/lib/git-core",
            "/usr/libexec/git-core",
            "/usr/share/git-core",
            "/usr/share/perl5/Git*",
            "/usr/bin/gpg-agent",
            "/usr/bin/dirmngr",
            "/usr/bin/gpgconf",
            "/usr/bin/gpg-connect-agent",
            "/usr/bin/pinentry",
            "/usr/lib/gnupg",
            "/usr/libexec/gnupg",
            "/usr/share/gnupg",
        ),
    ),
    RuntimeRule(
        "tar-compressors",
        "GNU tar that ran keeps the compression programs it runs by name for -z, -j, -J, "
        "--lzma, --zstd, --lzip, --lzop and -Z (those the image has)",
        triggers=("/usr/bin/tar", "/bin/tar"),
        keeps=tuple(
            f"{d}/{name}"
            for name in ("gzip", "bzip2", "xz", "lzma", "zstd", "lzip", "lzop", "compress")
            for d in ("/usr/bin", "/bin")
        ),
    ),
    RuntimeRule(
        "postgres-server",
        "a PostgreSQL server that ran keeps its $libdir (the modules CREATE EXTENSION, "
        "procedural languages and encoding conversions load) and its share directory "
        "(extension control and SQL files, text search dictionaries, time zone sets); "
        "not the JIT provider, without which the server runs queries uncompiled",
        triggers=(
            "/usr/lib/postgresql/*/bin/postgres",
            "/usr/local/bin/postgres",
            "/usr/local/pgsql/bin/postgres",
        ),
        keeps=(
            "/usr/lib/postgresql/*/lib",
            "/usr/share/postgresql/*",
            "/usr/local/lib/postgresql",
            "/usr/local/share/postgresql",
            "/usr/local/pgsql/lib",
            "/usr/local/pgsql/share",
        ),
        # llvmjit.so pulls in libLLVM (about 100 MB); when it cannot be loaded the server
        # turns JIT off and plans as without it.
        skip=("**/llvmjit*.so", "**/lib/bitcode", "**/lib/postgresql/bitcode"),
    ),
    RuntimeRule(
        "python-helpers",
        "a Python that ran keeps the programs its standard library runs by absolute path: "
        "ldconfig (ctypes.util.find_library reads `ldconfig -p`)",
        triggers=_PYTHON_LIBS,
        keeps=("/usr/sbin/ldconfig", "/sbin/ldconfig", "/etc/ld.so.cache"),
    ),
    RuntimeRule(
        "mime-types",
        "a runtime that types files by their extension from the system's table "
        "(Python's mimetypes, which Flask and Django use to serve static files; the "
        "JVM's Files.probeContentType) keeps /etc/mime.types",
        triggers=(*_PYTHON_LIBS, "/usr/lib/jvm/**", "/opt/java/**"),
        keeps=("/etc/mime.types",),
    ),
    RuntimeRule(
        "runtime-shell",
        "a runtime that runs command strings through /bin/sh (Python's os.system and "
        "subprocess with shell=True, Node's child_process.exec, Perl's and Ruby's system "
        "with one string, PHP's shell_exec, Lua's os.execute and io.popen) keeps /bin/sh",
        triggers=_SHELL_RUNTIMES,
        keeps=("/bin/sh", "/usr/bin/sh"),
    ),
    RuntimeRule(
        "os-release",
        "the system's identity files (/etc/os-release and the distribution's release "
        "file), read by platform.freedesktop_os_release(), distribution checks and scripts",
        triggers=("/**",),
        keeps=(
            "/etc/os-release",
            "/usr/lib/os-release",
            "/etc/debian_version",
            "/etc/lsb-release",
            "/etc/alpine-release",
            "/etc/redhat-release",
            "/etc/system-release",
        ),
    ),
    RuntimeRule(
        "zoneinfo-runtime",
        "a runtime that loads time zones by name (Python, Java, Perl, Ruby, PHP, Tcl, R, "
        "glibc reading /etc/localtime) keeps the time zone data",
        triggers=_TZ_RUNTIMES,
        keeps=("/usr/share/zoneinfo", "/etc/localtime", "/etc/timezone"),
        skip=("/usr/share/zoneinfo/right",),
    ),
)


def runtime_rule_names() -> tuple[str, ...]:
    return tuple(r.name for r in RUNTIME_RULES)


# The search path of a program whose environment has no PATH (execvp's default).
DEFAULT_SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
        self._web = WebConfig(tree, read_text)

    def seeds(self, touched: Iterable[str]) -> list[Seed]:
        """Seeds of every enabled rule ``touched`` (canonical paths) fires, and of every
        rule the programs those seeds count as run fire in turn
        (:func:`~ocislim.slim.apprules.counted_as_run`: a CGI script's interpreter)."""
        out = self._seeds(touched)
        ran: set[str] = set()
        while more := [p for p in dict.fromkeys(counted_as_run(out)) if p not in ran]:
            ran.update(more)
            out += self._seeds([self._canonical(p) for p in more])
        return out

    def _seeds(self, touched: Iterable[str]) -> list[Seed]:
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
            seeds += self._httpd_modules(reason)
        if rule.name == "cgi-scripts":
            seeds += self._cgi_scripts(trigger)
        if rule.name == "java-option-files":
            seeds += self._java_option_files(trigger)
        if rule.name == "node-builtins":
            seeds += self._node_builtins(reason)
        return seeds

    def _node_builtins(self, reason: Reason) -> list[Seed]:
        """The files libnode names under ``/usr/share/nodejs`` or ``/usr/lib/nodejs``:
        Debian builds Node with some built-in modules left outside the library
        (``NODE_SHARED_BUILTIN_*_PATH``), read at every start; without them Node aborts
        (``Cannot load externalized builtin``) before running anything."""
        found: set[str] = set()
        for pattern in _LIBNODE:
            for library in self._matches(pattern):
                if not self._is_file(library):
                    continue
                found.update(_NODE_BUILTIN_PATH.findall(self.read_text(library) or ""))
        return [Seed(path, reason) for path in sorted(found) if self._exists(path)]

    def _is_file(self, path: str) -> bool:
        entry = self.tree.get(path)
        return entry is not None and entry.kind == "file"

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
        """The directories the server's configuration serves: the site's own content."""
        why = Reason(
            "lazy",
            detail="a directory the server's configuration serves",
            rule="web-server",
            by=reason.by,
        )
        return [Seed(r, why, recursive=True) for r in self._web.served_dirs()]

    def _httpd_modules(self, reason: Reason) -> list[Seed]:
        """The modules httpd's enabled configuration loads, and only those."""
        why = Reason(
            "lazy",
            detail="a module an enabled LoadModule line of the configuration names",
            rule="web-server",
            by=reason.by,
        )
        return [Seed(path, why) for path in self._web.httpd_modules()]

    def _exists(self, path: str) -> bool:
        return self.tree.get(self._canonical(path)) is not None

    def _cgi_scripts(self, trigger: str) -> list[Seed]:
        """Every script of the configuration's ``ScriptAlias`` directories, as if it ran:
        the script and its ``#!`` interpreter (both counted as run: the interpreter fires
        its rules, the Keeper reads the script's imports), and the programs the script
        names."""
        why = Reason("lazy", detail="a CGI script the server runs", rule="cgi-scripts", by=trigger)
        seeds: list[Seed] = []
        scripts: list[str] = []
        for directory in self._web.cgi_dirs():
            seeds.append(Seed(directory, why, recursive=True))
            scripts += [e.path for e in files_below(self.tree, directory)]
        for script in scripts:
            seeds.append(Seed(script, why))  # counted as run: the modules it imports
            interpreter = self._interpreter(script)
            if interpreter is not None:
                by = Reason(
                    "lazy", detail=f"the interpreter of {script}", rule="cgi-scripts", by=script
                )
                seeds.append(Seed(interpreter, by))  # counted as run: its rules fire
        for seed in script_command_seeds(
            scripts, self.read_text, self._find_program, self._is_program
        ):
            seeds.append(dataclasses.replace(seed, reason=dataclasses.replace(
                seed.reason, rule="cgi-scripts")))  # fmt: skip
        return seeds

    def _interpreter(self, script: str) -> str | None:
        """The program a script's ``#!`` line runs (``env NAME`` looked up on PATH)."""
        head = (self.read_text(script) or "")[:512]
        return script_interpreter(head, self._find_program, self._is_program)

    def _canonical(self, path: str) -> str:
        return self._web.canonical(path)

    def _is_program(self, path: str) -> bool:
        entry = self.tree.get(self._canonical(path))
        return entry is not None and entry.kind == "file" and bool(entry.mode & 0o111)

    def _find_program(self, name: str) -> str | None:
        """``name`` on the PATH of the probed program's environment."""
        if "/" in name:
            return name if self._is_program(name) else None
        search = DEFAULT_SEARCH_PATH
        for item in self.env:
            if item.startswith("PATH="):
                search = item[len("PATH=") :]
        for directory in search.split(":"):
            candidate = posixpath.join(directory or "/", name)
            if directory.startswith("/") and self._is_program(candidate):
                return candidate
        return None

    def _matches(self, pattern: str) -> list[str]:
        if pattern not in self._keeps:
            if not any(c in pattern for c in "*?["):
                # Through links on the way too (/sbin/ldconfig with /sbin -> usr/sbin).
                there = self.tree.get(pattern) or self.tree.get(self._canonical(pattern))
                self._keeps[pattern] = [pattern] if there is not None else []
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
