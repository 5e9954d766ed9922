"""Command strings of compiled Java: classes built by javac, and hostile bytes."""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from ocislim.slim.classfiles import CLASS_MAGIC, class_commands, jar_commands
from tests.tools import require_tool

SPAWN = """\
import java.util.List;
public class Spawn {
    static final String[] NAMES = {"alpha", "beta"};
    public static void main(String[] a) throws Exception {
        new ProcessBuilder("convert", "in.png", "out.jpg").start();
        Runtime.getRuntime().exec(new String[] {"/bin/echo", "x"});
        Runtime.getRuntime().exec("sort -r /tmp/x");
        System.out.println("usage: not a command");
        String.join("-", "left", "right");
    }
}
"""


@pytest.fixture(scope="module")
def spawn_class(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    javac = require_tool("javac")
    work = tmp_path_factory.mktemp("javac")
    (work / "Spawn.java").write_text(SPAWN)
    subprocess.run([javac, "-d", str(work), str(work / "Spawn.java")], check=True)
    return (work / "Spawn.class").read_bytes()


def test_javac_output_gives_the_programs_first_and_the_exec_strings(spawn_class: bytes) -> None:
    commands = class_commands(spawn_class)
    assert {"convert", "/bin/echo", "sort -r /tmp/x"} <= set(commands)
    # A printed message and later array elements are not commands.
    assert not {"usage: not a command", "in.png", "x", "beta", "right"} & set(commands)


def test_a_jar_is_read_class_by_class(spawn_class: bytes, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Main-Class: Spawn\n")
        jar.writestr("app/Spawn.class", spawn_class)
        jar.writestr("app/notes.txt", b"\x03\x12\x01\x53")
    assert "convert" in list(jar_commands(buffer.getvalue()))


def _class(pool: list[bytes], code: bytes) -> bytes:
    return CLASS_MAGIC + struct.pack(">HHH", 0, 52, len(pool) + 1) + b"".join(pool) + code


def _utf8(text: str) -> bytes:
    return struct.pack(">BH", 1, len(text)) + text.encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a class",
        CLASS_MAGIC,  # no pool count
        _class([_utf8("convert"), struct.pack(">BH", 8, 1)], b"")[:-3],  # cut in the pool
        _class([b"\x63"], b"\x03\x12\x01\x53"),  # an unknown tag
        _class([_utf8("x" * 10)], b"")[:20],  # a Utf8 longer than the file
    ],
)
def test_malformed_classes_give_nothing(data: bytes) -> None:
    assert class_commands(data) == []


def test_only_string_constants_count() -> None:
    pool = [_utf8("convert"), struct.pack(">BH", 8, 1), _utf8("gzip")]
    # #2 is the String "convert"; #3 is a bare Utf8, which no ldc can load.
    data = _class(pool, b"\x03\x12\x02\x53" + b"\x03\x12\x03\x53" + b"\x03\x12\x09\x53")
    assert class_commands(data) == ["convert"]


def test_a_jar_that_is_not_a_zip_or_a_bomb_is_bounded() -> None:
    assert list(jar_commands(b"PK\x03\x04 broken")) == []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as jar:
        jar.writestr("Big.class", CLASS_MAGIC + b"\x00" * (8 << 20))  # over the class bound
    assert list(jar_commands(buffer.getvalue())) == []
