"""Reading loader facts from ELF headers, checked against pyelftools and crafted bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from ocislim.elf.elfinfo import (
    DF_1_NODEFLIB,
    DF_1_PIE,
    ElfCatalog,
    MalformedElfError,
    imported_symbols,
    is_elf_file,
    read_elf_info,
)
from ocislim.elf.rootpath import RootFS
from tests.tools import require_tool
from tests.unit.elf_synth import EM_PPC, ET_REL, GccTree, craft_elf, write


def _pyelftools_facts(path: Path) -> tuple[object, ...]:
    needed: list[str] = []
    rpath: tuple[str, ...] = ()
    runpath: tuple[str, ...] = ()
    soname = interp = None
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_INTERP":
                interp = seg.get_interp_name()
            if seg["p_type"] == "PT_DYNAMIC":
                for tag in seg.iter_tags():
                    kind = tag.entry.d_tag
                    if kind == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif kind == "DT_RPATH":
                        rpath = tuple(tag.rpath.split(":"))
                    elif kind == "DT_RUNPATH":
                        runpath = tuple(tag.runpath.split(":"))
                    elif kind == "DT_SONAME":
                        soname = tag.soname
        return (elf.elfclass, elf["e_machine"], interp, tuple(needed), rpath, runpath, soname)


def _ours(path: Path) -> tuple[object, ...]:
    info = read_elf_info(str(path), "/x")
    assert info is not None
    from ocislim.elf.elfinfo import machine_name

    return (
        info.elf_class,
        "EM_" + machine_name(info.machine).upper(),
        info.interpreter,
        info.needed,
        info.rpath,
        info.runpath,
        info.soname,
    )


def test_gcc_objects_match_pyelftools(tmp_path: Path) -> None:
    require_tool("gcc")
    gcc = GccTree(tmp_path / "root", tmp_path / "build")
    liba = gcc.library("liba.so.1", runpath="$ORIGIN/../lib:/opt/x")
    libb = gcc.library("libb.so.2", needs=(liba,), rpath="/opt/b")
    prog = gcc.program("prog", needs=(liba, libb), rpath="$ORIGIN")
    for built in (liba, libb, prog):
        assert _ours(built) == _pyelftools_facts(built)
    info = read_elf_info(str(prog), "/usr/bin/prog")
    assert info is not None
    assert info.needed[:2] == ("liba.so.1", "libb.so.2")
    assert info.rpath == ("$ORIGIN",) and info.runpath == ()
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert not info.is_static and info.is_loadable


def test_gcc_static_and_32_bit(tmp_path: Path) -> None:
    require_tool("gcc")
    gcc = GccTree(tmp_path / "root", tmp_path / "build")
    static = read_elf_info(str(gcc.program("st", static=True)), "/st")
    assert static is not None and static.is_static and static.needed == ()
    from tests.unit.elf_synth import can_compile_m32

    if not can_compile_m32():
        pytest.skip("gcc -m32 needs gcc-multilib")
    lib32 = read_elf_info(str(gcc.library("libq.so.1", m32=True)), "/libq")
    assert lib32 is not None
    assert (lib32.elf_class, lib32.machine_name) == (32, "386")
    assert lib32.compat != (64, "little", 62)


@pytest.mark.parametrize("elf_class", [32, 64])
@pytest.mark.parametrize("byte_order", ["little", "big"])
def test_crafted_objects_in_both_classes_and_byte_orders(
    tmp_path: Path, elf_class: int, byte_order: str
) -> None:
    data = craft_elf(
        elf_class=elf_class,
        byte_order=byte_order,
        machine=EM_PPC,
        interp="/lib/ld.so.1",
        needed=("libc.so.6", "libm.so.6"),
        soname="libme.so.3",
        rpath="/r1:/r2",
        runpath="$ORIGIN",
        flags_1=DF_1_NODEFLIB,
    )
    path = write(tmp_path, "/obj", data)
    info = read_elf_info(str(path), "/obj")
    assert info is not None
    assert (info.elf_class, info.byte_order, info.machine) == (elf_class, byte_order, EM_PPC)
    assert info.interpreter == "/lib/ld.so.1"
    assert info.needed == ("libc.so.6", "libm.so.6")
    assert info.soname == "libme.so.3"
    assert info.rpath == ("/r1", "/r2") and info.runpath == ("$ORIGIN",)
    assert info.nodeflib
    # pyelftools agrees on the crafted bytes too.
    assert _ours(path)[2:] == _pyelftools_facts(path)[2:]


def test_extended_program_header_count(tmp_path: Path) -> None:
    path = write(tmp_path, "/x", craft_elf(needed=("liba.so",), xnum=True, interp="/ld"))
    info = read_elf_info(str(path), "/x")
    assert info is not None and info.needed == ("liba.so",) and info.interpreter == "/ld"


def test_kinds_static_pie_relocatable_and_not_elf(tmp_path: Path) -> None:
    spie = read_elf_info(str(write(tmp_path, "/a", craft_elf(flags_1=DF_1_PIE))), "/a")
    assert spie is not None and spie.is_static
    lib = read_elf_info(str(write(tmp_path, "/b", craft_elf(soname="libb.so"))), "/b")
    assert lib is not None and not lib.is_static  # a library without deps is not static
    nodyn = read_elf_info(str(write(tmp_path, "/c", craft_elf(dynamic=False))), "/c")
    assert nodyn is not None and nodyn.is_static
    rel = read_elf_info(str(write(tmp_path, "/d", craft_elf(elf_type=ET_REL))), "/d")
    assert rel is not None and not rel.is_loadable
    text = write(tmp_path, "/e", b"#!/bin/sh\necho hi\n")
    assert read_elf_info(str(text), "/e") is None
    assert not is_elf_file(str(text)) and is_elf_file(str(tmp_path / "a"))


@pytest.mark.parametrize("cut", [8, 30, 70, 130])
def test_truncated_objects_are_malformed_not_crashes(tmp_path: Path, cut: int) -> None:
    data = craft_elf(needed=("libz.so.1",), interp="/lib64/ld-linux-x86-64.so.2")
    path = write(tmp_path, "/t", data[:cut])
    with pytest.raises(MalformedElfError):
        read_elf_info(str(path), "/t")


def test_catalog_parses_once_and_records_problems(tmp_path: Path) -> None:
    write(tmp_path, "/good", craft_elf(needed=("liba.so",)))
    write(tmp_path, "/bad", craft_elf(needed=("liba.so",))[:40])
    write(tmp_path, "/text", b"hello")
    catalog = ElfCatalog(RootFS(tmp_path))
    first = catalog.get("/good")
    (tmp_path / "good").unlink()
    assert catalog.get("/good") is first  # cached: the file is not read again
    assert catalog.get("/bad") is None and catalog.problems["/bad"].startswith("malformed")
    assert catalog.get("/text") is None and catalog.problems["/text"] == "not an ELF file"
    assert catalog.get("/absent") is None and catalog.problems["/absent"].startswith("unreadable")


def test_imported_symbols_sees_only_undefined(tmp_path: Path) -> None:
    require_tool("gcc")
    src = tmp_path / "u.c"
    src.write_text(
        "#include <iconv.h>\n#include <netdb.h>\n"
        'void *use(void) { return iconv_open("UTF-8", "LATIN1"); }\n'
        "int getaddrinfo_like(void) { return 0; }\n"
    )
    lib = tmp_path / "libu.so"
    import subprocess

    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    wanted = frozenset({"iconv_open", "getaddrinfo_like", "dlopen"})
    # iconv_open is imported; getaddrinfo_like is defined here; dlopen is absent.
    assert imported_symbols(str(lib), wanted) == frozenset({"iconv_open"})


def test_a_fifo_or_link_where_an_object_is_expected_is_never_opened(tmp_path: Path) -> None:
    # A hostile image puts a FIFO where a library is looked up: opening it would wait
    # forever for a writer; and a link to a host file must not be read through.
    import os
    import signal

    write(tmp_path, "/usr/lib/libgood.so", craft_elf(needed=("liba.so",)))
    os.mkfifo(tmp_path / "usr/lib/libfifo.so")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.so"
    outside.write_bytes(craft_elf(needed=("libhost.so",)))
    (tmp_path / "usr/lib/libhost.so").symlink_to(outside)
    catalog = ElfCatalog(RootFS(tmp_path))

    class Blocked(BaseException):  # not an OSError, which the code under test handles
        pass

    def blocked(signum: int, frame: object) -> None:
        raise Blocked("blocked opening a FIFO")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(20)  # a regression blocks in open(): fail instead of hanging the run
    try:
        assert catalog.get("/usr/lib/libfifo.so") is None
        assert catalog.problems["/usr/lib/libfifo.so"].startswith("unreadable")
        assert catalog.imports("/usr/lib/libfifo.so", frozenset({"dlopen"})) == frozenset()
        assert catalog.get("/usr/lib/libhost.so") is None  # the link itself, not its target
        assert catalog.get("/usr/lib/libgood.so") is not None
        assert not is_elf_file(str(tmp_path / "usr/lib/libfifo.so"))
        with pytest.raises(OSError):
            read_elf_info(str(tmp_path / "usr/lib/libfifo.so"), "/usr/lib/libfifo.so")
        with pytest.raises(OSError):
            read_elf_info(str(tmp_path / "usr/lib/libhost.so"), "/usr/lib/libhost.so")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
