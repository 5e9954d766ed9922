"""The command strings of compiled Java: string constants a class file runs as a program.

A Java application shipped as a jar runs programs from its bytecode, where no source
reader sees them.  javac compiles each way of running a program to a pattern of its own:

- ``new ProcessBuilder("convert", in, out)``, ``Runtime.exec(new String[] {"sh", "-c",
  cmd})`` and every other array of strings put the program first: ``iconst_0``, ``ldc``
  of the string, ``aastore``.  The first element of an array of strings is read as the
  program (an array of other strings gives a word that is seldom a program's name);
- ``Runtime.getRuntime().exec("ls -l")``: an ``ldc`` of the string just before an
  ``invokevirtual`` of ``java/lang/Runtime.exec``; the string is a command line.

The constant pool tells which constants are strings and which method an instruction
calls; the method bodies are scanned for the patterns without decoding every
instruction (a match inside other bytes needs a string constant at its index, so a
false match only names a word that may not be a program).

Hostile input is bounded: a class file over :data:`MAX_CLASS_BYTES`, a jar with more
than :data:`MAX_JAR_CLASSES` classes or :data:`MAX_JAR_BYTES` of them uncompressed is
read as far as the bounds go; a malformed file gives what was read before the fault.
Pure: bytes in, strings out.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from collections.abc import Iterator

CLASS_MAGIC = b"\xca\xfe\xba\xbe"
MAX_CLASS_BYTES = 4 << 20
MAX_JAR_CLASSES = 20_000
MAX_JAR_BYTES = 128 << 20

# Constant pool tags and the bytes each entry takes after its tag (Utf8 has a length).
_UTF8, _CLASS, _STRING, _METHODREF, _NAME_AND_TYPE = 1, 7, 8, 10, 12
_FIXED = {3: 4, 4: 4, 5: 8, 6: 8, 7: 2, 8: 2, 9: 4, 10: 4, 11: 4, 12: 4, 15: 3, 16: 2,
          17: 4, 18: 4, 19: 2, 20: 2}  # fmt: skip
_WIDE = (5, 6)  # long and double take two slots

# iconst_0, ldc #i (or ldc_w #ii), aastore: a string stored first in an array.
_FIRST_IN_ARRAY = re.compile(rb"\x03(?:\x12(.)|\x13(..))\x53", re.DOTALL)
# ldc #i (or ldc_w #ii), invokevirtual #mm: a string handed straight to a method.
_PASSED = re.compile(rb"(?:\x12(.)|\x13(..))\xb6(..)", re.DOTALL)


class _Pool:
    """The parts of a constant pool the patterns need."""

    def __init__(self) -> None:
        self.utf8: dict[int, str] = {}
        self.strings: dict[int, int] = {}  # String index -> its Utf8 index
        self.classes: dict[int, int] = {}  # Class index -> its name's Utf8 index
        self.methods: dict[int, tuple[int, int]] = {}  # Methodref -> (class, name-and-type)
        self.names: dict[int, int] = {}  # NameAndType -> its name's Utf8 index

    def string(self, index: int) -> str | None:
        utf8 = self.strings.get(index)
        return None if utf8 is None else self.utf8.get(utf8)

    def is_runtime_exec(self, index: int) -> bool:
        ref = self.methods.get(index)
        if ref is None:
            return False
        owner = self.utf8.get(self.classes.get(ref[0], -1))
        return owner == "java/lang/Runtime" and self.utf8.get(self.names.get(ref[1], -1)) == "exec"


def _pool(data: bytes) -> tuple[_Pool, int]:
    """The constant pool of the class file ``data`` and the offset after it."""
    pool = _Pool()
    count = struct.unpack_from(">H", data, 8)[0]
    pos, index = 10, 1
    while index < count:
        tag = data[pos]
        pos += 1
        if tag == _UTF8:
            length = struct.unpack_from(">H", data, pos)[0]
            pool.utf8[index] = data[pos + 2 : pos + 2 + length].decode("utf-8", "replace")
            pos += 2 + length
        elif tag in _FIXED:
            if tag == _STRING:
                pool.strings[index] = struct.unpack_from(">H", data, pos)[0]
            elif tag == _CLASS:
                pool.classes[index] = struct.unpack_from(">H", data, pos)[0]
            elif tag == _METHODREF:
                pool.methods[index] = struct.unpack_from(">HH", data, pos)
            elif tag == _NAME_AND_TYPE:
                pool.names[index] = struct.unpack_from(">H", data, pos)[0]
            pos += _FIXED[tag]
            index += 1 if tag in _WIDE else 0
        else:
            raise ValueError(f"constant pool tag {tag}")
        index += 1
    return pool, pos


def class_commands(data: bytes) -> list[str]:
    """The command strings of the class file ``data``, in order, each once: the first
    string of every array of strings, and every string passed to ``Runtime.exec``.
    Not a class file, or a malformed one: what was found before the fault (nothing)."""
    if not data.startswith(CLASS_MAGIC) or len(data) > MAX_CLASS_BYTES:
        return []
    try:
        pool, code_start = _pool(data)
    except (ValueError, IndexError, struct.error):
        return []
    code = data[code_start:]
    found: dict[str, None] = {}
    for match in _FIRST_IN_ARRAY.finditer(code):
        index = match.group(1)[0] if match.group(1) else int.from_bytes(match.group(2), "big")
        if (text := pool.string(index)) is not None:
            found[text] = None
    for match in _PASSED.finditer(code):
        index = match.group(1)[0] if match.group(1) else int.from_bytes(match.group(2), "big")
        text = pool.string(index)
        if text is not None and pool.is_runtime_exec(int.from_bytes(match.group(3), "big")):
            found[text] = None
    return list(found)


def jar_commands(data: bytes) -> Iterator[str]:
    """The command strings of every class in the jar (zip) ``data``, class by class
    (a string may come once per class), within the bounds of the module docstring."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [i for i in archive.infolist() if i.filename.endswith(".class")]
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    budget = MAX_JAR_BYTES
    for info in members[:MAX_JAR_CLASSES]:
        if info.file_size > MAX_CLASS_BYTES or info.file_size > budget:
            continue
        budget -= info.file_size
        try:
            with archive.open(info) as member:
                body = member.read(MAX_CLASS_BYTES + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
            continue
        yield from class_commands(body)
