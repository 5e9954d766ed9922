"""The ``plugin-dirs`` rule: a loaded plugin keeps the other plugins of its directory.

Programs load modules by name from a directory of their own (ImageMagick's coders,
gdk-pixbuf's loaders, SASL mechanisms, GStreamer and Qt plugins): the probe loads the
one it needed, the next run another (``convert a.png b.jpg`` needs ``jpeg.so``).  When
the trace touched a shared object in a directory that is not a library search
directory, this rule keeps the shared objects and libtool ``.la`` files beside it
(not its subdirectories); the ELF closure of each follows as for any kept object.

Directories another rule decides on precisely are left to it: the web servers' and
PHP's module directories (only the enabled modules), glibc's ``gconv``, and the
runtimes' trees (Python, Perl, Ruby, Node, the JVM, PostgreSQL).  Pure.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable

from ocislim.errors import UnsafeArchiveError
from ocislim.layers.tree import FileTree
from ocislim.slim.langrules import LangRule
from ocislim.slim.patterns import PatternSet
from ocislim.slim.plan import Reason, Seed

PLUGIN_DIR_RULES: tuple[LangRule, ...] = (
    LangRule(
        "plugin-dirs",
        "a shared object loaded from a directory of plugins (not a library search "
        "directory) keeps the other shared objects and .la files of that directory",
    ),
)

# Where the dynamic loader finds libraries by itself: a library there is a library.
_LIBRARY_DIRS = PatternSet(
    (
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/lib/*-linux-gnu*",
        "/usr/lib",
        "/usr/lib32",
        "/usr/lib64",
        "/usr/libx32",
        "/usr/lib/*-linux-gnu*",
        "/usr/local/lib",
        "/usr/local/lib64",
        "/usr/local/lib/*-linux-gnu*",
        "/**/tls",
        "/**/haswell",
        "/**/x86_64",
        "/**/glibc-hwcaps/**",
    )
)
# Module directories other rules keep precisely (or whole), and runtimes' own trees.
DECIDED_ELSEWHERE = PatternSet(
    (
        "/usr/lib/apache2/**",
        "/usr/lib/httpd/**",
        "/usr/lib64/httpd/**",
        "/usr/local/apache2/**",
        "/usr/lib/nginx/**",
        "/usr/lib/php/**",
        "/usr/local/lib/php/**",
        "/usr/lib/*/gconv/**",
        "/usr/lib64/gconv/**",
        "/usr/lib/jvm/**",
        "/opt/java/**",
        "/usr/lib/python*/**",
        "/usr/local/lib/python*/**",
        "/**/site-packages/**",
        "/**/dist-packages/**",
        "/**/node_modules/**",
        "/usr/lib/*/perl*/**",
        "/usr/lib/perl5/**",
        "/usr/local/lib/perl5/**",
        "/usr/lib/ruby/**",
        "/usr/lib/*/ruby/**",
        "/usr/local/lib/ruby/**",
        "/var/lib/gems/**",
        "/usr/lib/postgresql/**",
        "/usr/local/lib/postgresql/**",
    )
)
_PLUGIN_NAMES = PatternSet(("*.so", "*.la"))
MAX_PLUGINS = 2000  # per directory


def is_shared_object_name(name: str) -> bool:
    """Whether a file name is that of a shared object (``x.so``, ``libx.so.1.2``)."""
    return name.endswith(".so") or ".so." in name


class PluginDirs:
    """The rule's seeds for the plugin directories among touched paths."""

    def __init__(self, tree: FileTree, enabled: Collection[str]) -> None:
        self._tree = tree
        self._on = "plugin-dirs" in enabled
        self._done: set[str] = set()  # directories already kept

    def seeds(self, touched: Iterable[str]) -> list[Seed]:
        """Seeds for the directories of plugins among ``touched`` not yet kept."""
        if not self._on:
            return []
        out: list[Seed] = []
        for path in touched:
            if not is_shared_object_name(posixpath.basename(path)):
                continue
            try:
                resolved = self._tree.resolve(path)
            except UnsafeArchiveError:
                continue
            directory = posixpath.dirname(resolved)
            if directory in self._done:
                continue
            self._done.add(directory)
            if _LIBRARY_DIRS.match(directory) or DECIDED_ELSEWHERE.match(directory):
                continue
            out += self._plugins(directory, resolved)
        return out

    def _plugins(self, directory: str, loaded: str) -> list[Seed]:
        entry = self._tree.get(directory)
        if entry is None or not entry.is_dir:
            return []
        names = [
            n
            for n, child in sorted((entry.children or {}).items())
            if not child.is_dir and _PLUGIN_NAMES.match(f"/{n}") is not None
        ]
        if len(names) < 2 or len(names) > MAX_PLUGINS:
            return []  # a lone object is a private library, not a directory of plugins
        why = Reason("lazy", detail=f"a plugin beside {loaded}", rule="plugin-dirs", by=loaded)
        return [Seed(f"{directory}/{n}", why) for n in names if f"{directory}/{n}" != loaded]
