"""java-classpath: every class path entry a JVM is started with, and jars' Class-Path."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable

from ocislim.slim.javapaths import (
    classpath_seeds,
    classpath_words,
    manifest_classpath,
    script_classpaths,
)
from ocislim.slim.plan import Planner
from tests.synth import M
from tests.unit.slim_synth import tree_from


def jar(manifest: str | None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        if manifest is not None:
            z.writestr("META-INF/MANIFEST.MF", manifest)
        z.writestr("a/B.class", b"\xca\xfe\xba\xbe")
    return buf.getvalue()


def files(members: list[M]) -> dict[str, bytes]:
    return {"/" + m.name.strip("/"): m.data for m in members if m.kind == "file"}


def opener(members: list[M]) -> Callable[[str], int | None]:
    """open_file over the regular files among ``members`` (a real descriptor each)."""
    data = files(members)

    def open_file(path: str) -> int | None:
        if path not in data:
            return None
        fd = os.memfd_create("jar")
        os.write(fd, data[path])
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    return open_file


def test_classpath_words_reads_every_form() -> None:
    words = ["java", "-Xmx1g", "-cp", "/app/a.jar:/lib/*", "--class-path=/x", "-jar", "/app.jar"]
    assert classpath_words(words) == ["/app/a.jar:/lib/*", "/x", "/app.jar"]
    assert classpath_words(["sh", "-c", "exec java -classpath '/o p/q.jar' Main"]) == ["/o p/q.jar"]
    assert classpath_words(["env", "CLASSPATH=/c.jar", "java", "Main"]) == ["/c.jar"]


def test_a_launcher_script_and_a_manifest_are_read() -> None:
    script = (
        '#!/bin/sh\n# a Debian launcher\nexec java -cp /usr/share/java/tool.jar:$EXTRA Main "$@"\n'
    )
    assert script_classpaths(script) == ["/usr/share/java/tool.jar:$EXTRA"]
    manifest = "Manifest-Version: 1.0\r\nClass-Path: lib/one.jar ../java/tw\r\n o%20three.jar\r\n"
    assert manifest_classpath(manifest.encode()) == ["lib/one.jar", "../java/two three.jar"]


def test_every_entry_is_kept_and_manifests_are_followed() -> None:
    members = [
        M("usr/bin/tool", data=b"#!/bin/sh\nexec java -cp /usr/share/java/tool.jar Main\n",
          mode=0o755),
        M("usr/share/java/tool-1.0.jar", data=jar("Class-Path: dep.jar\n")),
        M("usr/share/java/tool.jar", "symlink", link="tool-1.0.jar"),
        M("usr/share/java/dep.jar", data=jar("Class-Path: file:/opt/abs.jar http://x/y.jar\n")),
        M("opt/abs.jar", data=jar(None)),
        M("usr/share/java/unrelated.jar", data=jar(None)),
        M("app/lib/x.jar", data=jar(None)),
        M("app/lib/y.JAR", data=jar(None)),
        M("app/lib/notes.txt", data=b"not a jar"),
        M("app/classes/a/B.class", data=b"\xca\xfe\xba\xbe"),
    ]  # fmt: skip
    tree = tree_from(members)
    seeds = classpath_seeds(
        tree,
        [["java", "-cp", "lib/*:classes", "Main"]],
        ["/usr/bin/tool"],
        ["CLASSPATH=/missing.jar"],
        "/app",
        lambda path: files(members).get(path, b"").decode("utf-8", "replace") or None,
        opener(members),
    )
    planner = Planner(tree)
    planner.add(seeds)
    kept = set(planner.kept_paths)
    assert {
        "/usr/share/java/tool.jar",
        "/usr/share/java/tool-1.0.jar",
        "/usr/share/java/dep.jar",  # the Class-Path of tool's manifest
        "/opt/abs.jar",  # dep's, as a file: URL
        "/app/lib/x.jar",
        "/app/lib/y.JAR",
        "/app/classes/a/B.class",
    } <= kept
    assert "/usr/share/java/unrelated.jar" not in kept
    assert "/app/lib/notes.txt" not in kept  # lib/* names jars only
    assert all(s.reason.rule == "java-classpath" for s in seeds)


def test_a_compiled_program_is_no_launcher_script() -> None:
    # The interpreter binary the command runs is among the scripts read: its bytes spell
    # words like "-jar" but give no class path (and must not cost a shell parse per line).
    assert script_classpaths("\x7fELF\x02\x01\x01 java -jar /not/a.jar\n-cp /x.jar") == []
