"""Synthetic ELF objects and image trees for the ELF tests.

Two sources, both made at test time:

* :func:`craft_elf` writes a minimal ELF file byte by byte (headers, ``PT_INTERP``,
  ``PT_DYNAMIC`` and a string table, nothing executable) — for header corner cases a
  compiler will not produce: both RPATH and RUNPATH, big-endian, foreign machines,
  ``PN_XNUM``.
* :class:`GccTree` compiles real programs and libraries with gcc into an image root
  that carries the host's own glibc loader and libc, so the same tree can also be
  handed to the real ``ld.so`` (in a chroot) as an oracle.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

ET_EXEC, ET_DYN, ET_REL = 2, 3, 1
EM_386, EM_X86_64, EM_PPC, EM_AARCH64 = 3, 62, 20, 183

HOST_LD64 = Path("/lib64/ld-linux-x86-64.so.2")
HOST_LIBC64 = Path("/lib/x86_64-linux-gnu/libc.so.6")
HOST_LD32 = Path("/lib32/ld-linux.so.2")
HOST_LIBC32 = Path("/lib32/libc.so.6")
HOST_MUSL_LD = Path("/lib/ld-musl-x86_64.so.1")


def craft_elf(
    *,
    elf_class: int = 64,
    byte_order: str = "little",
    machine: int = EM_X86_64,
    elf_type: int = ET_DYN,
    osabi: int = 0,
    interp: str | None = None,
    needed: tuple[str, ...] = (),
    soname: str | None = None,
    rpath: str | None = None,
    runpath: str | None = None,
    flags_1: int = 0,
    xnum: bool = False,
    dynamic: bool = True,
) -> bytes:
    """A minimal ELF object with exactly the given loader-relevant facts.

    One PT_LOAD maps the whole file at address 0x10000 so that DT_STRTAB is an
    address, as in real objects.  With ``xnum`` the program header count is stored
    the extended way (e_phnum = 0xffff, real count in section header 0).
    """
    is64 = elf_class == 64
    e = "<" if byte_order == "little" else ">"
    base = 0x10000
    ehsize, phentsize, shentsize = (64, 56, 64) if is64 else (52, 32, 40)
    strtab = bytearray(b"\0")

    def add(s: str) -> int:
        off = len(strtab)
        strtab.extend(s.encode() + b"\0")
        return off

    dyn: list[tuple[int, int]] = [(1, add(n)) for n in needed]
    if soname is not None:
        dyn.append((14, add(soname)))
    if rpath is not None:
        dyn.append((15, add(rpath)))
    if runpath is not None:
        dyn.append((29, add(runpath)))
    if flags_1:
        dyn.append((0x6FFFFFFB, flags_1))
    interp_bytes = interp.encode() + b"\0" if interp else b""
    nph = 1 + (1 if interp else 0) + (1 if dynamic else 0)
    ph_off = ehsize
    interp_off = ph_off + nph * phentsize
    str_off = interp_off + len(interp_bytes)
    dyn_fmt = e + ("qQ" if is64 else "iI")
    dyn_size = struct.calcsize(dyn_fmt)
    dyn_off = (str_off + len(strtab) + 7) & ~7
    dyn.extend([(5, base + str_off), (10, len(strtab)), (0, 0)])
    sh_off = dyn_off + len(dyn) * dyn_size
    total = sh_off + (shentsize if xnum else 0)

    def phdr(p_type: int, offset: int, size: int) -> bytes:
        vaddr = base + offset
        if is64:
            return struct.pack(e + "IIQQQQQQ", p_type, 4, offset, vaddr, vaddr, size, size, 8)
        return struct.pack(e + "IIIIIIII", p_type, offset, vaddr, vaddr, size, size, 4, 4)

    phdrs = phdr(1, 0, total)
    if interp:
        phdrs += phdr(3, interp_off, len(interp_bytes))
    if dynamic:
        phdrs += phdr(2, dyn_off, len(dyn) * dyn_size)
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if byte_order == "little" else 2, 1, osabi])
    ident += b"\0" * (16 - len(ident))
    phnum = 0xFFFF if xnum else nph
    shoff, shnum = (sh_off, 1) if xnum else (0, 0)
    if is64:
        header = struct.pack(
            e + "HHIQQQIHHHHHH", elf_type, machine, 1, 0, ph_off, shoff, 0, ehsize,
            phentsize, phnum, shentsize, shnum, 0,
        )  # fmt: skip
    else:
        header = struct.pack(
            e + "HHIIIIIHHHHHH", elf_type, machine, 1, 0, ph_off, shoff, 0, ehsize,
            phentsize, phnum, shentsize, shnum, 0,
        )  # fmt: skip
    out = bytearray(ident + header + phdrs + interp_bytes + strtab)
    out.extend(b"\0" * (dyn_off - len(out)))
    for tag, val in dyn:
        out.extend(struct.pack(dyn_fmt, tag, val))
    if xnum:
        if is64:
            out.extend(struct.pack(e + "IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, nph, 0, 0))
        else:
            out.extend(struct.pack(e + "IIIIIIIIII", 0, 0, 0, 0, 0, 0, 0, nph, 0, 0))
    return bytes(out)


def write(root: Path, path: str, data: bytes, mode: int = 0o755) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)
    return target


def symlink(root: Path, path: str, target: str) -> None:
    link = root / path.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def merged_usr_glibc64(root: Path, *, absolute_lib64: bool = True) -> None:
    """A Debian-like merged-/usr layout with the host's glibc loader and libc.

    ``/lib64`` is an absolute symlink to ``/usr/lib64`` when ``absolute_lib64`` (a
    lookup that followed it on the host would leave the tree).
    """
    triplet = root / "usr/lib/x86_64-linux-gnu"
    triplet.mkdir(parents=True, exist_ok=True)
    shutil.copy2(HOST_LD64.resolve(), triplet / "ld-linux-x86-64.so.2")
    shutil.copy2(HOST_LIBC64.resolve(), triplet / "libc.so.6")
    symlink(root, "/lib", "usr/lib")
    (root / "usr/lib64").mkdir(parents=True, exist_ok=True)
    symlink(root, "/usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    symlink(root, "/lib64", "/usr/lib64" if absolute_lib64 else "usr/lib64")


def glibc32(root: Path) -> None:
    """The host's 32-bit loader and libc (gcc-multilib) at their Debian places."""
    (root / "lib32").mkdir(parents=True, exist_ok=True)
    shutil.copy2(HOST_LD32.resolve(), root / "lib32/ld-linux.so.2")
    shutil.copy2(HOST_LIBC32.resolve(), root / "lib32/libc.so.6")
    lib = root / "usr/lib"
    lib.mkdir(parents=True, exist_ok=True)
    if not (lib / "ld-linux.so.2").exists():
        (lib / "ld-linux.so.2").symlink_to("../../lib32/ld-linux.so.2")


class GccTree:
    """Compile objects with gcc into ``root`` (build products kept in ``build``)."""

    def __init__(self, root: Path, build: Path) -> None:
        self.root = root
        self.build = build
        build.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def _src(self, body: str) -> Path:
        self._n += 1
        src = self.build / f"src{self._n}.c"
        src.write_text(body)
        return src

    def _link_flags(self, rpath: str | None, runpath: str | None) -> list[str]:
        flags = ["-Wl,--no-as-needed"]
        if rpath is not None:
            flags += [f"-Wl,-rpath,{rpath}", "-Wl,--disable-new-dtags"]
        if runpath is not None:
            flags += [f"-Wl,-rpath,{runpath}", "-Wl,--enable-new-dtags"]
        return flags

    def library(
        self,
        soname: str,
        *,
        needs: tuple[Path, ...] = (),
        rpath: str | None = None,
        runpath: str | None = None,
        m32: bool = False,
        cc: str = "gcc",
    ) -> Path:
        """Build ``soname`` (outside the root); link it against ``needs`` (built files)."""
        out = self.build / ("m32" if m32 else "m64") / soname
        out.parent.mkdir(parents=True, exist_ok=True)
        symbol = "f_" + "".join(c if c.isalnum() else "_" for c in soname)
        src = self._src(f"int {symbol}(void) {{ return 0; }}\n")
        cmd = [cc, "-shared", "-fPIC", "-o", str(out), str(src), f"-Wl,-soname,{soname}"]
        cmd += (["-m32"] if m32 else []) + self._link_flags(rpath, runpath)
        cmd += [str(n) for n in needs]
        subprocess.run(cmd, check=True, capture_output=True)
        return out

    def program(
        self,
        name: str,
        *,
        needs: tuple[Path, ...] = (),
        rpath: str | None = None,
        runpath: str | None = None,
        m32: bool = False,
        static: bool = False,
        cc: str = "gcc",
        extra: tuple[str, ...] = (),
    ) -> Path:
        out = self.build / ("m32" if m32 else "m64") / "bin" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        src = self._src("int main(void) { return 0; }\n")
        cmd = [cc, "-o", str(out), str(src), *(["-m32"] if m32 else [])]
        cmd += ["-static"] if static else self._link_flags(rpath, runpath)
        cmd += [*extra, *(str(n) for n in needs)]
        subprocess.run(cmd, check=True, capture_output=True)
        return out

    def place(self, built: Path, path: str) -> str:
        """Copy a build product into the root at in-image ``path``."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, target)
        return path


def can_compile_m32() -> bool:
    return HOST_LD32.exists() and HOST_LIBC32.exists() and shutil.which("gcc") is not None


def host_ldconfig_cache(root: Path, fmt: str = "new") -> None:
    """Write ``root/etc/ld.so.cache`` with the host's ldconfig from the root's ld.so.conf."""
    os.makedirs(root / "etc", exist_ok=True)
    subprocess.run(
        ["ldconfig", "-r", str(root), "-c", fmt, "-C", "/etc/ld.so.cache"],
        check=True,
        capture_output=True,
    )


def write_new_cache(root: Path, entries: list[tuple[str, str]], flags: int = 0x0303) -> None:
    """``root/etc/ld.so.cache`` in glibc's new format mapping soname -> path.

    Entries are written in the given order (the loader takes the first usable one).
    """
    strings = bytearray()
    offsets: list[tuple[int, int]] = []
    header_size, entry_size = 48, 24
    table_end = header_size + entry_size * len(entries)
    for soname, path in entries:
        key = table_end + len(strings)
        strings.extend(soname.encode() + b"\0")
        value = table_end + len(strings)
        strings.extend(path.encode() + b"\0")
        offsets.append((key, value))
    out = bytearray(b"glibc-ld.so.cache1.1")
    out += struct.pack("<II", len(entries), len(strings))
    out += bytes([2, 0, 0, 0]) + struct.pack("<IIII", 0, 0, 0, 0)
    for key, value in offsets:
        out += struct.pack("<iIIIQ", flags, key, value, 0, 0)
    out += strings
    write(root, "/etc/ld.so.cache", bytes(out), 0o644)


@dataclass
class Scenarios:
    """The gcc-built tree used by the resolver tests and by the ld.so oracle test."""

    root: Path
    env: dict[str, str]
    programs: dict[str, str]  # scenario name -> in-image path of its program
    m32: bool
    # Scenarios where the real ld.so (on this CPU) may legitimately pick another copy.
    cpu_dependent: frozenset[str] = frozenset()


def build_scenarios(root: Path, build: Path) -> Scenarios:
    """Compile every resolver scenario into ``root`` (a Debian-like glibc tree)."""
    merged_usr_glibc64(root)
    gcc = GccTree(root, build)
    programs: dict[str, str] = {}
    T = "/usr/lib/x86_64-linux-gnu"

    libb = gcc.library("libb.so.1")
    liba = gcc.library("liba.so.1", needs=(libb,))
    # RPATH is inherited: liba finds libb through the program's RPATH.
    gcc.place(liba, "/opt/rp/liba.so.1")
    gcc.place(libb, "/opt/rp/libb.so.1")
    programs["rpath"] = gcc.place(gcc.program("p_rpath", needs=(liba,), rpath="/opt/rp"),
                                  "/usr/bin/p_rpath")  # fmt: skip
    # RUNPATH is not: liba cannot find libb in the program's RUNPATH directory.
    gcc.place(liba, "/opt/rn/liba.so.1")
    gcc.place(libb, "/opt/rn/libb.so.1")
    programs["runpath"] = gcc.place(gcc.program("p_runpath", needs=(liba,), runpath="/opt/rn"),
                                    "/usr/bin/p_runpath")  # fmt: skip

    libo = gcc.library("libo.so.1")
    gcc.place(libo, "/app/lib/libo.so.1")
    programs["origin"] = gcc.place(
        gcc.program("p_origin", needs=(libo,), runpath="$ORIGIN/../lib"), "/app/bin/p_origin"
    )
    symlink(root, "/usr/local/bin/p_origin", "/app/bin/p_origin")
    programs["origin-via-link"] = "/usr/local/bin/p_origin"

    nothere = gcc.library("libnothere.so.1")
    programs["missing"] = gcc.place(gcc.program("p_missing", needs=(nothere,)),
                                    "/usr/bin/p_missing")  # fmt: skip

    # Symlink chain with an absolute hop, found in the loader's default directories.
    chain = gcc.library("libchain.so.1")
    gcc.place(chain, "/opt/real/libchain.so.1.2.3")
    symlink(root, f"{T}/libchain.so.1.2", "/opt/real/libchain.so.1.2.3")
    symlink(root, f"{T}/libchain.so.1", "libchain.so.1.2")
    programs["chain"] = gcc.place(gcc.program("p_chain", needs=(chain,)), "/usr/bin/p_chain")

    # ld.so.conf with an include glob names /opt/conflib; the cache says so too.
    write(root, "/etc/ld.so.conf", b"include /etc/ld.so.conf.d/*.conf\n", 0o644)
    write(root, "/etc/ld.so.conf.d/custom.conf", b"/opt/conflib\n", 0o644)
    conf = gcc.library("libconf.so.1")
    gcc.place(conf, "/opt/conflib/libconf.so.1")
    programs["conf"] = gcc.place(gcc.program("p_conf", needs=(conf,)), "/usr/bin/p_conf")
    # Search order: RPATH > LD_LIBRARY_PATH > RUNPATH.
    prec = gcc.library("libprec.so.1")
    for d in ("/opt/rp2", "/opt/llp", "/opt/rn2"):
        gcc.place(prec, f"{d}/libprec.so.1")
    programs["rpath-over-llp"] = gcc.place(
        gcc.program("p_prec_rp", needs=(prec,), rpath="/opt/rp2"), "/usr/bin/p_prec_rp"
    )
    programs["llp-over-runpath"] = gcc.place(
        gcc.program("p_prec_rn", needs=(prec,), runpath="/opt/rn2"), "/usr/bin/p_prec_rn"
    )

    # A library's soname already loaded is reused, wherever the second requester looks.
    first = gcc.library("libs.so.1")
    libt = gcc.library("libt.so.1", needs=(first,), runpath="/opt/other")
    gcc.place(first, "/opt/first/libs.so.1")
    gcc.place(first, "/opt/other/libs.so.1")
    gcc.place(libt, "/opt/first/libt.so.1")
    programs["soname-reuse"] = gcc.place(
        gcc.program("p_reuse", needs=(first, libt), rpath="/opt/first"), "/usr/bin/p_reuse"
    )

    # $LIB (Debian: lib/TRIPLET) and $PLATFORM (CPU-dependent on x86-64).
    dst = gcc.library("libdst.so.1")
    gcc.place(dst, "/opt/dst/lib/x86_64-linux-gnu/libdst.so.1")
    programs["lib-token"] = gcc.place(
        gcc.program("p_dst", needs=(dst,), runpath="/opt/dst/$LIB"), "/usr/bin/p_dst"
    )
    plat = gcc.library("libplat.so.1")
    for platform in ("x86_64", "haswell", "xeon_phi"):
        gcc.place(plat, f"/opt/plat/{platform}/libplat.so.1")
    programs["platform-token"] = gcc.place(
        gcc.program("p_plat", needs=(plat,), runpath="/opt/plat/${PLATFORM}"), "/usr/bin/p_plat"
    )

    # A CPU-specific copy next to the baseline one.
    hw = gcc.library("libhw.so.1")
    gcc.place(hw, "/opt/hw/libhw.so.1")
    gcc.place(hw, "/opt/hw/glibc-hwcaps/x86-64-v2/libhw.so.1")
    programs["hwcaps"] = gcc.place(gcc.program("p_hw", needs=(hw,), runpath="/opt/hw"),
                                   "/usr/bin/p_hw")  # fmt: skip

    m32 = can_compile_m32()
    if m32:
        glibc32(root)
        x32 = gcc.library("libx.so.1", m32=True)
        x64 = gcc.library("libx.so.1")
        gcc.place(x32, "/opt/mix32/libx.so.1")
        gcc.place(x64, "/opt/mix64/libx.so.1")
        # A 32-bit copy first in the search path is skipped by a 64-bit loader...
        programs["skip-32-bit"] = gcc.place(
            gcc.program("p_mix", needs=(x64,), rpath="/opt/mix32:/opt/mix64"), "/usr/bin/p_mix"
        )
        # ...and a 32-bit program skips the 64-bit copy.
        programs["32-bit"] = gcc.place(
            gcc.program("p32", needs=(x32,), rpath="/opt/mix64:/opt/mix32", m32=True),
            "/usr/bin/p32",
        )

    write_new_cache(root, [("libconf.so.1", "/opt/conflib/libconf.so.1")])
    return Scenarios(
        root=root,
        env={"LD_LIBRARY_PATH": "/opt/llp", "PATH": "/usr/local/bin:/usr/bin:/bin"},
        programs=programs,
        m32=m32,
        cpu_dependent=frozenset({"hwcaps", "platform-token"}),
    )


def musl_tree(tmp_path: Path, path_file: bytes) -> GccTree:
    """A root under ``tmp_path`` with the host's musl loader and ``/etc/ld-musl-x86_64.path``.

    Needs ``musl-gcc`` and musl's loader (Debian's musl-tools): skips without them, or
    fails under ``OCISLIM_REQUIRE_TOOLS=1``.
    """
    from tests.tools import require_tool

    require_tool("musl-gcc")
    require_tool(str(HOST_MUSL_LD))
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    shutil.copy2(HOST_MUSL_LD.resolve(), root / "lib/ld-musl-x86_64.so.1")
    write(root, "/etc/ld-musl-x86_64.path", path_file, 0o644)
    return GccTree(root, tmp_path / "build")
