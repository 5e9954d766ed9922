"""What a script's text says it runs: command words of shell strings, command strings
quoted in other languages, ``#!`` interpreters, and the absolute paths a text spells.

A shell command string is read as a shell reads it (quotes, escapes, ``$(...)`` and
backticks, separators, redirections, reserved words, wrappers such as ``env`` or
``timeout``), never run and never expanded: a word with an expansion in it names no
program.  Every function is pure and linear or near-linear in the text's length, so a
hostile script costs its size.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable

# The shells, by the name a #! line or a command gives.
SHELLS = ("sh", "bash", "dash", "ash", "ksh", "zsh", "busybox")
# Commands every POSIX shell runs itself, though a program of the name exists
# (/usr/bin/printf, /usr/bin/test): a shell script's word never runs the program.
SHELL_BUILTINS = frozenset(
    {"echo", "printf", "test", "[", "kill", "pwd", "true", "false", "read", "cd", "umask",
     "wait", "getopts", "type", "ulimit", "command", "hash", "alias", "unalias"}
)  # fmt: skip
# A larger file is no script worth reading (a compiled program, a bundle, data).
MAX_SCRIPT_BYTES = 1 << 20
# The names of shell scripts without a "#!" (a sourced library of functions).
SHELL_SUFFIXES = (".sh", ".bash")

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


def is_shell_script(path: str, head: str) -> bool:
    """``head`` (the start of the file at ``path``) is a shell script's: its ``#!`` names
    a shell (directly or through ``env``), or it has no ``#!`` and a shell's suffix."""
    if head.startswith("\x7fELF"):
        return False
    if head.startswith("#!"):
        words = head[2:].split("\n", 1)[0].split()
        return any(posixpath.basename(w) in SHELLS for w in words[:2])
    return path.endswith(SHELL_SUFFIXES)


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
        if name in SHELLS:
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
# Java's argument array: Runtime.exec(new String[] {"convert", in, out}).
_JAVA_ARRAY = re.compile(r"\bnew\s+String\s*\[\s*\]\s*\{\s*" + _STRING)
# Perl's piped open: the command after a "-|" or "|-" mode (open(my $in, "-|", "zcat",
# $f)), or a two-argument open whose string starts or ends with "|" ("sort -u |").
_HANDLE = r"""\bopen\s*\(?\s*(?:(?:my|our|local)\s+)?[$\w:]+\s*,\s*"""
_PIPE_OPEN_LIST = re.compile(_HANDLE + r"""["'](?:-\||\|-)["']\s*,\s*""" + _STRING)
_PIPE_OPEN = re.compile(_HANDLE + _STRING)
# Perl, Ruby and PHP run a backtick string (and Perl's qx{}, Ruby's %x()) as a command.
_BACKTICKS = re.compile(r"`([^`]*)`|\bqx\s*\{([^}]*)\}|%x\(([^)]*)\)")
_BACKTICK_LANGUAGES = ("perl", "ruby", "php")
_BACKTICK_SUFFIXES = (".pl", ".pm", ".cgi", ".rb", ".php")


def runs_backticks(script: str, interpreters: list[str]) -> bool:
    """Whether the script at path ``script``, run by ``interpreters`` (base names from its
    ``#!`` line), is in a language that runs backtick strings (by suffix or interpreter)."""
    return script.endswith(_BACKTICK_SUFFIXES) or any(
        n.startswith(_BACKTICK_LANGUAGES) for n in interpreters
    )


def _quoted(match: re.Match[str]) -> str:
    """The string a command-string match holds (whichever quoting group matched)."""
    return next((g for g in match.groups() if g is not None), "")


def quoted_commands(text: str, backticks: bool = False) -> list[str]:
    """The programs named in the command strings of a script's ``text`` (not a shell
    script), in order, each once: every command word (:func:`command_words`) of a string
    that opens a call's arguments or a list, or follows ``system``/``exec``, or is the
    ``-c`` argument of a shell in a list; with ``backticks`` (Perl, Ruby, PHP) those of
    every backtick string, ``qx{...}`` and ``%x(...)`` too; Java's ``new String[] {"cmd",
    ...}``; and Perl's piped ``open``
    (``open(my $in, "-|", "zcat", $f)``, ``open(OUT, "| sort -u")``).  A later list item
    or argument is no command (``["grep", "-c", "foo"]`` names ``grep``)."""
    found: dict[str, None] = {}
    matches = [*_QUOTED_COMMAND.finditer(text), *_SHELL_C.finditer(text)]
    matches += _JAVA_ARRAY.finditer(text)
    if backticks:
        matches += _BACKTICKS.finditer(text)
    matches += _PIPE_OPEN_LIST.finditer(text)
    strings = [_quoted(m) for m in matches]
    for match in _PIPE_OPEN.finditer(text):
        string = _quoted(match).strip()
        if string.startswith("|") or string.endswith("|"):
            strings.append(string.strip("|"))
    for string in strings:
        for word in command_words(string):
            found[word] = None
    return list(found)


# -- files a shell script sources ------------------------------------------------------

# ``.`` or ``source`` in a command's place, and the rest of the command (its file).
_SOURCE = re.compile(
    r"(?:^|[;&|{(]|\b(?:then|do|else))[ \t]*(?:\.|source)[ \t]+([^;\n]+)", re.MULTILINE
)
# The script's own directory, as scripts spell it: $(dirname $0), `dirname $0`, ${0%/*},
# $(dirname ${BASH_SOURCE[0]}), $(cd $(dirname $0) && pwd) (quotes already removed).
_SCRIPT_DIR = re.compile(
    r"^(?:\$\((?:cd\s+)?\$\(\s*dirname\s+\$\{?(?:0|BASH_SOURCE(?:\[0\])?)\}?\s*\)\s*(?:&&\s*pwd\s*)?\)"
    r"|\$\(\s*dirname\s+\$\{?(?:0|BASH_SOURCE(?:\[0\])?)\}?\s*\)"
    r"|`dirname\s+\$\{?0\}?`"
    r"|\$\{(?:0|BASH_SOURCE(?:\[0\])?)%/\*\})"
)


def sourced_paths(text: str, script: str) -> list[str]:
    """The files the shell script ``text`` (at path ``script``) sources with ``.`` or
    ``source``, in order, each once, as normalised absolute paths: a literal path
    (relative ones from the script's directory) or one below the script's own directory
    spelled with ``$0`` (``. "$(dirname "$0")/lib.sh"``, ``. "${0%/*}/lib.sh"``).  A file
    named through any other expansion (``. "$CONF"``) is no name.  Linear in the text."""
    here = posixpath.dirname(script) or "/"
    found: dict[str, None] = {}
    for match in _SOURCE.finditer(text):
        rest = match.group(1).replace('"', "").replace("'", "").strip()
        spelled_dir = _SCRIPT_DIR.match(rest)
        if spelled_dir:
            rest = here + rest[spelled_dir.end() :]
        word = rest.split()[0] if rest else ""
        if not word or "$" in word or "`" in word or "*" in word:
            continue
        found[posixpath.normpath(posixpath.join(here, word))] = None
    return list(found)
