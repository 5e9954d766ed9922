"""Rules about the application itself and the places it writes, as switchable data.

Each rule is a :class:`~ocislim.slim.langrules.LangRule` (name, description,
default) and every path it keeps carries ``Reason("lazy", rule=NAME)``:

- ``written-places``: every directory the traced program created something in
  (the nearest directory of the source image above a created path), and every
  existing path it wrote, created or deleted, is kept (with its original header);
  a program that writes its state, logs or cache there finds the place again.
- ``skeleton-dirs``: the standard writable directories present in the source
  (:data:`SKELETON_DIRS`) and the config's ``Volumes`` mount points stay as
  (empty) directories with their original modes; so does the home directory of the
  user the image runs as (and ``HOME``), with the small dot files at its top (a
  program's own configuration: ``.gitconfig``, ``.npmrc``, ``.pgpass``).
- ``script-commands``: the programs the application's scripts name (absolute paths;
  words on the PATH in shell scripts; in other languages every command word of a
  command string, read as a shell reads it: after ``|``, ``&&``, ``;``, in ``$(...)``...).
  They count as run (:data:`RUN_RULES`): an interpreter among them fires its runtime's
  rules.
- ``binary-named-paths``: the files (and data directories under /usr/share, /etc) the
  application's own compiled program names by absolute path in its bytes.
- ``app-whole``: the directory tree holding the entrypoint's script or program,
  and the WorkingDir when it is not ``/``, is kept whole, up to a boundary: a
  system directory (:data:`SYSTEM_DIRS`) or a package root (:data:`PACKAGE_ROOTS`)
  is never kept whole, only the directory below it on the way to the script.  The
  tree's own Python and JavaScript files (:func:`app_sources`) have their imports read
  by the language rules, as a script counted as run has.

Pure: every function depends on the merged tree and the values given.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Sequence

from ocislim.errors import UnsafeArchiveError
from ocislim.layers.tree import Entry, FileTree
from ocislim.slim.commandtext import (
    SHELL_BUILTINS,
    absolute_paths,
    is_shell_script,
    quoted_commands,
    runs_backticks,
)
from ocislim.slim.langrules import LangRule
from ocislim.slim.patterns import PatternSet
from ocislim.slim.plan import Reason, Seed

APP_RULES: tuple[LangRule, ...] = (
    LangRule(
        "written-places",
        "directories the traced program created something in, and existing files it "
        "wrote or deleted, stay with their original metadata",
    ),
    LangRule(
        "skeleton-dirs",
        "/tmp, /var/tmp, /run, /var/run, /var/log, /var/cache, the config's Volumes and "
        "the home directory of the image's user stay as directories with their modes "
        "(the home with its small dot files)",
    ),
    LangRule(
        "script-commands",
        "the programs an application's scripts name (absolute paths of executables; in "
        "shell scripts, words found on the image's PATH; elsewhere every command word of "
        "a command string) are kept, run by this probe or not, and count as run: an "
        "interpreter among them fires its runtime's rules",
    ),
    LangRule(
        "binary-named-paths",
        "the files an application's own compiled program (an ELF entrypoint no package "
        "owns, such as a static Go binary) names by absolute path are kept, and the data "
        "directories it names under /usr/share and /etc whole (zoneinfo)",
    ),
    LangRule(
        "app-whole",
        "the directory tree of the entrypoint's script or program (and the WorkingDir) "
        "is kept whole, below system directories, and the packages its Python and "
        "JavaScript files import",
    ),
)

SKELETON_DIRS = ("/tmp", "/var/tmp", "/run", "/var/run", "/var/log", "/var/cache")
# A dot file at the top of the home directory up to this size is configuration.
HOME_DOTFILE_BYTES = 64 << 10
WRITE_ACCESS = frozenset({"write", "create", "delete"})

# Directories shared by the whole system: never an application's own tree.
SYSTEM_DIRS = frozenset(
    {
        "/",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/etc",
        "/opt",
        "/srv",
        "/home",
        "/root",
        "/tmp",
        "/var",
        "/var/lib",
        "/var/tmp",
        "/var/cache",
        "/var/log",
        "/var/opt",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/lib32",
        "/usr/lib64",
        "/usr/libx32",
        "/usr/libexec",
        "/usr/include",
        "/usr/share",
        "/usr/local",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/usr/local/lib",
        "/usr/local/libexec",
        "/usr/local/share",
        "/usr/local/include",
    }
)
# Roots of many packages at once: the application is at most one level below them.
PACKAGE_ROOTS = (
    "/usr/lib/*-linux-gnu*",
    "/usr/lib/python*",
    "/usr/local/lib/python*",
    "/usr/share/nodejs",
    "/usr/lib/nodejs",
    "/usr/share/perl*",
    "/usr/lib/jvm",
    "/usr/share/java",
    "/**/site-packages",
    "/**/dist-packages",
    "/**/node_modules",
)
_PACKAGE_ROOTS = PatternSet(PACKAGE_ROOTS)


def rule_reason(rule: str, detail: str, by: str | None = None) -> Reason:
    return Reason("lazy", detail=detail, rule=rule, by=by)


def named_program(
    word: str, find_program: Callable[[str], str | None], is_program: Callable[[str], bool]
) -> str | None:
    """The executable of the image a command word names: an absolute path as it is, a
    name as the ``PATH`` finds it (None: no such executable)."""
    program = word if word.startswith("/") else find_program(word)
    return program if program and is_program(program) else None


def is_below(path: str, tops: Iterable[str]) -> bool:
    """``path`` is one of the directories ``tops`` or inside one."""
    return any(path == top or path.startswith(top.rstrip("/") + "/") for top in tops)


# Rules that keep programs because they will run (a script names them, a web server runs
# its CGI scripts' interpreters): what those programs' runtimes load must be kept too.
RUN_RULES = frozenset(
    {
        "script-commands",
        "nested-scripts",
        "cgi-scripts",
        "config-named-commands",
        "program-named-programs",
        "python-ctypes-libraries",
    }
)


def counted_as_run(seeds: Iterable[Seed]) -> list[str]:
    """The paths of ``seeds`` that a rule of :data:`RUN_RULES` keeps as single files (the
    programs and interpreters it counts as run, not directory trees), in order.

    The language and runtime rules treat each as touched by a run: an interpreter
    fires its runtime's rules (``/usr/bin/python3.11`` its standard library,
    ``/usr/bin/perl`` ``perl-inc``) as if it had run."""
    return [
        seed.path
        for seed in seeds
        if seed.reason.source == "lazy" and seed.reason.rule in RUN_RULES and not seed.recursive
    ]


# -- written places -------------------------------------------------------------------


def written_seeds(tree: FileTree, seeds: Iterable[Seed]) -> tuple[list[Seed], list[Seed]]:
    """Split traced ``seeds`` into (seeds to keep, written-places seeds).

    A traced path absent from the source (created at run time) is not kept itself;
    the nearest source directory above it is.  An existing path written, created or
    deleted gets the rule's reason too.  Seeds of other sources pass unchanged.
    """
    kept: list[Seed] = []
    places: list[Seed] = []
    for seed in seeds:
        if seed.reason.source != "trace":
            kept.append(seed)
            continue
        wrote = bool(WRITE_ACCESS & set(seed.reason.access))
        if _exists(tree, seed.path):
            kept.append(seed)
            if wrote:
                why = f"written by {seed.reason.process} ({','.join(seed.reason.access)})"
                places.append(Seed(seed.path, rule_reason("written-places", why), follow=False))
            continue
        if not wrote:
            continue  # looked at, never there: nothing to keep
        parent = _existing_dir_above(tree, seed.path)
        if parent is not None:
            why = f"{seed.reason.process} created {seed.path} in it"
            places.append(Seed(parent, rule_reason("written-places", why, by=seed.path)))
    return kept, places


def _exists(tree: FileTree, path: str) -> bool:
    try:
        return tree.get(tree.resolve(path, follow_last=False)) is not None
    except UnsafeArchiveError:
        return False


def _existing_dir_above(tree: FileTree, path: str) -> str | None:
    parent = posixpath.dirname(path)
    while True:
        try:
            resolved = tree.resolve(parent)
        except UnsafeArchiveError:
            return None
        entry = tree.get(resolved)
        if entry is not None:
            return parent if entry.is_dir else None
        if parent == "/":
            return None
        parent = posixpath.dirname(parent)


# -- skeleton directories -------------------------------------------------------------


def skeleton_seeds(tree: FileTree, volumes: Sequence[str]) -> list[Seed]:
    """The skeleton directories and ``volumes`` present in ``tree``, as plain dirs."""
    seeds = []
    for path in (*SKELETON_DIRS, *volumes):
        path = posixpath.normpath("/" + path.lstrip("/"))
        if tree.get(path) is None:
            continue
        detail = "a Volumes mount point" if path in volumes else "a standard writable directory"
        seeds.append(Seed(path, rule_reason("skeleton-dirs", detail)))
    return seeds


def home_seeds(
    tree: FileTree,
    read_text: Callable[[str], str | None],
    users: Iterable[str],
    env: Iterable[str],
) -> list[Seed]:
    """The home directories of ``users`` (USER values: a name or uid, ``:group`` ignored;
    empty is root) as ``/etc/passwd`` gives them, and ``HOME`` of ``env`` (K=V items):
    each directory present in ``tree``, with the regular dot files at its top up to
    :data:`HOME_DOTFILE_BYTES`.  A program run as a user creates its caches and
    state below its home (``~/.cache``, ``~/.config``, ``~/.local``), which needs the
    directory with its owner; a user cannot make it in a root-owned ``/home``."""
    wanted = [(u or "0").partition(":")[0] for u in users]
    homes: list[str] = []
    for line in (read_text("/etc/passwd") or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and (fields[0] in wanted or fields[2] in wanted):
            homes.append(fields[5])
    homes += [item[5:] for item in env if item.startswith("HOME=")]
    seeds: list[Seed] = []
    for home in dict.fromkeys(posixpath.normpath(h) for h in homes if h.startswith("/")):
        entry = tree.get(home)
        if home == "/" or entry is None or not entry.is_dir:
            continue
        why = rule_reason("skeleton-dirs", "the home directory of the image's user")
        seeds.append(Seed(home, why))
        for name, child in sorted((entry.children or {}).items()):
            if name.startswith(".") and child.kind == "file" and child.size <= HOME_DOTFILE_BYTES:
                seeds.append(Seed(child.path, why))
    return seeds


# -- the application's own tree -------------------------------------------------------


def app_seeds(
    tree: FileTree,
    argv: Sequence[str],
    workdir: str,
    find_program: Callable[[str], str | None],
    traced: Iterable[str] = (),
) -> list[Seed]:
    """The application trees of ``argv`` (the entrypoint and command), ``workdir`` and
    the application sources among the ``traced`` paths (:func:`traced_app_candidates`)."""
    seeds: list[Seed] = []
    done: set[str] = set()
    candidates = app_candidates(tree, argv, workdir, find_program)
    for path, what in [*candidates, *traced_app_candidates(traced)]:
        root = app_root(path)
        if root is None or root in done:
            continue
        done.add(root)
        why = rule_reason("app-whole", f"the application tree of {what}", by=path)
        seeds.append(Seed(root, why, recursive=True))
    return seeds


# The application's own source files whose imports are read (not its vendored packages).
APP_SOURCE_SUFFIXES = (".py", ".js", ".mjs", ".cjs", ".pl", ".pm", ".rb", ".ru")
# A .cgi file is read when its #! line runs perl (the language rules check it).
APP_SOURCE_CGI = ".cgi"
_VENDORED = frozenset({"node_modules", "site-packages", "dist-packages", "__pycache__"})
MAX_APP_SOURCES = 2000


def _is_source(name: str, entry: Entry) -> bool:
    return name.endswith((*APP_SOURCE_SUFFIXES, APP_SOURCE_CGI))


def app_sources(
    tree: FileTree, roots: Iterable[str], wanted: Callable[[str, Entry], bool] = _is_source
) -> list[str]:
    """The Python, JavaScript, Perl and Ruby source files (``.cgi`` too: the language rules
    read it when its ``#!`` names perl) of the application trees ``roots``, or the regular
    files ``wanted(name, entry)`` chooses, sorted, at most :data:`MAX_APP_SOURCES`: never
    below ``node_modules``, a site directory, a bytecode cache or a hidden directory (what
    the application vendors is a package, kept by its own rule when touched)."""
    found: list[str] = []
    stack = [e for r in sorted(set(roots)) if (e := tree.get(r)) is not None and e.is_dir]
    while stack and len(found) < MAX_APP_SOURCES:
        node = stack.pop()
        for name in sorted(node.children or {}):
            child = (node.children or {})[name]
            if child.is_dir:
                if name not in _VENDORED and not name.startswith("."):
                    stack.append(child)
            elif child.kind == "file" and wanted(name, child):
                found.append(child.path)
    return sorted(found[:MAX_APP_SOURCES])


def app_candidates(
    tree: FileTree,
    argv: Sequence[str],
    workdir: str,
    find_program: Callable[[str], str | None],
) -> list[tuple[str, str]]:
    """(directory, what it holds) for the program (and the script a link on the PATH
    leads to: npm's ``/usr/local/bin/tool`` -> ``../lib/node_modules/tool/bin/cli.js``),
    every script path ``argv`` names (in ``sh -c`` strings too) and the WorkingDir."""
    out: list[tuple[str, str]] = []
    if argv:
        program = find_program(argv[0])
        if program is not None:
            out.append((posixpath.dirname(program), f"the program {program}"))
            target = _link_target(tree, program)
            if target is not None and target.endswith(_SCRIPT_SUFFIXES):
                out.append((posixpath.dirname(target), f"the script {target}"))
    for token in _tokens(argv[1:]):
        if "/" not in token and not token.endswith(_SCRIPT_SUFFIXES):
            continue
        path = posixpath.normpath(posixpath.join(workdir or "/", token))
        entry = tree.follow(path)
        if entry is not None and not entry.is_dir:
            out.append((posixpath.dirname(path), f"the script {path}"))
        elif entry is not None and "/" in token:
            out.append((path, f"the directory {path} its command names"))
    if workdir and workdir != "/":
        out.append((posixpath.normpath(workdir), "the WorkingDir"))
    return out


def _link_target(tree: FileTree, path: str) -> str | None:
    """Where the symlink ``path`` leads inside the image (None: no link, or a loop)."""
    entry = tree.get(path)
    if entry is None or entry.kind != "symlink":
        return None
    try:
        return tree.resolve(path)
    except UnsafeArchiveError:
        return None


# Where a traced source file is the system's or a package's, never an application's.
_NOT_APPLICATION = PatternSet(
    ["/usr/**", "/etc/**", "/lib*/**", "/bin/**", "/sbin/**", "/proc/**", "/sys/**", "/dev/**",
     "/run/**", "/tmp/**", "/var/tmp/**", "/var/lib/**", "/var/cache/**", "/var/log/**",
     "/**/.*/**", "/**/.*",
     # A runtime's or a package manager's library outside /usr (/opt/conda, /opt/python):
     # its rules keep what it needs, its root is no application.
     "/**/lib/python*/**", "/**/site-packages/**", "/**/dist-packages/**",
     "/**/node_modules/**", "/**/lib/ruby/**", "/**/gems/**", "/**/lib/perl5/**",
     "/**/lib/php/**", "/**/share/lua/**", "/**/lib/lua/**"]
)  # fmt: skip
_USR_APPLICATION = PatternSet(["/usr/src/*/**", "/usr/local/src/*/**"])


def traced_app_candidates(traced: Iterable[str]) -> list[tuple[str, str]]:
    """(directory, what it holds) for the application source files the run loaded from
    outside the system's and the packages' directories (a module uvicorn imported from
    ``/app``, a script ``PYTHONPATH`` found in ``/code``): the application lives there
    even when no argument or WorkingDir names it.  Hidden directories never count."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for path in traced:
        if not path.endswith((*APP_SOURCE_SUFFIXES, ".php")):
            continue
        if _NOT_APPLICATION.match(path) and not _USR_APPLICATION.match(path):
            continue
        directory = posixpath.dirname(path)
        if directory not in seen:
            seen.add(directory)
            out.append((directory, f"the source {path} the run loaded"))
    return out


_SCRIPT_SUFFIXES = (
    ".py", ".js", ".mjs", ".cjs", ".pl", ".pm", ".rb", ".php", ".sh", ".jar", ".java",
)  # fmt: skip


def _tokens(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    for arg in args:
        if arg.startswith("-") and "=" not in arg:
            continue
        if " " in arg:
            try:
                out += shlex.split(arg)
            except ValueError:
                continue
        else:
            out.append(arg.split("=", 1)[1] if arg.startswith("-") else arg)
    return out


_WORD = re.compile(r"(?:^|[\s;|&(`])([A-Za-z0-9_][A-Za-z0-9_.+-]*)")
# A command kept in a variable: ``uncompress="gzip -cdf"``, ``grep=${GREP:-grep -E}``.
_HELD_COMMAND = re.compile(r"(?:\b[A-Za-z_]\w*=[\"']|:-)([A-Za-z0-9_][A-Za-z0-9_.+-]*)")


def script_command_seeds(
    scripts: Iterable[str],
    read_text: Callable[[str], str | None],
    find_program: Callable[[str], str | None],
    is_program: Callable[[str], bool] = lambda path: False,
    rule: str = "script-commands",
    is_shell: Callable[[str, str], bool] = is_shell_script,
    seen: set[str] | None = None,
) -> list[Seed]:
    """The programs the application's ``scripts`` name: every absolute path in a script's
    text that is an executable file of the image (``ProcessBuilder("/bin/echo")``,
    ``subprocess.run(["/usr/bin/git", ...])``); in a shell script every word that is a
    program on the PATH; in other scripts every command word (:func:`quoted_commands`)
    of a command string that is a program on the PATH: the string opening a call's
    arguments or a list (``subprocess.run(["sort", "-r"])``, ``spawn('gzip')``,
    ``os.system("ls | wc -l")``, ``system("date -u && hostname")``), a shell's ``-c``
    argument, and in Perl, Ruby and PHP (by ``#!`` or suffix) backticks, ``qx{}`` and
    ``%x()``.  In a shell script a command held in a variable counts too: the first word
    of a quoted assignment or a ``${VAR:-default}`` (``uncompress="gzip -cdf"``); the
    shell's own builtins (:data:`SHELL_BUILTINS`: ``printf``, ``test``) never do.  Every
    program found is counted as run (:func:`counted_as_run`); each seed's reason names
    ``rule`` (one of :data:`RUN_RULES`).  ``is_shell(path, head)`` tells a shell script
    (by default its ``#!`` or its suffix).  ``seen``: the paths and words already
    looked up, shared by calls that should name each program once (updated)."""
    seeds: list[Seed] = []
    seen = set() if seen is None else seen
    for script in scripts:
        text = read_text(script)
        if not text:
            continue

        def add(found: str, script: str = script) -> None:
            if found != script:
                why = rule_reason(rule, f"named by the script {script}", script)
                seeds.append(Seed(found, why))

        for path in absolute_paths(text):
            if path not in seen:
                seen.add(path)
                if is_program(path):
                    add(path)
        if text.startswith("\x7fELF"):
            continue  # a compiled program: only the paths it spells, above
        interpreter = text.split("\n", 1)[0][2:].split() if text.startswith("#!") else []
        names = [posixpath.basename(w) for w in interpreter[:2]]
        if not is_shell(script, text[:256]):
            for word in quoted_commands(text, runs_backticks(script, names)):
                if "/" not in word and word not in seen:  # paths: absolute_paths above
                    seen.add(word)
                    found = find_program(word)
                    if found is not None:
                        add(found)
            continue
        for line in text.splitlines():  # the "#!" line reads as a comment
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            for word in [*_WORD.findall(code), *_HELD_COMMAND.findall(code)]:
                if word in seen or word in SHELL_BUILTINS:
                    continue
                seen.add(word)
                found = find_program(word)
                if found is not None:
                    add(found)
    return seeds


# Where a program's named directory is a data directory (kept whole), not a system one.
_DATA_DIRS = PatternSet(["/usr/share/*", "/usr/share/*/**", "/etc/*", "/etc/*/**"])
_NEVER_NAMED = PatternSet(["/proc/**", "/sys/**", "/dev/**", "/etc/hosts", "/etc/resolv.conf",
                           "/etc/hostname", "/usr/share/zoneinfo/right"])  # fmt: skip
_PATH_START = re.compile(r"/(?=[\w.+-])")
_ZONEINFO_RIGHT = ("/usr/share/zoneinfo/right",)


def binary_named_seeds(tree: FileTree, program: str, data: str) -> list[Seed]:
    """What the compiled ``program`` (its bytes decoded as ``data``) names by absolute
    path: every regular file of ``tree`` (and symlink) the text spells, and every
    directory under /usr/share or /etc it spells (kept whole).

    A compiled program's string literals are packed without separators
    (``/bin/echo/dev/null``), so a path is read from each ``/`` component by component,
    each component being the longest child name the text continues with."""
    found: dict[str, bool] = {}  # path -> recursive
    for start in _PATH_START.finditer(data):
        entry = tree.get("/")
        path, pos = "", start.start()
        while entry is not None and entry.is_dir and pos < len(data) and data[pos] == "/":
            best = None
            for name in entry.children or {}:
                if data.startswith(name, pos + 1) and (best is None or len(name) > len(best)):
                    best = name
            if best is None:
                break
            path, pos = f"{path}/{best}", pos + 1 + len(best)
            entry = (entry.children or {})[best]
            if entry.kind == "symlink":  # /bin -> usr/bin: read on through the target
                try:
                    entry = tree.get(tree.resolve(path)) or entry
                except UnsafeArchiveError:
                    break
        if entry is None or not path or path in found or _NEVER_NAMED.match(path):
            continue
        if entry.is_dir:
            if _DATA_DIRS.match(path) is not None and path.count("/") >= 3:
                found[path] = True
        elif entry.kind in ("file", "symlink"):
            found[path] = False
    why = rule_reason("binary-named-paths", f"named by the program {program}", program)
    return [
        Seed(path, why, recursive=recursive, skip=_ZONEINFO_RIGHT if recursive else ())
        for path, recursive in sorted(found.items())
        if path != program
    ]


def app_root(directory: str) -> str | None:
    """The top of ``directory``'s application tree: its highest ancestor (itself
    included) below a system directory or package root; None when ``directory`` is one."""
    directory = posixpath.normpath(directory)
    if _is_boundary(directory):
        return None
    while True:
        parent = posixpath.dirname(directory)
        if _is_boundary(parent):
            return directory
        directory = parent


def _is_boundary(path: str) -> bool:
    return path in SYSTEM_DIRS or _PACKAGE_ROOTS.match(path) is not None
