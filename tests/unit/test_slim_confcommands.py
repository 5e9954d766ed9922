"""config-named-commands: the programs a configuration file tells a program to run."""

from __future__ import annotations

from ocislim.slim.confpaths import ConfigPaths, named_commands
from ocislim.slim.plan import Planner
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from

DELEGATES = """\
<delegatemap>
  <delegate decode="dot" command="&quot;dot&quot; -Tsvg &quot;%i&quot; -o &quot;%o&quot;"/>
  <delegate decode="mpeg:decode" command="&quot;ffmpeg&quot; -nostdin -v -1 -i &quot;%i&quot;"/>
  <!-- <delegate decode="pdf" command="&quot;gs&quot; -q"/> -->
  <delegate decode="https" command='"curl" -s -k -L -o "%o" "https:%M"'/>
</delegatemap>
"""
SUPERVISOR = """\
[program:web]
command=gunicorn --bind 0.0.0.0:8000 app:app
; command=celery worker
[program:cron]
command = /usr/sbin/cron -f
"""
ELF = b"\x7fELF"
MEMBERS = [
    M("etc/ImageMagick-6/delegates.xml", data=DELEGATES.encode()),
    M("etc/supervisor/conf.d/app.conf", data=SUPERVISOR.encode()),
    *[M(f"usr/bin/{n}", data=ELF, mode=0o755) for n in ("dot", "ffmpeg", "gs", "curl", "celery")],
    M("usr/local/bin/gunicorn", data=b"#!/usr/bin/python3\n", mode=0o755),
    M("usr/sbin/cron", data=ELF, mode=0o755),
    M("usr/bin/notes", data=b"not a program"),
]


def kept(touched: list[str], enabled: frozenset[str]) -> set[str]:
    tree = tree_from(MEMBERS)
    paths = {"/usr/bin", "/usr/local/bin"}

    def find(name: str) -> str | None:
        found = [f"{d}/{name}" for d in sorted(paths) if tree.get(f"{d}/{name}") is not None]
        return found[0] if found else None

    def is_program(path: str) -> bool:
        entry = tree.follow(path)
        return entry is not None and entry.kind == "file" and bool(entry.mode & 0o111)

    planner = Planner(tree)
    planner.add(ConfigPaths(tree, reader(MEMBERS), enabled, find, is_program).seeds(touched))
    return set(planner.kept_paths)


def test_the_commands_a_configuration_names_are_read_as_shell_strings() -> None:
    assert named_commands(DELEGATES) == ["dot", "ffmpeg", "curl"]  # not the commented gs
    assert named_commands(SUPERVISOR) == ["gunicorn", "/usr/sbin/cron"]


def test_the_programs_are_kept_and_the_rule_can_be_off() -> None:
    on = frozenset({"config-named-commands"})
    result = kept(["/etc/ImageMagick-6/delegates.xml", "/etc/supervisor/conf.d/app.conf"], on)
    assert {"/usr/bin/dot", "/usr/bin/ffmpeg", "/usr/bin/curl"} <= result
    assert {"/usr/local/bin/gunicorn", "/usr/sbin/cron"} <= result
    assert not {"/usr/bin/gs", "/usr/bin/celery"} & result  # commented out
    assert kept(["/etc/ImageMagick-6/delegates.xml"], frozenset()) == set()
    # config-named-paths alone keeps what is spelled by absolute path, not a command name.
    paths_only = kept(["/etc/supervisor/conf.d/app.conf"], frozenset({"config-named-paths"}))
    assert "/usr/local/bin/gunicorn" not in paths_only and "/usr/sbin/cron" in paths_only
