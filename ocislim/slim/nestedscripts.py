"""The ``nested-scripts`` rule: the programs named by the scripts behind the entrypoint.

``script-commands`` reads the scripts the image's command names.  Real images run more
scripts than that: an entrypoint runs the scripts of a ``/docker-entrypoint.d``,
sources a library of shell functions, calls its own ``bin/backup.sh``; a tool such
as Debian's ``xzgrep`` picks ``gzip``, ``bzip2``, ``zstd`` or ``xz`` by the file it is
given.  Each of those scripts took one branch during the probe.  This rule reads them
as ``script-commands`` reads the entrypoint's (:func:`~ocislim.slim.apprules.script_command_seeds`):

- every script the trace saw run, and every shell script a shell read (sourced: a
  ``#!`` naming a shell, or a ``.sh`` or ``.bash`` name, as a library of functions has),
- every script (any language) another rule counts as run: a script the entrypoint
  names by path keeps the programs it names in turn,
- every script of the application's own trees (``app-whole``): its shell scripts, its
  executables, and its Python, JavaScript, Perl, Ruby, PHP, Java and Lua sources
  (``subprocess.run(["gzip", ...])`` in a module only an unprobed route imports), and
  its compiled Java, the classes and jars of the trees (:mod:`~ocislim.slim.classfiles`:
  ``new ProcessBuilder("convert", ...)`` in a jar),
- every file one of those shell scripts, or the entrypoint's, sources by a name it
  spells (``. /etc/default/app``, ``. "$(dirname "$0")/lib.sh"``): kept, and read as a
  shell script whatever its name, though the branch that sources it never ran.

What it keeps counts as run, so the chain goes on until no script adds a program.
Compiled programs and files over :data:`~ocislim.slim.commandtext.MAX_SCRIPT_BYTES`
are never read here (``binary-named-paths`` reads the application's own programs).  Each
script is read once.

Pure: depends on the merged tree and the functions given.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Collection, Iterable

from ocislim.layers.tree import Entry, FileTree
from ocislim.slim.apprules import (
    APP_SOURCE_SUFFIXES,
    app_sources,
    named_program,
    rule_reason,
    script_command_seeds,
)
from ocislim.slim.classfiles import MAX_JAR_BYTES, class_commands, jar_commands
from ocislim.slim.commandtext import (
    MAX_SCRIPT_BYTES,
    SHELL_SUFFIXES,
    SHELLS,
    command_words,
    is_shell_script,
    sourced_paths,
)
from ocislim.slim.langrules import LangRule
from ocislim.slim.plan import Seed

NESTED_RULES: tuple[LangRule, ...] = (
    LangRule(
        "nested-scripts",
        "the programs named by every script that ran, every shell script a shell sourced, "
        "every script another rule counts as run, the application tree's own scripts "
        "and the files a shell script sources by name are kept (read as script-commands "
        "reads the entrypoint's) and count as run",
    ),
)

ReadText = Callable[[str], "str | None"]
ReadBytes = Callable[[str], "bytes | None"]
FindProgram = Callable[[str], "str | None"]


class NestedScripts:
    """The rule's seeds; remembers the scripts read, so each is read once."""

    def __init__(
        self,
        tree: FileTree,
        read_text: ReadText,
        find_program: FindProgram,
        is_program: Callable[[str], bool],
        enabled: Collection[str],
        read_bytes: ReadBytes = lambda path: None,
    ) -> None:
        self._tree = tree
        self._read_text = read_text
        self._read_bytes = read_bytes
        self._find_program = find_program
        self._is_program = is_program
        self._on = "nested-scripts" in enabled
        self._read: set[str] = set()
        self._compiled: set[str] = set()  # classes and jars read for their commands
        self._shells: dict[str, bool] = {}
        self._sourced_files: set[str] = set()

    def seeds(self, sourced: Iterable[str], run: Iterable[str] = ()) -> list[Seed]:
        """The programs named by the shell scripts among ``sourced`` (files a shell read:
        :meth:`is_shell_process`) and by the scripts of any language among ``run`` (run
        by the trace, or counted as run)."""
        if not self._on:
            return []
        return self._commands([*((p, True) for p in sourced), *((p, False) for p in run)])

    def is_shell_process(self, label: str | None) -> bool:
        """The traced process ``label`` (its argv, as the trace names it) is a shell: its
        program is a shell (``sh -c ...``) or a shell script (``/app/run.sh start``).
        A file such a process read is sourced or run by it; a file another program read
        (git copying its ``#!/bin/sh`` sample hooks) is data."""
        program = (label or "").split(" ", 1)[0]
        if posixpath.basename(program) in SHELLS:
            return True
        if program not in self._shells:
            text = self._text(program, shell_only=True) if program else None
            self._shells[program] = text is not None
        return self._shells[program]

    def app_seeds(self, roots: Iterable[str], named: Collection[str]) -> list[Seed]:
        """The programs named by the scripts of the application trees ``roots``, and the
        files the scripts in ``named`` source (their commands are ``script-commands``')."""
        if not self._on:
            return []
        sourced: list[Seed] = []
        for script in named:
            if script not in self._read:
                self._read.add(script)
                sourced += self._sourced(script, self._text(script, shell_only=False) or "")
        candidates = [(p, False) for p in self._tree_scripts(roots)]
        compiled = app_sources(self._tree, roots, _is_compiled_java)
        return [*sourced, *self._commands(candidates), *self._java_commands(compiled)]

    def _java_commands(self, paths: Iterable[str]) -> list[Seed]:
        """The programs the classes and jars at ``paths`` run (each read once): every
        command word of their command strings that is an executable of the image (an
        absolute path) or a program on the ``PATH``."""
        seeds: list[Seed] = []
        seen: set[str] = set()
        for path in paths:
            entry = self._tree.follow(path)
            if path in self._compiled or entry is None or entry.size > MAX_JAR_BYTES:
                continue
            self._compiled.add(path)
            data = self._read_bytes(path) or b""
            commands = jar_commands(data) if path.endswith(".jar") else class_commands(data)
            why = rule_reason("nested-scripts", f"run by the compiled Java {path}", path)
            for word in (w for c in commands for w in command_words(c)):
                if word in seen:
                    continue
                seen.add(word)
                found = named_program(word, self._find_program, self._is_program)
                if found is not None:
                    seeds.append(Seed(found, why))
        return seeds

    def _commands(self, candidates: Iterable[tuple[str, bool]]) -> list[Seed]:
        """What the scripts among ``candidates`` (path, whether only a shell script
        counts) name and source; each script not read before is read once."""
        named: list[Seed] = []
        sourced: list[Seed] = []
        seen: set[str] = set()
        for path, shell_only in candidates:
            if path in self._read:
                continue
            text = self._text(path, shell_only=shell_only)
            if text is None:
                continue
            self._read.add(path)
            named += script_command_seeds(
                [path],
                {path: text}.get,
                self._find_program,
                self._is_program,
                rule="nested-scripts",
                is_shell=self._is_shell,
                seen=seen,
            )
            sourced += self._sourced(path, text)
        return [*named, *sourced]

    def _is_shell(self, path: str, head: str) -> bool:
        return path in self._sourced_files or is_shell_script(path, head)

    def _sourced(self, script: str, text: str) -> list[Seed]:
        """The files the shell script ``script`` (its ``text``) sources by a name it spells
        (:func:`~ocislim.slim.commandtext.sourced_paths`): kept, and read as shell scripts
        in turn (the seeds count as run), whichever branch sources them."""
        if not self._is_shell(script, text[:256]):
            return []
        seeds: list[Seed] = []
        for path in sourced_paths(text, script):
            entry = self._tree.follow(path)
            if path != script and entry is not None and entry.kind == "file":
                self._sourced_files.add(path)
                why = rule_reason("nested-scripts", f"sourced by the script {script}", script)
                seeds.append(Seed(path, why))
        return seeds

    def _text(self, path: str, *, shell_only: bool) -> str | None:
        """The text of the script at ``path`` (None: not a script of the kind asked for,
        or too large)."""
        entry = self._tree.follow(path)
        if entry is None or entry.kind != "file" or entry.size > MAX_SCRIPT_BYTES:
            return None
        text = self._read_text(path)
        if not text or text.startswith("\x7fELF"):
            return None
        if shell_only and not is_shell_script(path, text[:256]):
            return None
        return text

    def _tree_scripts(self, roots: Iterable[str]) -> list[str]:
        """The application trees' scripts (:func:`~ocislim.slim.apprules.app_sources`):
        sources by suffix (:data:`COMMAND_SOURCE_SUFFIXES`) and executable files (read
        for a ``#!``)."""
        return app_sources(self._tree, roots, _maybe_script)


# Sources read for the commands they run, beyond those whose imports are read.
COMMAND_SOURCE_SUFFIXES = (*APP_SOURCE_SUFFIXES, *SHELL_SUFFIXES, ".php", ".java", ".lua")


def _maybe_script(name: str, entry: Entry) -> bool:
    return name.endswith(COMMAND_SOURCE_SUFFIXES) or bool(entry.mode & 0o111)


def _is_compiled_java(name: str, entry: Entry) -> bool:
    return name.endswith((".class", ".jar")) and not entry.mode & 0o111
