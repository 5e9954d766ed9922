"""program-aliases: a program that ran keeps its other names on PATH."""

from __future__ import annotations

from ocislim.slim.aliases import ProgramAliases
from ocislim.slim.plan import Planner
from tests.synth import M
from tests.unit.slim_synth import tree_from

ELF = b"\x7fELF"
MEMBERS = [
    M("usr/bin/dot", data=ELF, mode=0o755),
    M("usr/bin/neato", kind="symlink", link="dot"),
    M("usr/bin/circo", kind="symlink", link="/usr/bin/dot"),
    M("usr/bin/mawk", data=ELF, mode=0o755),
    M("etc/alternatives/awk", kind="symlink", link="/usr/bin/mawk"),
    M("usr/bin/awk", kind="symlink", link="/etc/alternatives/awk"),
    M("usr/bin/perl", data=ELF, mode=0o755),
    M("usr/bin/perl5.36.0", kind="hardlink", link="usr/bin/perl"),
    M("usr/bin/loop", kind="symlink", link="loop"),
    M("usr/bin/X11", kind="symlink", link="."),
    M("usr/bin/notes", kind="symlink", link="/usr/share/notes.txt"),
    M("usr/share/notes.txt", data=b"text", mode=0o644),
    M("usr/lib/tool/dot-alias", kind="symlink", link="/usr/bin/dot"),  # not on PATH
    M("bin", kind="symlink", link="usr/bin"),
]  # fmt: skip


def kept(programs: list[str], enabled: frozenset[str] = frozenset({"program-aliases"})) -> set[str]:
    tree = tree_from(MEMBERS)
    planner = Planner(tree)
    planner.add(ProgramAliases(tree, ["PATH=/bin:/usr/bin"], enabled).seeds(programs))
    return set(planner.kept_paths)


def test_a_program_keeps_the_links_on_path_that_lead_to_it() -> None:
    result = kept(["/usr/bin/dot"])
    assert {"/usr/bin/neato", "/usr/bin/circo"} <= result
    assert "/usr/lib/tool/dot-alias" not in result  # only PATH directories are names
    assert "/usr/bin/awk" not in result and "/usr/bin/perl5.36.0" not in result


def test_alternatives_chains_and_hardlinks_are_names_too() -> None:
    result = kept(["/usr/bin/mawk"])
    assert {"/usr/bin/awk", "/etc/alternatives/awk"} <= result
    assert "/usr/bin/perl5.36.0" in kept(["/usr/bin/perl"])
    assert "/usr/bin/perl" in kept(["/usr/bin/perl5.36.0"])


def test_loops_non_programs_and_the_rule_off_keep_nothing() -> None:
    assert kept(["/usr/share/notes.txt"]) == set()  # a link to data is no program's name
    assert kept(["/usr/bin/dot"], frozenset()) == set()
    assert kept(["/usr/bin/nothing"]) == set()
