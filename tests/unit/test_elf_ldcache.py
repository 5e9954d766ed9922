"""ld.so.cache in every layout glibc's ldconfig writes, and ld.so.conf includes."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest

from ocislim.elf.ldcache import (
    LdCacheFormatError,
    parse_ld_so_cache,
    read_ld_so_cache,
    read_ld_so_conf,
)
from ocislim.elf.rootpath import RootFS
from tests.tools import require_tool
from tests.unit.elf_synth import GccTree, symlink, write

_P_LINE = re.compile(r"^\t(\S+) \(([^)]*)\)(?: OS ABI: [^=]*)? => (\S+)$")


def _ldconfig_listing(cache: Path) -> set[tuple[str, str]]:
    out = subprocess.run(
        ["ldconfig", "-p", "-C", str(cache)], check=True, capture_output=True, text=True
    ).stdout
    pairs = set()
    for line in out.splitlines():
        m = _P_LINE.match(line)
        if m:
            pairs.add((m.group(1), m.group(3)))
    return pairs


@pytest.fixture(scope="module")
def libdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("gcc")
    base = tmp_path_factory.mktemp("ldcache")
    gcc = GccTree(base / "unused", base / "build")
    libs = base / "libs"
    (libs / "glibc-hwcaps" / "x86-64-v3").mkdir(parents=True)
    for soname in ("libone.so.1", "libtwo.so.2", "libhw.so.1"):
        built = gcc.library(soname)
        (libs / soname).write_bytes(built.read_bytes())
    (libs / "glibc-hwcaps/x86-64-v3/libhw.so.1").write_bytes((libs / "libhw.so.1").read_bytes())
    return libs


@pytest.mark.parametrize("fmt", ["new", "old", "compat"])
def test_every_format_matches_ldconfig(tmp_path: Path, libdir: Path, fmt: str) -> None:
    require_tool("ldconfig")
    conf = tmp_path / "ld.so.conf"
    conf.write_text(f"{libdir}\n")
    cache = tmp_path / "ld.so.cache"
    subprocess.run(
        ["ldconfig", "-X", "-c", fmt, "-C", str(cache), "-f", str(conf)],
        check=True,
        capture_output=True,
    )
    parsed = parse_ld_so_cache(cache.read_bytes())
    assert parsed.format == fmt
    ours = {(e.soname, e.path) for e in parsed.entries}
    assert ours == _ldconfig_listing(cache)
    assert (parsed.lookup("libone.so.1")[0].path) == f"{libdir}/libone.so.1"
    if fmt != "old":  # only the new layout records glibc-hwcaps entries
        variants = [e for e in parsed.lookup("libhw.so.1") if e.is_hwcap_variant]
        assert [v.path for v in variants] == [f"{libdir}/glibc-hwcaps/x86-64-v3/libhw.so.1"]


def test_hand_made_old_format() -> None:
    strings = b"libx.so.1\0/lib/libx.so.1\0"
    data = b"ld.so-1.7.0\0" + struct.pack("<I", 1) + struct.pack("<iII", 0x303, 0, 10) + strings
    cache = parse_ld_so_cache(data)
    assert cache.format == "old"
    assert [(e.soname, e.path, e.flags) for e in cache.entries] == [
        ("libx.so.1", "/lib/libx.so.1", 0x303)
    ]


@pytest.mark.parametrize(
    "data",
    [b"", b"not a cache", b"glibc-ld.so.cache1.1" + b"\xff" * 8, b"ld.so-1.7.0\0\xff\xff\xff\x7f"],
)
def test_garbage_is_rejected(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(LdCacheFormatError):
        parse_ld_so_cache(data)
    write(tmp_path, "/etc/ld.so.cache", data)
    assert read_ld_so_cache(RootFS(tmp_path)) is None


def test_ld_so_conf_includes(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/etc/ld.so.conf",
        b"# comment\n/opt/first   # trailing comment\ninclude /etc/ld.so.conf.d/*.conf\n"
        b"include rel.d/*.conf\ninclude /etc/missing/*.conf\nhwcap 0 nosegneg\n"
        b"/opt/typed=libc6\n/opt/first\n",
    )
    write(tmp_path, "/etc/ld.so.conf.d/b.conf", b"/opt/b\ninclude /etc/ld.so.conf\n")
    write(tmp_path, "/etc/ld.so.conf.d/a.conf", b"/opt/a\n/opt/a/../aa\n")
    write(tmp_path, "/etc/ld.so.conf.d/skip.txt", b"/opt/never\n")
    write(tmp_path, "/etc/rel.d/x.conf", b"/opt/rel\n")
    # An include through an absolute symlink stays in the image.
    symlink(tmp_path, "/etc/ld.so.conf.d/c.conf", "/etc/rel.d/x.conf")
    assert read_ld_so_conf(RootFS(tmp_path)) == (
        "/opt/first",
        "/opt/a",
        "/opt/aa",
        "/opt/b",
        "/opt/rel",
        "/opt/typed",
    )


def test_missing_conf_is_empty(tmp_path: Path) -> None:
    assert read_ld_so_conf(RootFS(tmp_path)) == ()
    assert read_ld_so_cache(RootFS(tmp_path)) is None
