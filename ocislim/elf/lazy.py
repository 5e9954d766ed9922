"""What a program loads or reads at run time without a ``DT_NEEDED`` entry — as data.

Each :class:`LazyRule` says *when* it applies (an object is loaded whose soname or file
name matches ``when_loaded``, optionally only if some loaded object imports one of
``when_imports``, optionally only for a range of glibc versions) and *what* then gets
loaded: libraries by name (resolved like a ``DT_NEEDED`` entry of the object that
triggered the rule), files by path or glob, and items computed by a named expander
for what depends on the image's own configuration (NSS services from
``/etc/nsswitch.conf``, the gconv module directory).

To teach ocislim another lazy loader (an interpreter's extension directory, a plugin
system), add a rule to :data:`DEFAULT_RULES` or pass your own list to the analysis; if
the set of files depends on configuration, register an expander in :data:`EXPANDERS`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ocislim.elf.rootpath import RootFS, join

NSSWITCH_CONF = "/etc/nsswitch.conf"

# ncurses' terminfo search list (Debian's ncurses-base puts the common terminals in
# /usr/lib/terminfo, /lib/terminfo before merged /usr; ncurses-term in /usr/share).
TERMINFO_DIRS = ("/etc/terminfo", "/usr/lib/terminfo", "/lib/terminfo", "/usr/share/terminfo")

# fontconfig's configuration (FONTCONFIG_FILE and FONTCONFIG_PATH move it) and the
# elements of it that name what it reads: included files, font and cache directories.
FONTCONFIG_DIR = "/etc/fonts"
FONTCONFIG_FILE = "fonts.conf"
_FC_ELEMENT_RE = re.compile(r"<(include|dir|cachedir)(\s[^>]*)?>\s*([^<]+?)\s*</\1>")
_FC_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
# A font directory tree with more files than this is kept as far as this many.
FONT_FILES_LIMIT = 20_000

# glibc >= 2.34 carries these NSS services inside libc.so.6.
BUILTIN_NSS_SERVICES_SINCE_2_34 = frozenset({"files", "dns"})

# The databases glibc knows (nss/databases.def); other names in nsswitch.conf are
# ignored by glibc (they belong to sudo, automount, ...).
NSS_DATABASES = (
    "aliases",
    "ethers",
    "group",
    "group_compat",
    "gshadow",
    "hosts",
    "initgroups",
    "netgroup",
    "networks",
    "passwd",
    "passwd_compat",
    "protocols",
    "publickey",
    "rpc",
    "services",
    "shadow",
    "shadow_compat",
)

# glibc's built-in configuration for databases nsswitch.conf does not mention.
NSS_DEFAULTS: Mapping[str, tuple[str, ...]] = {
    "hosts": ("dns", "files"),
    "networks": ("dns", "files"),
    "initgroups": (),
    "passwd_compat": ("nis",),
    "group_compat": ("nis",),
    "shadow_compat": ("nis",),
    "publickey": ("nis", "nisplus"),
}
NSS_DEFAULT_OTHER = ("files",)
# A database that falls back to another one's line when it has none of its own.
NSS_INHERITS = {"shadow": "passwd", "gshadow": "group", "shadow_compat": "passwd_compat"}
# Databases the "compat" service reads +/- entries through.
NSS_COMPAT_OF = {"passwd": "passwd_compat", "group": "group_compat", "shadow": "shadow_compat"}

# The file the "files" service reads for each database.
NSS_FILES: Mapping[str, str] = {
    "aliases": "/etc/aliases",
    "ethers": "/etc/ethers",
    "group": "/etc/group",
    "gshadow": "/etc/gshadow",
    "hosts": "/etc/hosts",
    "initgroups": "/etc/group",
    "netgroup": "/etc/netgroup",
    "networks": "/etc/networks",
    "passwd": "/etc/passwd",
    "protocols": "/etc/protocols",
    "publickey": "/etc/publickey",
    "rpc": "/etc/rpc",
    "services": "/etc/services",
    "shadow": "/etc/shadow",
}


@dataclass(frozen=True)
class LazyNeed:
    """One thing a rule says will be loaded or read.

    ``kind`` is ``"library"`` (``target`` is a name the loader searches for, or an
    absolute path) or ``"file"`` (``target`` is an absolute path or glob; absent files
    are fine — programs treat them as empty configuration).
    """

    kind: str
    target: str
    reason: str
    rule: str


@dataclass(frozen=True)
class LazyRule:
    """A lazy-loading behaviour, described as data (see the module docstring)."""

    name: str
    description: str
    when_loaded: tuple[str, ...]
    when_imports: tuple[str, ...] = ()
    glibc_min: tuple[int, int] | None = None
    glibc_below: tuple[int, int] | None = None
    libraries: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    expander: str | None = None

    def matches_object(self, soname: str | None, path: str) -> bool:
        base = path.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatchcase(soname or "", p) or fnmatch.fnmatchcase(base, p)
            for p in self.when_loaded
        )

    def glibc_ok(self, version: tuple[int, int] | None) -> bool:
        if self.glibc_min is None and self.glibc_below is None:
            return True
        if version is None:
            return False
        if self.glibc_min is not None and version < self.glibc_min:
            return False
        return not (self.glibc_below is not None and version >= self.glibc_below)


@dataclass
class LazyContext:
    """What an expander may look at: the image and the object that triggered the rule."""

    rootfs: RootFS
    env: Mapping[str, str]
    trigger_path: str  # canonical path of the loaded object that matched
    glibc_version: tuple[int, int] | None
    cache: dict[str, object] = field(default_factory=dict)


_RELEASE_RE = re.compile(rb"release version (\d+)\.(\d+)")
_LIBC_FILE_RE = re.compile(r"libc-(\d+)\.(\d+)")


def glibc_version(rootfs: RootFS, libc_canonical: str) -> tuple[int, int] | None:
    """glibc's version from its libc.so.6 (the banner string, else the file name)."""
    data = rootfs.read_bytes(libc_canonical)
    if data:
        m = _RELEASE_RE.search(data)
        if m:
            return (int(m.group(1)), int(m.group(2)))
    m2 = _LIBC_FILE_RE.search(libc_canonical.rsplit("/", 1)[-1])
    return (int(m2.group(1)), int(m2.group(2))) if m2 else None


def parse_nsswitch(text: str | None) -> dict[str, tuple[str, ...]]:
    """Services per database, glibc defaults applied; ``text`` None means no file."""
    explicit: dict[str, tuple[str, ...]] = {}
    for raw in (text or "").splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        name, _, rest = line.partition(":")
        name = name.strip()
        if name not in NSS_DATABASES:
            continue
        # Drop "[STATUS=action]" groups; what remains are service names.
        services = re.sub(r"\[[^\]]*\]", " ", rest).split()
        explicit[name] = tuple(services)
    result: dict[str, tuple[str, ...]] = {}
    for db in NSS_DATABASES:
        if db in explicit:
            result[db] = explicit[db]
        elif db in NSS_INHERITS and NSS_INHERITS[db] in explicit:
            result[db] = explicit[NSS_INHERITS[db]]
        else:
            result[db] = NSS_DEFAULTS.get(db, NSS_DEFAULT_OTHER)
    return result


def _expand_nss(ctx: LazyContext, rule: LazyRule) -> Iterable[LazyNeed]:
    text = ctx.rootfs.read_text(NSSWITCH_CONF)
    source = NSSWITCH_CONF if text is not None else "glibc's default (no /etc/nsswitch.conf)"
    config = parse_nsswitch(text)
    used: dict[str, list[str]] = {}  # service -> databases
    for db in NSS_DATABASES:
        if db.endswith("_compat"):
            continue
        for service in config[db]:
            used.setdefault(service, []).append(db)
            if service == "compat" and db in NSS_COMPAT_OF:
                for inner in config[NSS_COMPAT_OF[db]]:
                    used.setdefault(inner, []).append(NSS_COMPAT_OF[db])
    builtin = (
        BUILTIN_NSS_SERVICES_SINCE_2_34
        if ctx.glibc_version is not None and ctx.glibc_version >= (2, 34)
        else frozenset()
    )
    for service, dbs in used.items():
        if service in builtin:
            continue
        yield LazyNeed(
            "library",
            f"libnss_{service}.so.2",
            f"NSS service '{service}' for {', '.join(dbs)} ({source})",
            rule.name,
        )
    # "compat" reads the same files as "files" (with +/- entries in them).
    for service in ("files", "compat"):
        for db in used.get(service, ()):
            if db in NSS_FILES:
                yield LazyNeed("file", NSS_FILES[db], f"NSS '{service}' source for {db}", rule.name)


def _expand_gconv(ctx: LazyContext, rule: LazyRule) -> Iterable[LazyNeed]:
    dirs: list[str] = []
    for entry in ctx.env.get("GCONV_PATH", "").split(":"):
        if entry.startswith("/"):
            dirs.append(entry.rstrip("/") or "/")
    dirs.append(join(ctx.trigger_path.rsplit("/", 1)[0] or "/", "gconv"))
    for directory in dirs:
        for name in ("gconv-modules", "gconv-modules.cache", "gconv-modules.d/*.conf"):
            yield LazyNeed("file", join(directory, name), "iconv configuration", rule.name)
        for module in sorted(ctx.rootfs.listdir(directory)):
            if module.endswith(".so"):
                yield LazyNeed(
                    "library", join(directory, module), "iconv converter module", rule.name
                )


def _fontconfig_files(ctx: LazyContext) -> tuple[list[str], list[str]]:
    """The configuration files fontconfig reads, and the directories they name.

    Starts at ``FONTCONFIG_FILE`` (default ``/etc/fonts/fonts.conf``) and follows each
    ``<include>`` (a file, or a directory's ``*.conf`` in name order), relative names
    against the including file's directory; ``<dir>`` and ``<cachedir>`` give the
    directories. Names under a home directory or a prefix (``~/.fonts``, ``prefix="xdg"``)
    are the user's, not the image's, and are skipped.
    """
    base = ctx.env.get("FONTCONFIG_PATH", "").split(":")[0] or FONTCONFIG_DIR
    first = ctx.env.get("FONTCONFIG_FILE") or FONTCONFIG_FILE
    pending = [first if first.startswith("/") else join(base, first)]
    configs: list[str] = []
    dirs: list[str] = []
    while pending and len(configs) < 1000:
        path = pending.pop(0)
        if path in configs:
            continue
        if ctx.rootfs.is_dir(path):
            names = sorted(n for n in ctx.rootfs.listdir(path) if n.endswith(".conf"))
            pending[:0] = [join(path, n) for n in names]
            continue
        text = ctx.rootfs.read_text(path)
        if text is None:
            continue
        configs.append(path)
        here = path.rsplit("/", 1)[0] or "/"
        for element, attrs, value in _FC_ELEMENT_RE.findall(_FC_COMMENT_RE.sub("", text)):
            if value.startswith("~") or "prefix=" in (attrs or ""):
                continue
            target = value if value.startswith("/") else join(here, value)
            if element == "include":
                pending.append(target)
            elif value.startswith("/"):
                dirs.append(target)
    return configs, dirs


def _expand_fontconfig(ctx: LazyContext, rule: LazyRule) -> Iterable[LazyNeed]:
    configs, dirs = _fontconfig_files(ctx)
    for path in configs:
        yield LazyNeed("file", path, "fontconfig configuration", rule.name)
    count = 0
    seen: set[str] = set()  # canonical directories: a linked directory is walked once
    stack = list(reversed(dirs))
    while stack and count < FONT_FILES_LIMIT:
        directory = stack.pop()
        resolved = ctx.rootfs.resolve(directory)
        if resolved.kind != "dir" or resolved.path in seen:
            continue
        seen.add(resolved.path)
        for name in sorted(ctx.rootfs.listdir(directory), reverse=True):
            path = join(directory, name)
            kind = ctx.rootfs.resolve(path).kind  # one lookup: each entry is dir or file
            if kind == "dir":
                stack.append(path)
            elif kind == "file" and count < FONT_FILES_LIMIT:
                count += 1
                yield LazyNeed("file", path, "a font fontconfig may choose", rule.name)


Expander = Callable[[LazyContext, LazyRule], Iterable[LazyNeed]]

EXPANDERS: dict[str, Expander] = {
    "nss": _expand_nss,
    "gconv": _expand_gconv,
    "fontconfig": _expand_fontconfig,
}


DEFAULT_RULES: tuple[LazyRule, ...] = (
    LazyRule(
        name="glibc-nss",
        description="glibc dlopen()s NSS service modules named in /etc/nsswitch.conf",
        when_loaded=("libc.so.6",),
        expander="nss",
        files=(NSSWITCH_CONF,),
    ),
    LazyRule(
        name="glibc-resolver",
        description="files glibc reads to resolve names, services and protocols",
        when_loaded=("libc.so.6",),
        files=(
            "/etc/host.conf",
            "/etc/gai.conf",
            "/etc/services",
            "/etc/protocols",
            "/etc/hosts",
            "/etc/resolv.conf",
        ),
    ),
    LazyRule(
        name="glibc-unwind-pthread",
        description="libpthread dlopen()s libgcc_s.so.1 to unwind on thread cancellation",
        when_loaded=("libpthread.so.0",),
        glibc_below=(2, 34),
        libraries=("libgcc_s.so.1",),
    ),
    LazyRule(
        name="glibc-unwind",
        description="libc dlopen()s libgcc_s.so.1 to unwind on thread cancellation/exit",
        when_loaded=("libc.so.6",),
        glibc_min=(2, 34),
        libraries=("libgcc_s.so.1",),
    ),
    LazyRule(
        name="ncurses-terminfo",
        description="ncurses (setupterm, tgetent) reads the terminal's description by its "
        "TERM name from the terminfo database",
        when_loaded=("libtinfo.so.*", "libncurses.so.*", "libncursesw.so.*"),
        files=tuple(f"{d}/*/*" for d in TERMINFO_DIRS),
    ),
    LazyRule(
        name="libc-shell",
        description="system(), popen() and wordexp() run their command with /bin/sh -c",
        when_loaded=("libc.so.6", "libc.musl-*.so.1", "ld-musl-*.so.1"),
        when_imports=("system", "popen", "wordexp"),
        files=("/bin/sh",),
    ),
    LazyRule(
        name="fontconfig-fonts",
        description="fontconfig reads its configuration and picks a font from every font "
        "directory it names when a program first draws text",
        when_loaded=("libfontconfig.so.*",),
        expander="fontconfig",
    ),
    LazyRule(
        name="jvm-fontconfig",
        description="the JVM's font manager dlopen()s fontconfig to find the system's fonts "
        "when a program first draws or measures text",
        when_loaded=("libfontmanager.so",),
        libraries=("libfontconfig.so.1",),
    ),
    LazyRule(
        name="glibc-gconv",
        description="iconv_open() loads gconv converter modules and their configuration",
        when_loaded=("libc.so.6",),
        when_imports=("iconv_open",),
        expander="gconv",
    ),
)


def rule_needs(rule: LazyRule, ctx: LazyContext) -> list[LazyNeed]:
    """Everything ``rule`` contributes for the object in ``ctx`` (rule assumed to apply)."""
    out = [LazyNeed("library", lib, rule.description, rule.name) for lib in rule.libraries]
    out += [LazyNeed("file", f, rule.description, rule.name) for f in rule.files]
    if rule.expander is not None:
        out += list(EXPANDERS[rule.expander](ctx, rule))
    return out
