"""Facts about one ELF object, read once into a frozen record.

The loader-relevant facts (ELF header, program headers, ``PT_INTERP`` and the dynamic
section) are read with ``struct`` straight from the file: it takes three or four small
reads per object, which matters when every file of an image is scanned.  pyelftools
is used where the format is intricate and speed matters less — finding the dynamic
string table through section headers when no loadable segment maps it, walking the
dynamic symbol table, naming machines.

:class:`ElfCatalog` caches one :class:`ElfInfo` per canonical in-image path, so each
object is parsed at most once per analysis.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE

from ocislim.elf.rootpath import RootFS

ELF_MAGIC = b"\x7fELF"

ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
DT_SONAME, DT_RPATH, DT_RUNPATH = 14, 15, 29
DT_FLAGS_1 = 0x6FFFFFFB
DF_1_NODEFLIB = 0x800
DF_1_PIE = 0x08000000
PN_XNUM = 0xFFFF

EM_386, EM_ARM, EM_X86_64, EM_AARCH64 = 3, 40, 62, 183
# ARM EABI float ABI flags in e_flags.
EF_ARM_ABI_FLOAT_HARD = 0x400

ELFOSABI_SYSV, ELFOSABI_GNU = 0, 3

# Reads beyond this size are done string by string instead of in one block.
_STRTAB_BLOCK = 64 * 1024
_HEAD = 4096


class MalformedElfError(ValueError):
    """The file starts with the ELF magic but its headers do not hold together."""


@dataclass(frozen=True)
class ElfInfo:
    """Loader-relevant facts of one ELF object (all strings decoded as UTF-8)."""

    path: str
    elf_class: int  # 32 or 64
    byte_order: str  # "little" or "big"
    machine: int  # e_machine
    osabi: int
    abi_version: int
    elf_type: int  # ET_*
    e_flags: int
    interpreter: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    soname: str | None
    has_dynamic: bool
    flags_1: int

    @property
    def machine_name(self) -> str:
        return machine_name(self.machine)

    @property
    def compat(self) -> tuple[int, str, int]:
        """What a dependency must share with its loader: class, byte order, machine."""
        return (self.elf_class, self.byte_order, self.machine)

    @property
    def is_static(self) -> bool:
        """True for objects the kernel runs without a dynamic loader (incl. static-pie)."""
        if not self.has_dynamic:
            return True
        return (
            self.interpreter is None
            and self.elf_type == ET_DYN
            and bool(self.flags_1 & DF_1_PIE)
            and not self.needed
        )

    @property
    def is_loadable(self) -> bool:
        """Executables and shared objects; not relocatable objects or core files."""
        return self.elf_type in (ET_EXEC, ET_DYN)

    @property
    def nodeflib(self) -> bool:
        """Linked with ``-z nodeflib``: the cache and default directories are skipped."""
        return bool(self.flags_1 & DF_1_NODEFLIB)

    @property
    def description(self) -> str:
        return f"ELF{self.elf_class} {self.byte_order}-endian {self.machine_name}"


@cache
def machine_name(machine: int) -> str:
    for name, value in ENUM_E_MACHINE.items():
        if value == machine and name.startswith("EM_"):
            return name[3:].lower()
    return f"machine-{machine}"


_OPEN_REGULAR = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_regular(host_path: str) -> int:
    """A read-only descriptor of the regular file at ``host_path``; the caller closes it.

    Raises OSError for anything else: a final symlink is not followed (ELOOP) and a
    FIFO or device is refused once opened without blocking, so a hostile tree cannot
    make a read wait forever.  (Callers inside an image open through
    :meth:`RootFS.open_file`, which follows no link at any component.)
    """
    fd = os.open(host_path, _OPEN_REGULAR)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"not a regular file: {host_path}")
    return fd


def is_elf_file(host_path: str) -> bool:
    """Cheap check: is it a regular file that starts with the ELF magic?"""
    try:
        fd = open_regular(host_path)
    except OSError:
        return False
    try:
        return os.pread(fd, 4, 0) == ELF_MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


class _Reader:
    def __init__(self, fd: int, head: bytes) -> None:
        self.fd = fd
        self.head = head

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0:
            raise MalformedElfError("negative offset or size")
        end = offset + size
        if end <= len(self.head):
            return self.head[offset:end]
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise MalformedElfError(f"truncated: wanted {size} bytes at {offset}")
        return data

    def cstring(self, offset: int, limit: int | None = None) -> bytes:
        chunk = 256
        out = b""
        while True:
            data = os.pread(self.fd, chunk, offset + len(out))
            if not data:
                raise MalformedElfError("unterminated string")
            nul = data.find(b"\0")
            if nul >= 0:
                return out + data[:nul]
            out += data
            if limit is not None and len(out) > limit:
                raise MalformedElfError("string runs past its table")


def read_elf_info(host_path: str, path: str) -> ElfInfo | None:
    """Parse the ELF object at ``host_path`` (opened by :func:`open_regular`); see
    :func:`read_elf_info_fd`."""
    fd = open_regular(host_path)
    try:
        return read_elf_info_fd(fd, path)
    finally:
        os.close(fd)


def read_elf_info_fd(fd: int, path: str) -> ElfInfo | None:
    """Parse the ELF object open on ``fd`` (read with pread; the caller closes it); None
    if it is not an ELF file.

    ``path`` is the in-image path recorded in the result.  Raises
    :class:`MalformedElfError` when the magic is present but the headers are not
    usable, and OSError when the file cannot be read.
    """
    head = os.pread(fd, _HEAD, 0)
    if head[:4] != ELF_MAGIC:
        return None
    try:
        return _parse(_Reader(fd, head), path)
    except struct.error as exc:
        raise MalformedElfError(str(exc)) from exc


def _parse(r: _Reader, path: str) -> ElfInfo:
    ident = r.read(0, 16)
    ei_class, ei_data = ident[4], ident[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise MalformedElfError("bad class or data encoding")
    is64 = ei_class == 2
    end = "<" if ei_data == 1 else ">"
    fields = struct.unpack(end + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"),
                           r.read(16, 48 if is64 else 36))  # fmt: skip
    e_type, e_machine, e_flags = fields[0], fields[1], fields[6]
    phoff, shoff, phentsize, phnum = fields[4], fields[5], fields[8], fields[9]
    ph_fmt, dyn_fmt = (end + "IIQQQQQQ", end + "qQ") if is64 else (end + "IIIIIIII", end + "iI")
    if phnum == PN_XNUM:
        # The real count lives in section header 0's sh_info.
        info_at = 44 if is64 else 28
        (phnum,) = struct.unpack(end + "I", r.read(shoff + info_at, 4))
    ph_size = struct.calcsize(ph_fmt)
    if phnum and phentsize < ph_size:
        raise MalformedElfError("program header entries too small")
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    interp_seg: tuple[int, int] | None = None
    dyn_seg: tuple[int, int] | None = None
    table = r.read(phoff, phnum * phentsize) if phnum else b""
    for i in range(phnum):
        fields = struct.unpack_from(ph_fmt, table, i * phentsize)
        if is64:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = fields[:6]
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = fields[:5]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_INTERP:
            interp_seg = (p_offset, p_filesz)
        elif p_type == PT_DYNAMIC:
            dyn_seg = (p_offset, p_filesz)

    interpreter = None
    if interp_seg is not None:
        raw = r.read(interp_seg[0], interp_seg[1])
        interpreter = raw.split(b"\0", 1)[0].decode("utf-8", "replace") or None

    needed_off: list[int] = []
    soname_off = rpath_off = runpath_off = None
    strtab_addr = strsz = None
    flags_1 = 0
    if dyn_seg is not None:
        dyn = r.read(dyn_seg[0], dyn_seg[1] - dyn_seg[1] % struct.calcsize(dyn_fmt))
        for tag, val in struct.iter_unpack(dyn_fmt, dyn):
            if tag == DT_NULL:
                break
            if tag == DT_NEEDED:
                needed_off.append(val)
            elif tag == DT_STRTAB:
                strtab_addr = val
            elif tag == DT_STRSZ:
                strsz = val
            elif tag == DT_SONAME:
                soname_off = val
            elif tag == DT_RPATH:
                rpath_off = val
            elif tag == DT_RUNPATH:
                runpath_off = val
            elif tag == DT_FLAGS_1:
                flags_1 = val

    offsets = [o for o in (*needed_off, soname_off, rpath_off, runpath_off) if o is not None]
    strings: dict[int, str] = {}
    if offsets:
        if strtab_addr is None:
            raise MalformedElfError("dynamic section has strings but no DT_STRTAB")
        strtab_off = _file_offset(loads, strtab_addr)
        if strtab_off is None:
            strtab_off = _dynstr_offset_from_sections(r.fd)
        strings = _read_strings(r, strtab_off, strsz, offsets)

    def text(off: int | None) -> str | None:
        return None if off is None else strings[off]

    def path_list(off: int | None) -> tuple[str, ...]:
        value = text(off)
        return tuple(value.split(":")) if value else ()

    return ElfInfo(
        path=path,
        elf_class=64 if is64 else 32,
        byte_order="little" if ei_data == 1 else "big",
        machine=e_machine,
        osabi=ident[7],
        abi_version=ident[8],
        elf_type=e_type,
        e_flags=e_flags,
        interpreter=interpreter,
        needed=tuple(strings[o] for o in needed_off),
        rpath=path_list(rpath_off),
        runpath=path_list(runpath_off),
        soname=text(soname_off),
        has_dynamic=dyn_seg is not None,
        flags_1=flags_1,
    )


def _file_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int | None:
    for seg_vaddr, seg_offset, seg_filesz in loads:
        if seg_vaddr <= vaddr < seg_vaddr + seg_filesz:
            return vaddr - seg_vaddr + seg_offset
    return None


def _pyelftools_file(fd: int) -> BinaryIO:
    """A file object of its own on ``fd``'s file, for pyelftools (which seeks)."""
    fh = os.fdopen(os.dup(fd), "rb")
    fh.seek(0)
    return fh


def _dynstr_offset_from_sections(fd: int) -> int:
    """Fallback for odd layouts: locate ``.dynstr`` via the section headers."""
    try:
        with _pyelftools_file(fd) as fh:
            section = ELFFile(fh).get_section_by_name(".dynstr")
            if section is None:
                raise MalformedElfError("DT_STRTAB is not mapped and there is no .dynstr")
            return int(section["sh_offset"])
    except ELFError as exc:
        raise MalformedElfError(str(exc)) from exc


def _read_strings(r: _Reader, base: int, size: int | None, offsets: list[int]) -> dict[int, str]:
    lo, hi = min(offsets), max(offsets)
    if size is not None and hi >= size:
        raise MalformedElfError("string offset outside DT_STRSZ")
    out: dict[int, str] = {}
    if size is not None and hi - lo < _STRTAB_BLOCK:
        stop = min(size, hi + 4096)
        block = r.read(base + lo, stop - lo)
        for off in offsets:
            nul = block.find(b"\0", off - lo)
            raw = block[off - lo : nul] if nul >= 0 else r.cstring(base + off, size)
            out[off] = raw.decode("utf-8", "replace")
        return out
    for off in offsets:
        out[off] = r.cstring(base + off, size).decode("utf-8", "replace")
    return out


SHT_DYNSYM = 11
SHN_UNDEF = 0


def imported_symbols(host_path: str, names: frozenset[str]) -> frozenset[str]:
    """:func:`imported_symbols_fd` of the file at ``host_path`` (by :func:`open_regular`);
    an unopenable file imports nothing."""
    try:
        fd = open_regular(host_path)
    except OSError:
        return frozenset()
    try:
        return imported_symbols_fd(fd, names)
    finally:
        os.close(fd)


def imported_symbols_fd(fd: int, names: frozenset[str]) -> frozenset[str]:
    """Which of ``names`` the object open on ``fd`` imports (undefined dynamic symbols).

    Reads the section headers, ``.dynsym`` and its string table with ``struct``; a
    byte search of the string table rules out most objects before any symbol is
    decoded.  Objects without section headers are handed to pyelftools.
    Unreadable or malformed objects import nothing.  The caller closes ``fd``.
    """
    try:
        head = os.pread(fd, _HEAD, 0)
        if head[:4] != ELF_MAGIC:
            return frozenset()
        return _imports(_Reader(fd, head), names)
    except (OSError, MalformedElfError, struct.error, ELFError):
        return frozenset()


def _imports(r: _Reader, names: frozenset[str]) -> frozenset[str]:
    is64 = r.head[4] == 2
    end = "<" if r.head[5] == 1 else ">"
    if is64:
        shoff, shentsize, shnum = _unpack_at(r, end + "Q", 40)[0], *_unpack_at(r, end + "HH", 58)
        sh_fmt, sym_fmt, shndx_at = end + "IIQQQQIIQQ", end + "IBBHQQ", 3
    else:
        shoff, shentsize, shnum = _unpack_at(r, end + "I", 32)[0], *_unpack_at(r, end + "HH", 46)
        sh_fmt, sym_fmt, shndx_at = end + "IIIIIIIIII", end + "IIIBBH", 5
    if shoff == 0 or shnum == 0:
        return _imports_pyelftools(r.fd, names)
    table = r.read(shoff, shnum * shentsize)
    headers = [struct.unpack_from(sh_fmt, table, i * shentsize) for i in range(shnum)]
    found: set[str] = set()
    for sh in headers:
        if sh[1] != SHT_DYNSYM or sh[6] >= shnum:
            continue
        strtab = headers[sh[6]]
        strings = r.read(strtab[4], strtab[5])
        # A name may share its bytes with the tail of a longer one, so every place
        # the string ends is a possible st_name.
        wanted: dict[int, str] = {}
        for name in names:
            needle = name.encode() + b"\0"
            at = strings.find(needle)
            while at >= 0:
                wanted[at] = name
                at = strings.find(needle, at + 1)
        if not wanted:
            continue
        symbols = r.read(sh[4], sh[5] - sh[5] % struct.calcsize(sym_fmt))
        for entry in struct.iter_unpack(sym_fmt, symbols):
            st_name, st_shndx = entry[0], entry[shndx_at]
            if st_shndx == SHN_UNDEF and st_name in wanted:
                found.add(wanted[st_name])
    return frozenset(found)


def _unpack_at(r: _Reader, fmt: str, offset: int) -> tuple[int, ...]:
    return struct.unpack(fmt, r.read(offset, struct.calcsize(fmt)))


def _imports_pyelftools(fd: int, names: frozenset[str]) -> frozenset[str]:
    with _pyelftools_file(fd) as fh:
        elf = ELFFile(fh)
        found: set[str] = set()
        for segment in elf.iter_segments():
            if not isinstance(segment, DynamicSegment):
                continue
            for sym in segment.iter_symbols():
                if sym.name in names and sym["st_shndx"] == "SHN_UNDEF":
                    found.add(sym.name)
        return frozenset(found)


class ElfCatalog:
    """One parse per canonical in-image path; remembers why a file is not usable."""

    def __init__(self, rootfs: RootFS) -> None:
        self.rootfs = rootfs
        self._info: dict[str, ElfInfo | None] = {}
        self.problems: dict[str, str] = {}
        self._imports: dict[tuple[str, frozenset[str]], frozenset[str]] = {}

    def get(self, canonical: str) -> ElfInfo | None:
        """The ELF facts of ``canonical`` (already resolved), or None for a non-ELF file.

        Unreadable or malformed files return None and are listed in ``problems``.
        """
        try:
            return self._info[canonical]
        except KeyError:
            pass
        info: ElfInfo | None = None
        fd = self.rootfs.open_file(canonical)
        if fd is None:
            self.problems[canonical] = "unreadable: no regular file there"
            self._info[canonical] = None
            return None
        try:
            info = read_elf_info_fd(fd, canonical)
            if info is None:
                self.problems[canonical] = "not an ELF file"
        except MalformedElfError as exc:
            self.problems[canonical] = f"malformed ELF: {exc}"
        except OSError as exc:
            self.problems[canonical] = f"unreadable: {exc.strerror or exc}"
        finally:
            os.close(fd)
        self._info[canonical] = info
        return info

    def imports(self, canonical: str, names: frozenset[str]) -> frozenset[str]:
        key = (canonical, names)
        if key not in self._imports:
            fd = self.rootfs.open_file(canonical)
            found: frozenset[str] = frozenset()
            if fd is not None:
                try:
                    found = imported_symbols_fd(fd, names)
                finally:
                    os.close(fd)
            self._imports[key] = found
        return self._imports[key]
