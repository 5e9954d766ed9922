"""nested-scripts: the scripts behind the entrypoint keep the programs they name."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

from ocislim.slim.classfiles import CLASS_MAGIC
from ocislim.slim.commandtext import is_shell_script, sourced_paths
from ocislim.slim.keeper import first_seeds
from ocislim.slim.plan import Reason, Seed
from tests.synth import M
from tests.unit.slim_synth import keeper_over

ELF = b"\x7fELF"
XZGREP = b"""#!/bin/sh
xz='xz --format=auto'
grep=${GREP:-grep}
case $1 in
  *.gz) uncompress="gzip -cdf";;
  *.bz2) uncompress='bzip2 -cdf';;
  *) uncompress="$xz -cdf";;
esac
$uncompress -- "$1" | $grep "$2"
"""
PROGRAMS = (
    "xz", "gzip", "bzip2", "grep", "zstd", "logger", "sort", "uniq", "tar", "cpio", "perl", "lz4",
    "rsync", "zip",
)  # fmt: skip


def members() -> list[M]:
    return [
        M("bin/sh", data=ELF, mode=0o755),
        *[M(f"usr/bin/{name}", data=ELF, mode=0o755) for name in PROGRAMS],
        M("usr/bin/xzgrep", data=XZGREP, mode=0o755),
        M("usr/share/perl/5.36/POSIX.pm", data=b"1;"),
        M("usr/lib/tool/functions.sh", data=b'unpack() { lz4 -dc "$1"; }\n'),
        M("usr/lib/python3/dist-packages/mod.py", data=b'subprocess.run(["cpio", "-i"])\n'),
        M("usr/local/bin/helper", data=b"#!/bin/sh\nperl -e 'print 1'\n", mode=0o755),
        M(
            "app/entry.sh",
            data=b"#!/bin/sh\n. /app/lib/common.sh\n"
            b"[ -r /etc/default/tool ] && . /etc/default/tool\n"
            b'helper\nexec /app/bin/report.sh "$@"\n',
            mode=0o755,
        ),
        M("app/lib/common.sh", data=b'log() { logger -t app "$*"; }\n. "${0%/*}/../etc/env"\n'),
        M("app/etc/env", data=b'TOOL_OPTS="--fast"\n'),
        M("etc/default/tool", data=b'TOOL_OPTS="-q"\npack() { rsync -a "$1" /backup; }\n'),
        M("app/bin/report.sh", data=b'#!/bin/sh\nsort "$1" | uniq -c\n', mode=0o755),
        M("app/tools/pack.py", data=b'def pack(p):\n    subprocess.run(["tar", "-czf", p])\n'),
        M("app/lib/Export.php", data=b"<?php\nfunction export($f) { return `zip -q - $f`; }\n"),
    ]


def plan(tmp_path: Path, traced: list[Seed], disable: tuple[str, ...] = ()) -> set[str]:
    keeper, config, options = keeper_over(
        tmp_path, members(), {"Entrypoint": ["/app/entry.sh"]}, disable
    )
    keeper.extend(first_seeds(keeper, config, options, traced, [], lambda note: None))
    return set(keeper.plan().paths)


def traced(path: str, access: str, process: str = "sh") -> Seed:
    return Seed(path, Reason("trace", process=process, access=(access,)))


def test_a_shell_script_that_ran_keeps_every_program_its_branches_name(tmp_path: Path) -> None:
    kept = plan(tmp_path, [traced("/usr/bin/xzgrep", "exec")])
    # Held in variables, chosen by the file's suffix: the probe took one branch.
    assert {"/usr/bin/gzip", "/usr/bin/bzip2", "/usr/bin/xz", "/usr/bin/grep"} <= kept
    off = plan(tmp_path / "off", [traced("/usr/bin/xzgrep", "exec")], ("nested-scripts",))
    assert "/usr/bin/bzip2" not in off


def test_a_sourced_library_and_the_application_trees_scripts_are_read(tmp_path: Path) -> None:
    kept = plan(tmp_path, [traced("/usr/lib/tool/functions.sh", "read")])
    assert "/usr/bin/lz4" in kept  # a sourced .sh has no #!
    assert "/usr/bin/logger" in kept  # /app/lib/common.sh, in the application's tree
    assert "/usr/bin/tar" in kept  # a command string of the application's Python module
    assert "/usr/bin/zip" in kept  # a PHP file's backticks
    # Sourced by a shell script's process too; a shell script another program read (git
    # copies its sample hooks) is data, and so is a Python module a shell read.
    by_script = traced("/usr/lib/tool/functions.sh", "read", "/app/entry.sh start")
    assert "/usr/bin/lz4" in plan(tmp_path / "script", [by_script])
    copied = traced("/usr/lib/tool/functions.sh", "read", "git init -q")
    assert "/usr/bin/lz4" not in plan(tmp_path / "git", [copied])
    module = traced("/usr/lib/python3/dist-packages/mod.py", "read")
    assert "/usr/bin/cpio" not in plan(tmp_path / "py", [module])


def test_a_file_a_script_sources_is_kept_and_read_as_shell(tmp_path: Path) -> None:
    kept = plan(tmp_path, [])
    # entry.sh sources it only when it is there: a branch the probe need not take.
    assert {"/etc/default/tool", "/usr/bin/rsync"} <= kept
    off = plan(tmp_path / "off", [], ("nested-scripts",))
    assert not {"/etc/default/tool", "/usr/bin/rsync"} & off


def test_a_script_counted_as_run_is_read_in_turn_and_fires_runtime_rules(tmp_path: Path) -> None:
    kept = plan(tmp_path, [])
    assert {"/usr/bin/sort", "/usr/bin/uniq"} <= kept  # report.sh, which entry.sh runs
    assert "/usr/share/perl/5.36/POSIX.pm" in kept  # helper runs perl: perl-inc fires
    off = plan(tmp_path / "off", [], ("nested-scripts",))
    assert not {"/usr/bin/sort", "/usr/bin/logger", "/usr/bin/perl"} & off
    assert "/app/bin/report.sh" in off  # script-commands still keeps what entry.sh names


SOURCING = """#!/bin/sh
. /app/lib/common.sh
if [ -f x ]; then . ./extra.sh; fi
source "$(dirname "$0")/funcs.sh"
. "${0%/*}/more.sh" ; echo hi
. "$(cd "$(dirname "$0")" && pwd)/deep.sh"
. "$CONF"
. /etc/default/app && run
ls -la . | grep x
cd . && true
"""


def test_shell_scripts_and_what_they_source_are_known_by_their_text() -> None:
    assert is_shell_script("/x", "#!/bin/bash -e\n")
    assert sourced_paths(SOURCING, "/app/bin/run.sh") == [
        "/app/lib/common.sh", "/app/bin/extra.sh", "/app/bin/funcs.sh", "/app/bin/more.sh",
        "/app/bin/deep.sh", "/etc/default/app",
    ]  # fmt: skip
    assert is_shell_script("/x", "#!/usr/bin/env sh\n")
    assert not is_shell_script("/x.sh", "#!/usr/bin/python3\n")
    assert is_shell_script("/lib/x.sh", "f() { :; }\n")
    assert not is_shell_script("/x", "f() { :; }\n")
    assert not is_shell_script("/x.sh", "\x7fELF")


def _jar(classes: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as jar:
        for name, data in classes.items():
            jar.writestr(name, data)
    return buffer.getvalue()


def _spawning_class(program: str) -> bytes:
    """A class file whose code stores the string ``program`` first in an array (as
    ``new ProcessBuilder(program, ...)`` compiles)."""
    pool = struct.pack(">BH", 1, len(program)) + program.encode() + struct.pack(">BH", 8, 1)
    return CLASS_MAGIC + struct.pack(">HHH", 0, 61, 3) + pool + b"\x03\x12\x02\x53"


def test_the_application_jar_keeps_the_programs_its_classes_run(tmp_path: Path) -> None:
    image = [
        *[M(f"usr/bin/{name}", data=ELF, mode=0o755) for name in PROGRAMS],
        M("app/app.jar", data=_jar({"app/Main.class": _spawning_class("rsync")})),
        M("app/lib/Tool.class", data=_spawning_class("/usr/bin/zip")),
    ]
    entry = {"Entrypoint": ["java", "-jar", "/app/app.jar"]}
    keeper, config, options = keeper_over(tmp_path / "on", image, entry)
    keeper.extend(first_seeds(keeper, config, options, [], [], lambda note: None))
    assert {"/usr/bin/rsync", "/usr/bin/zip"} <= set(keeper.plan().paths)
    assert "/usr/bin/lz4" not in keeper.plan().paths
    keeper, config, options = keeper_over(tmp_path / "off", image, entry, ("nested-scripts",))
    keeper.extend(first_seeds(keeper, config, options, [], [], lambda note: None))
    assert "/usr/bin/rsync" not in keeper.plan().paths


def test_a_pip_installed_command_has_its_package_read_as_the_application(tmp_path: Path) -> None:
    site = "usr/local/lib/python3.11/dist-packages"
    image = [
        *[M(f"usr/bin/{name}", data=ELF, mode=0o755) for name in PROGRAMS],
        M("usr/bin/python3.11", data=ELF, mode=0o755),
        M("usr/lib/python3.11/os.py", data=b"# os"),
        M(
            "usr/local/bin/tool",
            data=b"#!/usr/bin/python3.11\nimport sys\nfrom tool.cli import main\nmain()\n",
            mode=0o755,
        ),
        M(f"{site}/tool/__init__.py", data=b""),
        M(f"{site}/tool/cli.py", data=b"def main():\n    from tool import pack\n"),
        M(f"{site}/tool/pack.py", data=b'import subprocess\nsubprocess.run(["rsync", "-a"])\n'),
        M(f"{site}/other/__init__.py", data=b'import subprocess\nsubprocess.run(["lz4"])\n'),
    ]
    keeper, config, options = keeper_over(tmp_path, image, {"Entrypoint": ["/usr/local/bin/tool"]})
    keeper.extend(first_seeds(keeper, config, options, [], [], lambda note: None))
    kept = set(keeper.plan().paths)
    assert "/usr/bin/rsync" in kept  # run by the command's own package
    assert "/usr/bin/lz4" not in kept  # a package the command does not import
