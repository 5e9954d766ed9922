"""Rules about the application itself and the places it writes, as switchable data.

Each rule is a :class:`~ocislim.slim.langrules.LangRule` (name, description,
default) and every path it keeps carries ``Reason("lazy", rule=NAME)``:

- ``written-places``: every directory the traced program created something in
  (the nearest directory of the source image above a created path), and every
  existing path it wrote, created or deleted, is kept (with its original header);
  a program that writes its state, logs or cache there finds the place again.
- ``skeleton-dirs``: the standard writable directories present in the source
  (:data:`SKELETON_DIRS`) and the config's ``Volumes`` mount points stay as
  (empty) directories with their original modes.
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
from ocislim.layers.tree import FileTree
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
        "/tmp, /var/tmp, /run, /var/run, /var/log, /var/cache and the config's Volumes "
        "stay as directories with their modes",
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


# Rules that keep programs because they will run (a script names them, a web server runs
# its CGI scripts' interpreters): what those programs' runtimes load must be kept too.
RUN_RULES = frozenset({"script-commands", "cgi-scripts"})


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


# -- the application's own tree -------------------------------------------------------


def app_seeds(
    tree: FileTree,
    argv: Sequence[str],
    workdir: str,
    find_program: Callable[[str], str | None],
) -> list[Seed]:
    """The application trees of ``argv`` (the entrypoint and command) and ``workdir``."""
    seeds: list[Seed] = []
    done: set[str] = set()
    for path, what in app_candidates(tree, argv, workdir, find_program):
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


def app_sources(tree: FileTree, roots: Iterable[str]) -> list[str]:
    """The Python, JavaScript, Perl and Ruby source files (``.cgi`` too: the language rules
    read it when its ``#!`` names perl) of the application trees ``roots``, sorted,
    at most :data:`MAX_APP_SOURCES`: never below ``node_modules``, a site directory, a
    bytecode cache or a hidden directory (what the application vendors is a package,
    kept by its own rule when touched)."""
    found: list[str] = []
    stack = [e for r in sorted(set(roots)) if (e := tree.get(r)) is not None and e.is_dir]
    while stack and len(found) < MAX_APP_SOURCES:
        node = stack.pop()
        for name in sorted(node.children or {}):
            child = (node.children or {})[name]
            if child.is_dir:
                if name not in _VENDORED and not name.startswith("."):
                    stack.append(child)
            elif child.kind == "file" and name.endswith((*APP_SOURCE_SUFFIXES, APP_SOURCE_CGI)):
                found.append(child.path)
    return sorted(found[:MAX_APP_SOURCES])


def app_candidates(
    tree: FileTree,
    argv: Sequence[str],
    workdir: str,
    find_program: Callable[[str], str | None],
) -> list[tuple[str, str]]:
    """(directory, what it holds) for the program, every script path ``argv`` names (in
    ``sh -c`` strings too) and the WorkingDir."""
    out: list[tuple[str, str]] = []
    if argv:
        program = find_program(argv[0])
        if program is not None:
            out.append((posixpath.dirname(program), f"the program {program}"))
    for token in _tokens(argv[1:]):
        if "/" not in token and not token.endswith(_SCRIPT_SUFFIXES):
            continue
        path = posixpath.normpath(posixpath.join(workdir or "/", token))
        try:
            entry = tree.get(tree.resolve(path))
        except UnsafeArchiveError:
            continue
        if entry is not None and not entry.is_dir:
            out.append((posixpath.dirname(path), f"the script {path}"))
    if workdir and workdir != "/":
        out.append((posixpath.normpath(workdir), "the WorkingDir"))
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


_SHELLS = ("sh", "bash", "dash", "ash", "ksh", "zsh", "busybox")
_WORD = re.compile(r"(?:^|[\s;|&(`])([A-Za-z0-9_][A-Za-z0-9_.+-]*)")


# An absolute path: not preceded by [\w.:/-] (so not the tail of a relative path or a
# URL).  The lookbehind is applied by hand in absolute_paths: at the start of the
# pattern it would stop re from jumping from "/" to "/", 40 times slower on a program.
_ABSOLUTE = re.compile(r"/(?:[\w.+-]+/)*[\w.+-]+")
_NOT_BEFORE_ABSOLUTE = re.compile(r"[\w.:/-]")


def absolute_paths(text: str) -> list[str]:
    r"""The absolute paths in ``text``, as ``re.findall`` of ``_ABSOLUTE`` behind
    ``(?<![\w.:/-])`` finds them; linear in ``len(text)``."""
    found = []
    pos = 0
    while (match := _ABSOLUTE.search(text, pos)) is not None:
        start, end = match.span()
        if start and _NOT_BEFORE_ABSOLUTE.match(text, start - 1):
            # Within the match only a "/" after "+" may begin a path of its own.
            plus = text.find("+/", start, end)
            pos = plus + 1 if plus != -1 else end
            continue
        found.append(match.group())
        pos = end
    return found


def script_interpreter(
    text: str, find_program: Callable[[str], str | None], is_program: Callable[[str], bool]
) -> str | None:
    """The program a script's ``#!`` line (the start of ``text``) runs: ``env NAME``
    looked up with ``find_program``, else the path when ``is_program``; None without one."""
    if not text.startswith("#!"):
        return None
    words = text[2:].split("\n", 1)[0].split()
    if not words:
        return None
    if posixpath.basename(words[0]) == "env" and len(words) > 1:
        return find_program(words[-1])
    return words[0] if is_program(words[0]) else None


# -- shell command strings -------------------------------------------------------------

# Words that end one simple command: the next word is a command again.
_SEPARATORS = frozenset("|&;()\n")
# Reserved words a command may follow; a loop or case header names no command itself.
_PREFIX_WORDS = frozenset({"if", "then", "elif", "else", "do", "while", "until", "!", "{", "time"})
_NO_COMMAND = frozenset({"for", "case", "select", "function", "in", "fi", "done", "esac", "}"})
# Wrappers that run the command after them, with the options of theirs that take a value
# and the number of plain arguments they take before the command.
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "exec": (frozenset({"-a"}), 0),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "nohup": (frozenset(), 0),
    "setsid": (frozenset(), 0),
    "env": (frozenset({"-u", "-C", "--unset", "--chdir"}), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "-n", "-p", "--class", "--classdata"}), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "timeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "sudo": (frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-U"}), 0),
    "xargs": (frozenset({"-I", "-n", "-P", "-d", "-L", "-s", "-E", "-a"}), 0),
}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_COMMAND_NAME = re.compile(r"^[A-Za-z0-9_./][\w.+/-]*$")


def command_words(command: str) -> list[str]:
    """The programs a shell command string runs, in order, each once: the command word
    of every simple command (after ``|``, ``||``, ``&&``, ``;``, ``&``, newlines, ``(``,
    and inside ``$(...)`` and backticks, in double quotes too), past leading ``VAR=value``
    assignments, redirections, reserved words (``if``, ``then``, ``do``, ``!``...) and
    wrappers that run the command after them (``exec``, ``env``, ``nice -n 5``,
    ``timeout 10``, ``xargs``...; the ``-c`` string of ``sh -c`` is read too).
    Arguments are never programs (``grep -c foo`` names ``grep`` only); a word with an
    expansion in it (``$CMD``) is no name.  A malformed string (an open quote) is read
    as far as it goes."""
    found: dict[str, None] = {}
    for words in _simple_commands(command, 0):
        for word in _command_of(words):
            found[word] = None
    return list(found)


def _command_of(words: list[str]) -> list[str]:
    """The programs of one simple command's words (the command, and ``sh -c``'s)."""
    i = 0
    while i < len(words) and (_ASSIGNMENT.match(words[i]) or words[i] in _PREFIX_WORDS):
        i += 1
    out: list[str] = []
    while i < len(words):
        word = words[i]
        if word in _NO_COMMAND or not _COMMAND_NAME.match(word):
            return out
        out.append(word)
        name = posixpath.basename(word)
        if name in _SHELLS:
            for j in range(i + 1, len(words) - 1):
                if words[j].startswith("-") and "c" in words[j][1:] and "-" not in words[j][1:]:
                    out += command_words(words[j + 1])
                    break
            return out
        wrapper = _WRAPPERS.get(name)
        if wrapper is None:
            return out
        takes_value, positional = wrapper
        i += 1
        while i < len(words):
            option = words[i].startswith("-") and len(words[i]) > 1
            if words[i] in takes_value:
                i += 2
            elif option or (name == "env" and _ASSIGNMENT.match(words[i])):
                i += 1
            else:
                break
        i += positional
    return out


def _simple_commands(text: str, depth: int) -> list[list[str]]:
    """The words of each simple command of ``text`` (quotes removed; substitutions read
    as commands of their own and left in their word as ``$``)."""
    commands: list[list[str]] = []
    words: list[str] = []
    word: list[str] = []
    started = False  # the word has begun (an empty quoted string is a word)
    skip_next = False  # the word after a redirection operator is its target

    def end_word() -> None:
        nonlocal word, started, skip_next
        if started:
            if skip_next:
                skip_next = False
            else:
                words.append("".join(word))
        word, started = [], False

    def end_command() -> None:
        nonlocal words
        end_word()
        if words:
            commands.append(words)
        words = []

    def substitution(inner: str) -> None:
        if depth < 8:
            commands.extend(_simple_commands(inner, depth + 1))

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            word.append(text[i + 1 : i + 2])
            started = True
            i += 2
        elif c == "'":
            close = text.find("'", i + 1)
            close = n if close == -1 else close
            word.append(text[i + 1 : close])
            started = True
            i = close + 1
        elif c == '"':
            i += 1
            started = True
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    word.append(text[i + 1 : i + 2])
                    i += 2
                elif text.startswith("$(", i) or text[i] == "`":
                    i = _substitute(text, i, substitution)
                    word.append("$")
                else:
                    word.append(text[i])
                    i += 1
            i += 1
        elif text.startswith("$(", i) or c == "`":
            i = _substitute(text, i, substitution)
            word.append("$")
            started = True
        elif c in " \t":
            end_word()
            i += 1
        elif c == "#" and not started:
            while i < n and text[i] != "\n":
                i += 1
        elif c in "<>":
            if word and all(ch.isdigit() for ch in word):
                word, started = [], False  # the descriptor of 2>&1
            end_word()
            i += 1
            while i < n and text[i] in "<>&|":
                i += 1
            skip_next = True
        elif c in _SEPARATORS:
            end_command()
            i += 1
        else:
            word.append(c)
            started = True
            i += 1
    end_command()
    return commands


def _substitute(text: str, i: int, read: Callable[[str], None]) -> int:
    """Read the ``$(...)`` or backtick substitution at ``i`` with ``read``; returns the
    index after it.  ``$((...))`` is arithmetic, no command."""
    if text[i] == "`":
        close = text.find("`", i + 1)
        close = len(text) if close == -1 else close
        read(text[i + 1 : close])
        return close + 1
    arithmetic = text.startswith("$((", i)
    depth, j, quote = 0, i + 1, ""
    while j < len(text):
        ch = text[j]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                break
        j += 1
    if not arithmetic:
        read(text[i + 2 : j])
    return j + 1


# In any language: a string that opens a call's arguments or a list (``subprocess.run(
# ["sort", ...])``, ``spawn('gzip')``, ``os.system("ls | wc -l")``, Perl's ``system "..."``),
# or the ``-c`` argument of a shell in a list (``["sh", "-c", "..."]``): a command string.
_STRING = r"""(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'|`([^`]*)`)"""
_QUOTED_COMMAND = re.compile(r"(?:[(\[]|\b(?:system|exec)\s)\s*[bBrRuUfF]{0,2}" + _STRING)
_SHELL_C = re.compile(
    r"""["'](?:/[\w/]*/)?(?:ba|da|k|z|a)?sh["']\s*,\s*["']-[a-z]*c["']\s*,\s*[bBrRuUfF]{0,2}"""
    + _STRING
)
# Perl, Ruby and PHP run a backtick string (and Perl's qx{}, Ruby's %x()) as a command.
_BACKTICKS = re.compile(r"`([^`]*)`|\bqx\s*\{([^}]*)\}|%x\(([^)]*)\)")
_BACKTICK_LANGUAGES = ("perl", "ruby", "php")
_BACKTICK_SUFFIXES = (".pl", ".pm", ".cgi", ".rb", ".php")


def quoted_commands(text: str, backticks: bool = False) -> list[str]:
    """The programs named in the command strings of a script's ``text`` (not a shell
    script), in order, each once: every command word (:func:`command_words`) of a string
    that opens a call's arguments or a list, or follows ``system``/``exec``, or is the
    ``-c`` argument of a shell in a list; with ``backticks`` (Perl, Ruby, PHP) those of
    every backtick string, ``qx{...}`` and ``%x(...)`` too.  A later list item or
    argument is no command (``["grep", "-c", "foo"]`` names ``grep``)."""
    found: dict[str, None] = {}
    matches = [*_QUOTED_COMMAND.finditer(text), *_SHELL_C.finditer(text)]
    if backticks:
        matches += _BACKTICKS.finditer(text)
    for match in matches:
        string = next((g for g in match.groups() if g is not None), "")
        for word in command_words(string):
            found[word] = None
    return list(found)


def script_command_seeds(
    scripts: Iterable[str],
    read_text: Callable[[str], str | None],
    find_program: Callable[[str], str | None],
    is_program: Callable[[str], bool] = lambda path: False,
) -> list[Seed]:
    """The programs the application's ``scripts`` name: every absolute path in a script's
    text that is an executable file of the image (``ProcessBuilder("/bin/echo")``,
    ``subprocess.run(["/usr/bin/git", ...])``); in a shell script every word that is a
    program on the PATH; in other scripts every command word (:func:`quoted_commands`)
    of a command string that is a program on the PATH: the string opening a call's
    arguments or a list (``subprocess.run(["sort", "-r"])``, ``spawn('gzip')``,
    ``os.system("ls | wc -l")``, ``system("date -u && hostname")``), a shell's ``-c``
    argument, and in Perl, Ruby and PHP (by ``#!`` or suffix) backticks, ``qx{}`` and
    ``%x()``.  Every program found is counted as run (:func:`counted_as_run`)."""
    seeds: list[Seed] = []
    seen: set[str] = set()
    for script in scripts:
        text = read_text(script)
        if not text:
            continue

        def add(found: str, script: str = script) -> None:
            if found != script:
                why = rule_reason("script-commands", f"named by the script {script}", script)
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
        if not any(n in _SHELLS for n in names):
            backticks = script.endswith(_BACKTICK_SUFFIXES) or any(
                n.startswith(_BACKTICK_LANGUAGES) for n in names
            )
            for word in quoted_commands(text, backticks):
                if "/" not in word and word not in seen:  # paths: absolute_paths above
                    seen.add(word)
                    found = find_program(word)
                    if found is not None:
                        add(found)
            continue
        for line in text.splitlines()[1:]:
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            for word in _WORD.findall(code):
                if word in seen:
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
