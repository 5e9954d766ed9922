"""The image's ``/etc/ld.so.cache`` and ``/etc/ld.so.conf``.

glibc's loader consults only the cache file; ``ld.so.conf`` is what ``ldconfig``
builds the cache from.  Both cache layouts are read: the current
``glibc-ld.so.cache1.1`` format (alone, as glibc >= 2.32 writes it, or embedded after
an old-format table as older glibc writes it) and the old ``ld.so-1.7.0`` format.
When an image has no cache, :func:`read_ld_so_conf` gives the directories ldconfig
would have put in it (``include`` globs followed, relative to the including file).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ocislim.elf.rootpath import RootFS, join
from ocislim.layers.pathwalk import lexical

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"

# struct file_entry {int32 flags; uint32 key, value;}
_OLD_ENTRY = struct.Struct("iII")
# struct file_entry_new {int32 flags; uint32 key, value, osversion; uint64 hwcap;}
_NEW_ENTRY = struct.Struct("iIIIQ")
_NEW_HEADER_SIZE = 48
_EXTENSION_MAGIC = 0xEAA42174
_EXTENSION_TAG_HWCAPS = 1
# hwcap bit marking an entry found in a glibc-hwcaps subdirectory.
HWCAP_EXTENSION = 1 << 62

# Low byte of the flags: the library type; libc6 ELF libraries are 3.
FLAG_TYPE_MASK = 0x00FF
FLAG_ELF_LIBC6 = 0x0003
# Second byte: the architecture ABI (see glibc's ldconfig.h).
FLAG_ARCH_NAMES = {
    0x0000: "",
    0x0100: "SPARC 64-bit",
    0x0200: "IA-64",
    0x0300: "x86-64",
    0x0400: "s390 64-bit",
    0x0500: "PowerPC 64-bit",
    0x0600: "MIPS N32",
    0x0700: "MIPS N64",
    0x0800: "x32",
    0x0900: "ARM hard-float",
    0x0A00: "AArch64",
    0x0B00: "ARM soft-float",
    0x0C00: "MIPS 32 NaN2008",
    0x0D00: "MIPS N32 NaN2008",
    0x0E00: "MIPS N64 NaN2008",
    0x0F00: "RISC-V soft-float",
    0x1000: "RISC-V double-float",
    0x1100: "LoongArch soft-float",
    0x1200: "LoongArch double-float",
}


class LdCacheFormatError(ValueError):
    """The bytes are not a cache file glibc's loader would accept."""


@dataclass(frozen=True)
class CacheEntry:
    """One library in the cache: ``soname`` maps to ``path``."""

    soname: str
    path: str
    flags: int
    osversion: int = 0
    hwcap: int = 0

    @property
    def is_hwcap_variant(self) -> bool:
        """True for entries the loader takes only on capable CPUs (glibc-hwcaps etc.)."""
        return self.hwcap != 0


@dataclass(frozen=True)
class LdCache:
    """A parsed cache: entries in file order (glibc sorts them, best match first)."""

    format: str  # "new", "old" or "compat" (old table followed by the new one)
    entries: tuple[CacheEntry, ...]

    def lookup(self, soname: str) -> tuple[CacheEntry, ...]:
        return self._index().get(soname, ())

    def _index(self) -> dict[str, tuple[CacheEntry, ...]]:
        index = self.__dict__.get("_by_name")
        if index is None:
            grouped: dict[str, list[CacheEntry]] = {}
            for entry in self.entries:
                grouped.setdefault(entry.soname, []).append(entry)
            index = {k: tuple(v) for k, v in grouped.items()}
            object.__setattr__(self, "_by_name", index)
        return index


def _cstr(data: bytes, offset: int) -> str:
    if not 0 <= offset < len(data):
        raise LdCacheFormatError(f"string offset {offset} outside the file")
    end = data.find(b"\0", offset)
    if end < 0:
        raise LdCacheFormatError("unterminated string")
    return data[offset:end].decode("utf-8", "surrogateescape")


def _byte_order(flags: int) -> str:
    """The cache's byte order from its header flags (0: unknown, assume little)."""
    return ">" if flags & 3 == 3 else "<"


def _parse_new(data: bytes, base: int) -> tuple[CacheEntry, ...]:
    if len(data) < base + _NEW_HEADER_SIZE:
        raise LdCacheFormatError("truncated header")
    flags_byte = data[base + 28]
    end = _byte_order(flags_byte)
    nlibs, _len_strings = struct.unpack_from(end + "II", data, base + 20)
    (extension_offset,) = struct.unpack_from(end + "I", data, base + 32)
    entry = struct.Struct(end + _NEW_ENTRY.format)
    table = base + _NEW_HEADER_SIZE
    if table + nlibs * entry.size > len(data):
        raise LdCacheFormatError("entry table runs past the end of the file")
    hwcap_names = _hwcap_names(data, end, extension_offset, base)
    out = []
    for i in range(nlibs):
        flags, key, value, osversion, hwcap = entry.unpack_from(data, table + i * entry.size)
        path = _cstr(data, base + value)
        if hwcap & HWCAP_EXTENSION and (hwcap & 0xFFFFFFFF) >= len(hwcap_names):
            raise LdCacheFormatError("hwcap index outside the extension table")
        out.append(CacheEntry(_cstr(data, base + key), path, flags, osversion, hwcap))
    return tuple(out)


def _hwcap_names(data: bytes, end: str, offset: int, base: int) -> list[str]:
    """Names from the glibc-hwcaps extension section (empty when there is none)."""
    if offset == 0 or offset % 4 or offset + 8 > len(data):
        return []
    magic, count = struct.unpack_from(end + "II", data, offset)
    if magic != _EXTENSION_MAGIC:
        return []
    names: list[str] = []
    for i in range(count):
        at = offset + 8 + i * 16
        if at + 16 > len(data):
            break
        tag, _flags, sec_off, sec_size = struct.unpack_from(end + "IIII", data, at)
        if tag != _EXTENSION_TAG_HWCAPS or sec_off + sec_size > len(data):
            continue
        for j in range(sec_size // 4):
            (string_at,) = struct.unpack_from(end + "I", data, sec_off + 4 * j)
            names.append(_cstr(data, base + string_at))
    return names


def parse_ld_so_cache(data: bytes) -> LdCache:
    """Parse cache bytes; raises :class:`LdCacheFormatError` for anything else."""
    if data.startswith(NEW_MAGIC):
        return LdCache("new", _parse_new(data, 0))
    if not data.startswith(OLD_MAGIC):
        raise LdCacheFormatError("no ld.so cache magic")
    header = len(OLD_MAGIC) + 1  # magic is padded to 12 bytes before nlibs
    if len(data) < header + 4:
        raise LdCacheFormatError("truncated header")
    (nlibs,) = struct.unpack_from("<I", data, header)
    if nlibs > (len(data) - header - 4) // _OLD_ENTRY.size:
        (nlibs,) = struct.unpack_from(">I", data, header)
        end = ">"
    else:
        end = "<"
    entries_at = header + 4
    strings_at = entries_at + nlibs * _OLD_ENTRY.size
    if strings_at > len(data):
        raise LdCacheFormatError("entry table runs past the end of the file")
    # The new table, if any, follows at the next 8-byte boundary.
    new_at = (strings_at + 7) & ~7
    if data[new_at : new_at + len(NEW_MAGIC)] == NEW_MAGIC:
        return LdCache("compat", _parse_new(data, new_at))
    entry = struct.Struct(end + _OLD_ENTRY.format)
    out = []
    for i in range(nlibs):
        flags, key, value = entry.unpack_from(data, entries_at + i * entry.size)
        out.append(
            CacheEntry(_cstr(data, strings_at + key), _cstr(data, strings_at + value), flags)
        )
    return LdCache("old", tuple(out))


def read_ld_so_cache(rootfs: RootFS, path: str = "/etc/ld.so.cache") -> LdCache | None:
    """The image's cache, or None when it is absent or unreadable as a cache."""
    data = rootfs.read_bytes(path)
    if data is None:
        return None
    try:
        return parse_ld_so_cache(data)
    except (LdCacheFormatError, struct.error):
        return None


def read_ld_so_conf(rootfs: RootFS, path: str = "/etc/ld.so.conf") -> tuple[str, ...]:
    """Directories named by ``ld.so.conf`` and the files it includes, in order.

    Follows ldconfig's syntax: ``#`` comments, one directory per line (an old
    ``dir=TYPE`` suffix is dropped), ``include PATTERN...`` lines whose relative
    patterns are taken from the including file's directory, and ``hwcap`` lines
    (ignored).  Include loops are cut; missing files contribute nothing.
    """
    dirs: list[str] = []
    seen_files: set[str] = set()

    def parse(conf: str) -> None:
        canonical = rootfs.resolve(conf).path
        if canonical in seen_files:
            return
        seen_files.add(canonical)
        text = rootfs.read_text(conf)
        if text is None:
            return
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            words = line.split()
            if words[0] == "include":
                for pattern in words[1:]:
                    if not pattern.startswith("/"):
                        pattern = join(os.path.dirname(conf) or "/", pattern)
                    for match in rootfs.glob(pattern):
                        parse(match)
                continue
            if words[0] == "hwcap":
                continue
            directory = line.split("=", 1)[0].strip()
            if directory.startswith("/"):
                directory = lexical(directory)
                if directory not in dirs:
                    dirs.append(directory)

    parse(path)
    return tuple(dirs)
