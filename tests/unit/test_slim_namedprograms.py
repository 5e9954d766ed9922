"""program-named-programs: a compiled program that ran keeps what it runs by path."""

from __future__ import annotations

from pathlib import Path

from ocislim.slim.keeper import first_seeds
from ocislim.slim.keeprules import default_enabled
from ocislim.slim.namedprograms import NamedPrograms
from ocislim.slim.plan import Reason, Seed
from tests.synth import M
from tests.unit.slim_synth import keeper_over, tree_from

ELF = b"\x7fELF\x02\x01\x01"
DIFF = ELF + b"\x00usage\x00/usr/bin/pr\x00/usr/lib/x86_64-linux-gnu/libc.so.6\x00/etc/passwd\x00"
IMAGE = [
    M("usr/bin/diff", data=DIFF, mode=0o755),
    M("usr/bin/pr", data=ELF + b"\x00/bin/sh\x00", mode=0o755),
    M("usr/bin/dash", data=ELF, mode=0o755),
    M("usr/bin/sh", "symlink", link="dash"),
    M("usr/lib/x86_64-linux-gnu/libc.so.6", data=ELF, mode=0o755),
    M("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
    M("usr/bin/notes", data=b"#!/bin/sh\n/usr/bin/pr x\n", mode=0o755),
    M("usr/bin/quiet", data=ELF + b"/usr/bin/pr\x00", mode=0o755),  # not a C string
    M("bin", "symlink", link="usr/bin"),
]
FILES = {"/" + m.name: m.data for m in IMAGE if m.kind == "file"}


def is_program(path: str) -> bool:
    tree = tree_from(IMAGE)
    entry = tree.follow(path)
    return entry is not None and entry.kind == "file" and bool(entry.mode & 0o111)


def named(programs: list[str], enabled: frozenset[str] = default_enabled()) -> set[str]:
    tree = tree_from(IMAGE)
    seeds = NamedPrograms(tree, FILES.get, is_program, enabled).seeds(programs)
    assert all(s.reason.rule == "program-named-programs" for s in seeds)
    return {s.path for s in seeds}


def test_a_compiled_program_keeps_the_executables_it_names_by_path() -> None:
    # diff -l pipes through /usr/bin/pr; libc is the ELF pass's, /etc/passwd no program.
    assert named(["/usr/bin/diff"]) == {"/usr/bin/pr"}


def test_only_whole_c_strings_of_compiled_programs_count() -> None:
    assert named(["/usr/bin/notes"]) == set()  # a script: nested-scripts reads it
    assert named(["/usr/bin/quiet"]) == set()  # the path runs into other bytes


def test_each_program_is_read_once_and_the_rule_switches_off() -> None:
    tree = tree_from(IMAGE)
    rule = NamedPrograms(tree, FILES.get, is_program, default_enabled())
    assert [s.path for s in rule.seeds(["/usr/bin/pr"])] == ["/bin/sh"]
    assert rule.seeds(["/usr/bin/pr"]) == []
    off = default_enabled() - {"program-named-programs"}
    assert named(["/usr/bin/diff"], off) == set()


def test_what_it_keeps_counts_as_run_in_the_plan(tmp_path: Path) -> None:
    keeper, config, options = keeper_over(tmp_path, IMAGE, {"Entrypoint": ["/usr/bin/diff"]})
    ran = Seed("/usr/bin/diff", Reason("trace", process="diff", access=("exec",)))
    keeper.extend(first_seeds(keeper, config, options, [ran], [], lambda note: None))
    kept = set(keeper.plan().paths)
    # diff names pr; pr, counted as run, names /bin/sh: kept with its target.
    assert {"/usr/bin/pr", "/usr/bin/sh", "/usr/bin/dash"} <= kept
