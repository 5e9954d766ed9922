"""Java's lazily opened paths: ``java-classpath`` and ``java-webapps``.

``java-classpath`` keeps every entry of the class path a JVM is started with.

The JVM's class loader opens class path entries lazily, in order, as lookups reach
them: a jar that only an untested code path needs is never opened by the probe, so a
trace alone drops it and that path fails with ``NoClassDefFoundError``.  This rule
keeps every entry of the class path the command gives (``-cp``, ``-classpath``,
``--class-path``, ``-jar``, the ``CLASSPATH`` variable), in the command itself, in a
``sh -c`` string or in a launcher script the command names (Debian's
``/usr/bin/TOOL`` scripts), and the ``Class-Path`` of each kept jar's manifest, in turn.

An entry holding a shell variable (``$LIB/x.jar``) cannot be read without running
the script and is skipped; the traced JVM's own command line (after the launcher
script expanded its variables) is read too.

``java-webapps`` keeps what a servlet container that ran deploys and loads on
demand: its web applications (a JSP, a page or a class a request the probe did not
make needs), its configuration and its library directories, found from the
``-D`` options of the traced JVM (Tomcat's ``catalina.base``/``catalina.home`` and the
``appBase`` of each ``<Host>`` and ``docBase`` of each ``<Context>`` in its
configuration; Jetty's ``jetty.base``/``jetty.home``; WildFly's
``jboss.server.base.dir``/``jboss.home.dir``).

Pure apart from the ``read_text`` and ``open_file`` callables.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import unquote

from ocislim.layers.tree import FileTree
from ocislim.slim.langrules import LangRule
from ocislim.slim.plan import Reason, Seed

JAVA_PATH_RULES: tuple[LangRule, ...] = (
    LangRule(
        "java-classpath",
        "every entry of a JVM's class path (-cp, -classpath, --class-path, -jar, CLASSPATH; "
        "in the command, a sh -c string or a launcher script it names) and the Class-Path "
        "of each kept jar's manifest: the JVM opens a jar only when a lookup reaches it",
    ),
    LangRule(
        "java-webapps",
        "a servlet container that ran keeps its web applications, configuration and "
        "library directories (Tomcat's catalina.base webapps/appBase/docBase, conf, lib; "
        "Jetty's jetty.base and jetty.home; WildFly's deployments, configuration, modules)",
    ),
)

_PATH_FLAGS = frozenset({"-cp", "-classpath", "--class-path"})
_MANIFEST = "META-INF/MANIFEST.MF"
_MANIFEST_LIMIT = 1 << 20
MAX_JARS = 10_000


def classpath_words(words: Sequence[str]) -> list[str]:
    """The class path strings and ``-jar`` files among a command's words (every
    ``sh -c`` string read as words too)."""
    out: list[str] = []
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else None
        if word in _PATH_FLAGS and following is not None:
            out.append(following)
        elif word.startswith("--class-path="):
            out.append(word.split("=", 1)[1])
        elif word == "-jar" and following is not None:
            out.append(following)
        elif word.startswith("CLASSPATH="):
            out.append(word.split("=", 1)[1])
        elif " " in word or "\n" in word:
            out += classpath_words(_split(word))
    return out


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote: fall back to plain words
        return text.split()


_SCRIPT_MARKS = ("-cp", "-classpath", "--class-path", "-jar", "CLASSPATH=")


def script_classpaths(text: str) -> list[str]:
    """The class path strings a launcher script spells out, line by line (nothing for a
    compiled program: its bytes are no script)."""
    if text.startswith("\x7fELF"):
        return []
    out: list[str] = []
    for line in text.splitlines():
        if any(mark in line for mark in _SCRIPT_MARKS):
            out += classpath_words(_split(line))
    return out


def manifest_classpath(data: bytes) -> list[str]:
    """The ``Class-Path`` entries of a jar manifest (continuation lines joined)."""
    lines: list[str] = []
    for raw in data.decode("utf-8", "replace").splitlines():
        if raw.startswith(" ") and lines:
            lines[-1] += raw[1:]
        else:
            lines.append(raw)
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "class-path":
            return [unquote(v) for v in value.split()]
    return []


def classpath_seeds(
    tree: FileTree,
    commands: Iterable[Sequence[str]],
    scripts: Iterable[str],
    env: Iterable[str],
    workdir: str,
    read_text: Callable[[str], str | None],
    open_file: Callable[[str], int | None],
    traced: Iterable[Sequence[str]] = (),
) -> list[Seed]:
    """Seeds keeping every class path entry ``commands`` (argvs), ``scripts`` (in-image
    launcher scripts), ``traced`` (the argv of JVMs the trace saw) and the ``CLASSPATH``
    of ``env`` name, relative to ``workdir``, and the manifest ``Class-Path`` of each
    jar, in turn."""
    found: list[tuple[str, str]] = []  # (class path string, what names it)
    for argv in commands:
        found += [(p, "the command") for p in classpath_words(list(argv))]
    for argv in traced:
        found += [(p, "the traced JVM") for p in classpath_words(list(argv))]
    for script in scripts:
        text = read_text(script) or ""
        if "java" in text:
            found += [(p, script) for p in script_classpaths(text)]
    found += [(item.split("=", 1)[1], "CLASSPATH") for item in env if item.startswith("CLASSPATH=")]
    out: list[Seed] = []
    queue: deque[tuple[str, str]] = deque()
    for classpath, named_by in found:
        for element in classpath.split(":"):
            if element and "$" not in element and "`" not in element:
                queue.append((posixpath.normpath(posixpath.join(workdir, element)), named_by))
    done: set[str] = set()
    while queue and len(done) < MAX_JARS:
        path, named_by = queue.popleft()
        if path in done:
            continue
        done.add(path)
        why = Reason("lazy", detail=f"class path entry named by {named_by}",
                     rule="java-classpath", by=named_by)  # fmt: skip
        if path.endswith("/*"):  # every jar of the directory, as the JVM expands it
            directory = tree.follow(path[:-2])
            children = (directory.children or {}) if directory and directory.is_dir else {}
            queue += [(f"{path[:-2]}/{n}", named_by) for n in sorted(children)
                      if n.lower().endswith(".jar")]  # fmt: skip
            continue
        entry = tree.follow(path)
        if entry is None:
            continue
        out.append(Seed(path, why))  # a link, and what it names
        if entry.is_dir:
            out.append(Seed(entry.path, why, recursive=True))
            continue
        base = posixpath.dirname(entry.path)
        for item in _jar_classpath(open_file, entry.path):
            if item.startswith("file:"):
                item = item[len("file:") :]
            elif ":" in item.split("/", 1)[0]:
                continue  # another URL scheme: nothing in the image
            queue.append((posixpath.normpath(posixpath.join(base, item)), entry.path))
    return out


def _jar_classpath(open_file: Callable[[str], int | None], path: str) -> list[str]:
    fd = open_file(path)
    if fd is None:
        return []
    try:
        with os.fdopen(fd, "rb") as fh, zipfile.ZipFile(fh) as jar:
            info = jar.getinfo(_MANIFEST)
            if info.file_size > _MANIFEST_LIMIT:
                return []
            with jar.open(info) as member:
                return manifest_classpath(member.read(_MANIFEST_LIMIT))
    except (KeyError, OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError):
        return []


def is_jvm(argv: Sequence[str]) -> bool:
    """Whether ``argv`` starts a JVM (its program is named ``java``)."""
    return bool(argv) and posixpath.basename(argv[0]) == "java"


def system_properties(argv: Sequence[str]) -> dict[str, str]:
    """The ``-Dname=value`` options of a JVM command line (the last of each name wins)."""
    out: dict[str, str] = {}
    for word in argv[1:]:
        if word.startswith("-D") and "=" in word:
            name, value = word[2:].split("=", 1)
            out[name] = value
    return out


# Per container: (property naming its base, property naming its home, directories kept
# below the base, directories kept below the home).
_CONTAINERS = (
    ("catalina.base", "catalina.home", ("conf", "lib", "webapps"), ("lib", "conf")),
    ("jetty.base", "jetty.home", ("webapps", "resources", "lib", "start.d", "etc"),
     ("lib", "etc", "modules")),
    ("jboss.server.base.dir", "jboss.home.dir", ("deployments", "configuration", "lib"),
     ("modules", "jboss-modules.jar")),
)  # fmt: skip
_APP_BASE = re.compile(
    r"""<(?:Host|Context)\b[^>]*?\b(?:appBase|docBase)\s*=\s*["']([^"'$]+)["']"""
)
MAX_CONFIG_FILES = 200


def tomcat_app_bases(text: str) -> list[str]:
    """The ``appBase`` of each ``<Host>`` and ``docBase`` of each ``<Context>`` in a
    Tomcat configuration file (comments included: a commented-out one costs a
    directory, a missed one breaks the site)."""
    return _APP_BASE.findall(text)


def container_seeds(
    tree: FileTree, jvms: Iterable[Sequence[str]], read_text: Callable[[str], str | None]
) -> list[Seed]:
    """Seeds keeping, for each servlet container among the traced JVM command lines
    ``jvms``, its web applications, configuration and library directories whole."""
    out: list[Seed] = []
    for argv in jvms:
        props = system_properties(argv)
        for base_prop, home_prop, below_base, below_home in _CONTAINERS:
            base = props.get(base_prop) or props.get(home_prop)
            if not base or not base.startswith("/"):
                continue
            home = props.get(home_prop) or base
            why = Reason("lazy", detail=f"-D{base_prop}={base} of the traced JVM",
                         rule="java-webapps", by=base)  # fmt: skip
            wanted = [posixpath.join(base, d) for d in below_base]
            if home.startswith("/"):
                wanted += [posixpath.join(home, d) for d in below_home]
            if base_prop == "catalina.base":
                wanted += [posixpath.normpath(posixpath.join(base, b))
                           for b in _tomcat_configured(tree, base, read_text)]  # fmt: skip
            for path in dict.fromkeys(wanted):
                entry = tree.follow(path)
                if entry is None:
                    continue
                out.append(Seed(path, why))  # a link, and what it names
                out.append(Seed(entry.path, why, recursive=entry.is_dir))
    return out


def _tomcat_configured(
    tree: FileTree, base: str, read_text: Callable[[str], str | None]
) -> list[str]:
    """The app and document bases Tomcat's ``conf`` names: ``server.xml`` and the
    context files below ``conf/ENGINE/HOST/``."""
    conf = tree.follow(posixpath.join(base, "conf"))
    if conf is None or not conf.is_dir:
        return []
    files = [posixpath.join(conf.path, "server.xml")]
    for engine in (conf.children or {}).values():
        for host in (engine.children or {}).values() if engine.is_dir else ():
            if host.is_dir:
                files += [c.path for c in (host.children or {}).values() if c.path.endswith(".xml")]
    out: list[str] = []
    for path in files[:MAX_CONFIG_FILES]:
        out += tomcat_app_bases(read_text(path) or "")
    return out


# The JVM's option variables, and the options in them that name a file.
JAVA_OPTION_VARS = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS")
_JAVA_FILE_OPTIONS = (
    re.compile(r"^@(?P<path>.+)$"),
    re.compile(r"^-javaagent:(?P<path>[^=]+)"),
    re.compile(r"^-agentpath:(?P<path>[^=]+)"),
    re.compile(r"^-Djava\.security\.properties==?(?P<path>.+)$"),
    re.compile(r"^-Djava\.util\.logging\.config\.file=(?P<path>.+)$"),
    re.compile(r"^-Djava\.security\.policy==?(?P<path>.+)$"),
    re.compile(r"^-XX:(?:Flags|VMOptionsFile)=(?P<path>.+)$"),
)


def java_option_files(env: Iterable[str], workdir: str = "/") -> list[tuple[str, str]]:
    """(path, VARIABLE) for every file the JVM option variables in ``env`` (K=V items)
    name; relative paths are taken from ``workdir``.  Options that are not files
    (``file:`` URLs aside, which are read as paths) are ignored."""
    found: list[tuple[str, str]] = []
    for item in env:
        name, _, value = item.partition("=")
        if name not in JAVA_OPTION_VARS:
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            words = value.split()
        for word in words:
            for option in _JAVA_FILE_OPTIONS:
                match = option.match(word)
                if match is None:
                    continue
                path = match.group("path").removeprefix("file:")
                path = posixpath.normpath(posixpath.join(workdir or "/", path))
                found.append((path, name))
                break
    return found
