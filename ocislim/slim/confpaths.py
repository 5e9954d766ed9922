"""The ``config-named-paths`` rule: what a program's configuration files name.

A server reads its configuration at start, but the files and directories the
configuration names (a document root, an alias, an error page, a script directory)
are read only when a request reaches them: a probe of ``GET /`` keeps the index page
and drops the rest of the site.  This rule reads each configuration file the run
touched and keeps every existing absolute path it names: a file as itself, a
directory whole, unless it is a system directory or a root of many packages (the
same boundary as ``app-whole``) or holds more than :data:`MAX_DIR_ENTRIES` entries.

A configuration file is a touched text file below ``/etc/NAME/`` or
``/usr/local/etc/``, or one whose name says it is one (``*.conf``, ``*.cfg``,
``*.ini``, ``*.toml``, ``*.yaml``, ``*.yml``, ``Caddyfile``), outside the system's
shared configuration (``/etc/ssl``, ``/etc/fonts``, ``/etc/ld.so.conf.d``, ...).
Comment lines (``#``, ``;``, ``//``) are not read.

The ``config-named-commands`` rule reads the same files for the programs they tell a
program to run: the value of a ``command``, ``cmd``, ``exec`` or ``program`` key or
attribute (``ExecStart`` too), read as a shell command string
(:func:`~ocislim.slim.commandtext.command_words`).  ImageMagick runs ``dot``, ``ffmpeg``
or ``gs`` for a format only its ``delegates.xml`` names (``command="&quot;dot&quot;
-Tsvg ..."``); supervisord starts the ``command=`` of each program.  What it finds on
the ``PATH`` counts as run.  Pure apart from ``read_text`` and ``find_program``.
"""

from __future__ import annotations

import html
import posixpath
import re
from collections.abc import Callable, Collection, Iterable

from ocislim.errors import UnsafeArchiveError
from ocislim.layers.tree import Entry, FileTree
from ocislim.slim.apprules import PACKAGE_ROOTS, SYSTEM_DIRS, is_below, named_program
from ocislim.slim.commandtext import absolute_paths, command_words
from ocislim.slim.langrules import LangRule
from ocislim.slim.patterns import PatternSet
from ocislim.slim.plan import Reason, Seed

CONF_PATH_RULES: tuple[LangRule, ...] = (
    LangRule(
        "config-named-paths",
        "every existing path a configuration file the run read names (a document root, "
        "an alias, an error page): a file as itself, a directory whole (never a system "
        "directory or package root)",
    ),
    LangRule(
        "config-named-commands",
        "the programs a configuration file the run read tells a program to run (the "
        "value of a command, cmd, exec or program key or attribute: ImageMagick's "
        "delegates, supervisord's programs) are kept and count as run",
    ),
)

MAX_CONFIG_BYTES = 1 << 20
MAX_DIR_ENTRIES = 50_000
_CONFIG_PLACES = PatternSet(("/etc/*/*", "/etc/*/**/*", "/usr/local/etc/**"))
_CONFIG_NAMES = PatternSet(
    ("*.conf", "*.cfg", "*.ini", "*.toml", "*.yaml", "*.yml", "Caddyfile", "*.caddyfile")
)
# The system's shared configuration: it names system places, not an application's.
_SHARED_CONFIG = PatternSet(
    (
        "/etc/ssl/**",
        "/etc/fonts/**",
        "/etc/ld.so.conf*",
        "/etc/ld.so.conf.d/**",
        "/etc/alternatives/**",
        "/etc/apt/**",
        "/etc/dpkg/**",
        "/etc/pam.d/**",
        "/etc/security/**",
        "/etc/systemd/**",
        "/etc/init.d/**",
        "/etc/logrotate.d/**",
        "/etc/cron*/**",
        "/etc/default/**",
        "/etc/profile.d/**",
        "/etc/X11/**",
        "/etc/java-*/**",
        "/etc/python*/**",
        "/etc/perl/**",
    )
)
_BOUNDARIES = PatternSet(PACKAGE_ROOTS)
_NOT_APPLICATION = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp")
_COMMENT_MARKS = ("#", ";", "//")


def is_config_file(path: str) -> bool:
    """Whether ``path`` is read as an application's configuration file."""
    if _SHARED_CONFIG.match(path):
        return False
    return bool(_CONFIG_PLACES.match(path) or _CONFIG_NAMES.match(path))


def named_paths(text: str) -> list[str]:
    """The absolute paths a configuration text names outside comment lines, in order,
    each once (a trailing ``/`` dropped)."""
    found: dict[str, None] = {}
    for line in text.splitlines():
        if line.lstrip().startswith(_COMMENT_MARKS):
            continue
        for path in absolute_paths(line):
            found.setdefault(posixpath.normpath(path), None)
    return list(found)


_COMMAND_KEYS = r"(?:command|cmd|exec|program|ExecStart(?:Pre|Post)?|ExecReload)"
# An attribute (delegates.xml: command="&quot;dot&quot; -Tsvg ..."), quoted either way.
_COMMAND_ATTRIBUTE = re.compile(
    r"(?<![\w.-])" + _COMMAND_KEYS + r"""\s*=\s*(?:"([^"\n]*)"|'([^'\n]*)')""", re.IGNORECASE
)
# A key at the start of a line (supervisord: command=gunicorn app:app), unquoted.
_COMMAND_LINE = re.compile(
    r"^[ \t]*" + _COMMAND_KEYS + r"""[ \t]*[=:][ \t]*([^"'\s].*)$""", re.IGNORECASE | re.MULTILINE
)


def named_commands(text: str) -> list[str]:
    """The programs a configuration text tells a program to run, in order, each once:
    the command words (:func:`~ocislim.slim.commandtext.command_words`) of every
    ``command``/``cmd``/``exec``/``program``/``ExecStart`` value, an attribute's with
    its XML entities decoded, outside comment lines and XML comments."""
    found: dict[str, None] = {}
    text = _without_xml_comments(text)
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith(_COMMENT_MARKS))
    values = [a or b for a, b in _COMMAND_ATTRIBUTE.findall(code)]
    values += _COMMAND_LINE.findall(code)
    for value in values:
        for word in command_words(html.unescape(value)):
            found.setdefault(word, None)
    return list(found)


def _without_xml_comments(text: str) -> str:
    """``text`` without its ``<!-- ... -->`` comments (an unclosed one runs to the end);
    linear in the text's length."""
    parts = []
    pos = 0
    while (start := text.find("<!--", pos)) != -1:
        parts.append(text[pos:start])
        end = text.find("-->", start + 4)
        pos = len(text) if end == -1 else end + 3
    parts.append(text[pos:])
    return "".join(parts)


class ConfigPaths:
    """The two rules' seeds for the configuration files among touched paths."""

    def __init__(
        self,
        tree: FileTree,
        read_text: Callable[[str], str | None],
        enabled: Collection[str],
        find_program: Callable[[str], str | None] = lambda name: None,
        is_program: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self._tree = tree
        self._read_text = read_text
        self._find_program = find_program
        self._is_program = is_program
        self._paths_on = "config-named-paths" in enabled
        self._commands_on = "config-named-commands" in enabled
        self._read: set[str] = set()  # configuration files already read

    def seeds(self, touched: Iterable[str]) -> list[Seed]:
        """Seeds for what the not yet read configuration files among ``touched`` name."""
        if not (self._paths_on or self._commands_on):
            return []
        out: list[Seed] = []
        for config in touched:
            if config in self._read or not is_config_file(config):
                continue
            self._read.add(config)
            entry = self._tree.get(config)
            if entry is None or entry.data is None or entry.size > MAX_CONFIG_BYTES:
                continue
            text = self._read_text(config)
            if not text or "\0" in text:
                continue
            if self._paths_on:
                why = Reason("lazy", detail=f"named by {config}", rule="config-named-paths",
                             by=config)  # fmt: skip
                for path in named_paths(text):
                    out += self._seeds_for(path, why)
            if self._commands_on:
                out += self._command_seeds(config, text)
        return out

    def _command_seeds(self, config: str, text: str) -> list[Seed]:
        why = Reason("lazy", detail=f"a command {config} names", rule="config-named-commands",
                     by=config)  # fmt: skip
        out = []
        for word in named_commands(text):
            program = named_program(word, self._find_program, self._is_program)
            if program is not None:
                out.append(Seed(program, why))
        return out

    def _seeds_for(self, path: str, why: Reason) -> list[Seed]:
        if path.startswith(_NOT_APPLICATION) and is_below(path, _NOT_APPLICATION):
            return []
        try:
            resolved = self._tree.resolve(path)
        except UnsafeArchiveError:
            return []
        entry = self._tree.get(resolved)
        if entry is None:
            return []
        if not entry.is_dir:
            return [Seed(path, why)]  # a link, and what it names
        if _is_boundary(resolved) or _is_boundary(path) or _too_big(entry):
            return []
        return [Seed(path, why), Seed(resolved, why, recursive=True)]


def _is_boundary(path: str) -> bool:
    return path in SYSTEM_DIRS or _BOUNDARIES.match(path) is not None


def _too_big(directory: Entry) -> bool:
    """Whether ``directory`` holds more than :data:`MAX_DIR_ENTRIES` entries (counted
    until the limit is passed)."""
    count = 0
    stack = [directory]
    while stack:
        children = stack.pop().children or {}
        count += len(children)
        if count > MAX_DIR_ENTRIES:
            return True
        stack += [c for c in children.values() if c.is_dir]
    return False
