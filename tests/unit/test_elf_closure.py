"""The deps analysis as a whole: object kinds, scripts, result shape, musl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocislim.elf import analyze, find_program
from ocislim.elf.closure import DepsAnalyzer
from ocislim.elf.elfinfo import DF_1_PIE
from ocislim.elf.programs import find_elf_objects, parse_shebang
from ocislim.elf.results import (
    ABSENT,
    DYNAMIC,
    INVALID,
    NOT_ELF,
    NOT_LOADABLE,
    SCRIPT,
    STATIC,
)
from ocislim.elf.rootpath import RootFS
from tests.unit.elf_synth import (
    ET_REL,
    craft_elf,
    merged_usr_glibc64,
    musl_tree,
    symlink,
    write,
)

T = "/usr/lib/x86_64-linux-gnu"
INTERP = "/lib64/ld-linux-x86-64.so.2"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    merged_usr_glibc64(tmp_path)
    write(tmp_path, "/usr/bin/dash", craft_elf(interp=INTERP, needed=("libc.so.6",)))
    symlink(tmp_path, "/bin", "usr/bin")
    symlink(tmp_path, "/usr/bin/sh", "dash")
    write(tmp_path, "/usr/bin/env", craft_elf(interp=INTERP, needed=("libc.so.6",)))
    write(tmp_path, "/usr/local/bin/tool", craft_elf(interp=INTERP, needed=("libc.so.6",)))
    write(tmp_path, "/usr/bin/tool", craft_elf(interp=INTERP, needed=("libc.so.6",)))
    write(tmp_path, "/app/run.sh", b"#!/bin/sh -e\necho hi\n")
    write(tmp_path, "/app/env.sh", b"#!/usr/bin/env -S tool --flag\n")
    write(tmp_path, "/app/lost.sh", b"#!/usr/bin/env nosuchtool\n")
    write(tmp_path, "/app/readme", b"plain text", 0o644)
    write(tmp_path, "/app/static", craft_elf(dynamic=False, elf_type=2))
    write(tmp_path, "/app/spie", craft_elf(flags_1=DF_1_PIE))
    write(tmp_path, "/app/obj.o", craft_elf(elf_type=ET_REL), 0o644)
    write(tmp_path, "/app/broken", craft_elf(needed=("libc.so.6",))[:60])
    return tmp_path


def test_parse_shebang() -> None:
    assert parse_shebang(b"#!/bin/sh\n") == ("/bin/sh", None)
    assert parse_shebang(b"#! /usr/bin/env  python3 -u \nrest") == ("/usr/bin/env", "python3 -u")
    assert parse_shebang(b"#!\n") is None
    assert parse_shebang(b"\x7fELF") is None


def test_object_kinds(tree: Path) -> None:
    paths = ["/app/readme", "/app/static", "/app/spie", "/app/obj.o", "/app/broken", "/nope"]
    result = analyze(tree, paths)
    kinds = {o.path: o.kind for o in result.objects}
    assert kinds == {
        "/app/readme": NOT_ELF,
        "/app/static": STATIC,
        "/app/spie": STATIC,
        "/app/obj.o": NOT_LOADABLE,
        "/app/broken": INVALID,
        "/nope": ABSENT,
    }
    assert "/nope" not in result.paths and "/app/static" in result.paths
    assert all(o.closure == () for o in result.objects)


def test_scripts_bring_their_interpreters(tree: Path) -> None:
    result = analyze(tree, ["/app/run.sh", "/app/env.sh"], ["PATH=/usr/local/bin:/usr/bin"])
    by_path = {o.path: o for o in result.objects}
    assert by_path["/app/run.sh"].kind == SCRIPT
    assert by_path["/app/run.sh"].interpreter == "/bin/sh"
    assert by_path["/bin/sh"].kind == DYNAMIC  # the interpreter is analysed too
    assert by_path["/usr/local/bin/tool"].kind == DYNAMIC  # env's program, found on PATH
    assert "/usr/bin/tool" not in by_path  # later on PATH: not the one env runs
    for path in ("/bin", "/usr/bin/sh", "/usr/bin/dash", "/usr/bin/env", f"{T}/libc.so.6"):
        assert path in result.paths, path
    assert [r.kind for r in result.reasons["/usr/bin/dash"]] == ["script-interpreter"]


def test_env_program_not_on_path_is_a_note(tree: Path) -> None:
    (report, env) = analyze(tree, ["/app/lost.sh"]).objects
    assert report.note == "'nosuchtool' not found on the image's PATH"
    assert env.path == "/usr/bin/env"


def test_find_program_uses_path_and_exec_bits(tree: Path) -> None:
    fs = RootFS(tree)
    assert find_program(fs, "tool", ["PATH=/usr/bin:/usr/local/bin"]) == "/usr/bin/tool"
    assert find_program(fs, "tool", {}) == "/usr/local/bin/tool"  # default PATH order
    assert find_program(fs, "readme", ["PATH=/app"]) is None  # not executable
    assert find_program(fs, "./run.sh", [], workdir="/app") == "/app/run.sh"
    assert find_program(fs, "missing", []) is None


def test_json_shape_and_determinism(tree: Path) -> None:
    first = analyze(tree, ["/usr/bin/env", "/app/run.sh"]).to_json()
    again = analyze(tree, ["/usr/bin/env", "/app/run.sh"]).to_json()
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert set(first) >= {"objects", "lazy", "paths", "reasons"}
    env = first["objects"][0]
    assert set(env) >= {"path", "interpreter", "needed", "closure", "missing"}
    assert env["needed"] == {"libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6"}
    assert env["closure"] == ["/lib/x86_64-linux-gnu/libc.so.6", INTERP]
    assert first["paths"] == sorted(first["paths"])
    assert set(first["reasons"]) == set(first["paths"])
    for entry in first["lazy"]:
        assert set(entry) >= {"path", "reason"}


def test_all_objects_scan(tree: Path) -> None:
    write(tree, "/.ocislim-unpack.json", b"{}", 0o644)
    found = find_elf_objects(RootFS(tree))
    assert "/app/obj.o" in found and "/usr/bin/env" in found
    assert "/usr/bin/sh" not in found  # symlinks are not scanned twice
    assert "/app/readme" not in found and "/.ocislim-unpack.json" not in found
    result = DepsAnalyzer(tree).analyze(all_objects=True)
    assert {o.path for o in result.objects} == set(found)


def test_musl_rules(tmp_path: Path) -> None:
    gcc = musl_tree(tmp_path, b"/opt/sys\n/usr/lib:/lib\n")
    root = gcc.root
    mb = gcc.library("libmb.so.1", cc="musl-gcc")
    ma = gcc.library("libma.so.1", needs=(mb,), cc="musl-gcc")
    ms = gcc.library("libms.so.1", cc="musl-gcc")
    gcc.place(ma, "/opt/mrp/libma.so.1")
    gcc.place(mb, "/opt/mrp/libmb.so.1")  # musl inherits RUNPATH, unlike glibc
    gcc.place(ms, "/opt/sys/libms.so.1")  # found through the path file
    gcc.place(gcc.program("pm", needs=(ma, ms), runpath="/opt/mrp", cc="musl-gcc"), "/bin/pm")
    (report,) = DepsAnalyzer(root).analyze(["/bin/pm"]).objects
    assert report.missing == ()
    assert report.needed["libma.so.1"] == "/opt/mrp/libma.so.1"
    assert report.needed["libms.so.1"] == "/opt/sys/libms.so.1"
    assert "/opt/mrp/libmb.so.1" in report.closure
    # libc.so is musl's loader itself.
    assert report.needed["libc.so"] == "/lib/ld-musl-x86_64.so.1"
    assert report.closure[-1] == "/lib/ld-musl-x86_64.so.1"
