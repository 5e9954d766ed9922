"""The ``program-named-programs`` rule: the programs a compiled program runs by path.

A compiled program that runs another names it in its bytes, and when it names it by
absolute path the name is a C string there: GNU diff's ``-l`` pipes through
``/usr/bin/pr``, GNU tar's remote archives run ``/usr/sbin/rmt``, util-linux's
``script`` and ``flock`` run ``/bin/sh``.  (A program that joins a directory and a name at
run time, as gpg starts its agent, spells neither: ``tool-helpers`` lists those.)  The probe
took none of those paths, so the trace never saw the helper run.  This rule reads every
compiled program that ran (traced ``exec``) or that a rule counts as run, and keeps each
executable of the image that one of its strings spells whole: a NUL-terminated string
``/bin/...``, ``/sbin/...``, ``/usr/bin/...``, ``/usr/sbin/...``, ``/usr/local/bin/...``,
``/usr/lib/...``, ``/usr/libexec/...``; shared objects are left to the ELF pass and the
plugin rules.  What it keeps counts as run, so a helper's own helpers follow.

Programs a compiled program runs by name through ``PATH`` (``"gzip"``) are not read
here: a bare word in a binary is as often a message as a command (``tar-compressors``
names GNU tar's).  Each program is read once.

Pure apart from the ``read_bytes`` callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable

from ocislim.layers.tree import FileTree
from ocislim.slim.apprules import rule_reason
from ocislim.slim.langrules import LangRule
from ocislim.slim.plan import Seed

NAMED_PROGRAM_RULES: tuple[LangRule, ...] = (
    LangRule(
        "program-named-programs",
        "a compiled program that ran keeps the executables its bytes name by absolute "
        "path (diff -l runs /usr/bin/pr, tar runs /usr/sbin/rmt, script runs /bin/sh), "
        "each counted as run",
    ),
)

# A NUL-terminated C string naming a file in a program directory.
_NAMED_PROGRAM = re.compile(
    rb"(?<=\x00)(/(?:usr/(?:local/)?)?(?:s?bin|libexec|lib(?:32|64)?)/[\w.+@-]+(?:/[\w.+@-]+)*)\x00"
)
_ELF_MAGIC = b"\x7fELF"
# Larger programs exist (a JVM's libjvm is a library, not read here); a program this
# size is read whole once.
MAX_PROGRAM_BYTES = 256 << 20

ReadBytes = Callable[[str], "bytes | None"]


class NamedPrograms:
    """The rule's seeds; remembers the programs read, so each is read once."""

    def __init__(
        self,
        tree: FileTree,
        read_bytes: ReadBytes,
        is_program: Callable[[str], bool],
        enabled: Collection[str],
    ) -> None:
        self._tree = tree
        self._read_bytes = read_bytes
        self._is_program = is_program
        self._on = "program-named-programs" in enabled
        self._read: set[str] = set()

    def seeds(self, programs: Iterable[str]) -> list[Seed]:
        """The executables the compiled programs among ``programs`` (canonical paths
        that ran or count as run) name by absolute path; scripts and libraries name
        nothing here."""
        if not self._on:
            return []
        seeds: list[Seed] = []
        for program in programs:
            if program in self._read:
                continue
            self._read.add(program)
            entry = self._tree.get(program)
            if entry is None or entry.kind != "file" or entry.size > MAX_PROGRAM_BYTES:
                continue
            data = self._read_bytes(program)
            if not data or not data.startswith(_ELF_MAGIC):
                continue
            why = rule_reason("program-named-programs", f"named by {program}", program)
            for path in sorted({m.decode() for m in _NAMED_PROGRAM.findall(data)}):
                if path != program and self._names_program(path):
                    seeds.append(Seed(path, why))
        return seeds

    def _names_program(self, path: str) -> bool:
        """``path`` leads to an executable of the image that is not a shared object."""
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".so") or ".so." in name:
            return False
        return self._is_program(path)
