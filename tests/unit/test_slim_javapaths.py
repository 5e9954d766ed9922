"""java-classpath: every class path entry a JVM is started with, and jars' Class-Path;
java-webapps: what a servlet container that ran deploys and loads on demand."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable

from ocislim.slim.javapaths import (
    classpath_seeds,
    classpath_words,
    container_seeds,
    is_jvm,
    manifest_classpath,
    script_classpaths,
    system_properties,
    tomcat_app_bases,
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


# The java command line Debian's catalina.sh runs (its variables expanded by the shell).
TOMCAT_JVM = [
    "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
    "-Djava.util.logging.config.file=/var/lib/tomcat10/conf/logging.properties",
    "-classpath", "/usr/share/tomcat10/bin/bootstrap.jar:/usr/share/tomcat10/bin/tomcat-juli.jar",
    "-Dcatalina.base=/var/lib/tomcat10", "-Dcatalina.home=/usr/share/tomcat10",
    "-Djava.io.tmpdir=/tmp", "org.apache.catalina.startup.Bootstrap", "start",
]  # fmt: skip
SERVER_XML = """<Server port="-1"><Service name="Catalina"><Engine name="Catalina">
  <Host name="localhost" appBase="webapps" unpackWARs="true"></Host>
  <Host name="other" appBase='/srv/other-apps'/>
  <Host name="templated" appBase="${catalina.base}/x"/>
</Engine></Service></Server>
"""


def tomcat_members() -> list[M]:
    return [
        M("var/lib/tomcat10/conf/server.xml", data=SERVER_XML.encode()),
        M("var/lib/tomcat10/conf/Catalina/localhost/shop.xml",
          data=b'<Context docBase="/opt/shop" reloadable="false"/>'),
        M("var/lib/tomcat10/webapps/ROOT/index.jsp", data=b"<%= 1 + 2 %>"),
        M("var/lib/tomcat10/webapps/ROOT/WEB-INF/web.xml", data=b"<web-app/>"),
        M("var/lib/tomcat10/lib/local.jar", data=jar(None)),
        M("var/lib/tomcat10/logs/catalina.log", data=b"old log"),
        M("usr/share/tomcat10/lib/jasper.jar", "symlink", link="../../java/jasper.jar"),
        M("usr/share/java/jasper.jar", data=jar(None)),
        M("usr/share/java/unrelated.jar", data=jar(None)),
        M("usr/share/tomcat10/bin/bootstrap.jar", data=jar(None)),
        M("srv/other-apps/api/WEB-INF/web.xml", data=b"<web-app/>"),
        M("opt/shop/index.html", data=b"<p>shop</p>"),
        M("opt/elsewhere/x.html", data=b"no"),
    ]  # fmt: skip


def test_a_tomcat_that_ran_keeps_its_applications_configuration_and_libraries() -> None:
    members = tomcat_members()
    tree = tree_from(members)
    text = files(members)
    seeds = container_seeds(
        tree,
        [["/bin/sh", "/usr/share/tomcat10/bin/catalina.sh", "run"], TOMCAT_JVM],
        lambda path: text[path].decode() if path in text else None,
    )
    planner = Planner(tree)
    planner.add(seeds)
    kept = set(planner.kept_paths)
    assert {
        "/var/lib/tomcat10/webapps/ROOT/index.jsp",  # a page the probe never asked for
        "/var/lib/tomcat10/webapps/ROOT/WEB-INF/web.xml",
        "/var/lib/tomcat10/conf/server.xml",
        "/var/lib/tomcat10/lib/local.jar",
        "/usr/share/tomcat10/lib/jasper.jar",  # the link, and the jar it names
        "/usr/share/java/jasper.jar",
        "/srv/other-apps/api/WEB-INF/web.xml",  # a second Host's absolute appBase
        "/opt/shop/index.html",  # a Context file's docBase
    } <= kept
    assert "/var/lib/tomcat10/logs/catalina.log" not in kept  # logs are no application
    assert "/usr/share/java/unrelated.jar" not in kept
    assert "/opt/elsewhere/x.html" not in kept
    assert all(s.reason.rule == "java-webapps" for s in seeds)


def test_a_jvm_without_a_container_keeps_nothing_by_this_rule() -> None:
    tree = tree_from(tomcat_members())
    plain = ["/usr/bin/java", "-Dfoo=bar", "-Dcatalina.base=relative/dir", "-jar", "/app.jar"]
    assert container_seeds(tree, [plain], lambda path: None) == []
    assert container_seeds(tree, [], lambda path: None) == []


def test_jvm_command_lines_are_read_as_the_jvm_reads_them() -> None:
    assert is_jvm(TOMCAT_JVM) and is_jvm(["java", "-version"])
    assert not is_jvm(["/bin/sh", "java"]) and not is_jvm([])
    props = system_properties([*TOMCAT_JVM, "-Dcatalina.base=/later"])
    assert props["catalina.base"] == "/later" and props["catalina.home"] == "/usr/share/tomcat10"
    assert tomcat_app_bases(SERVER_XML) == ["webapps", "/srv/other-apps"]  # not ${...}


def test_the_traced_jvm_s_class_path_is_kept_when_the_launcher_spelled_variables() -> None:
    members = [
        M("usr/share/tomcat10/bin/bootstrap.jar", data=jar(None)),
        M("usr/share/tomcat10/bin/tomcat-juli.jar", data=jar(None)),
        M("usr/share/tomcat10/bin/catalina.sh",
          data=b'#!/bin/sh\nexec java -classpath "$CLASSPATH" Bootstrap\n', mode=0o755),
    ]  # fmt: skip
    tree = tree_from(members)
    args = (["/usr/share/tomcat10/bin/catalina.sh"], [], "/", lambda p: None, opener(members))
    assert classpath_seeds(tree, [["catalina.sh", "run"]], *args) == []
    seeds = classpath_seeds(tree, [["catalina.sh", "run"]], *args, traced=[TOMCAT_JVM])
    assert {s.path for s in seeds} >= {
        "/usr/share/tomcat10/bin/bootstrap.jar",
        "/usr/share/tomcat10/bin/tomcat-juli.jar",
    }
    assert all(s.reason.by == "the traced JVM" for s in seeds)
