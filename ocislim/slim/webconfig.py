"""What a web server's configuration names: the modules it loads and the directories it serves.

Reads the enabled configuration files of nginx and httpd in the merged tree (every
file below the configuration directories except those of a ``*-available``
directory, which count only through a ``*-enabled`` link) and finds, with
regular expressions over their text:

- the directories served (nginx ``root`` and ``alias``; httpd ``DocumentRoot``,
  ``Alias``, ``ScriptAlias``), never a system directory or a package root;
- the CGI directories (``ScriptAlias``);
- the modules an enabled ``LoadModule`` line loads, relative paths taken from
  ``ServerRoot``.

Pure: the result depends on the tree and on ``read_text``; nothing is cached
between calls.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence

from ocislim.errors import UnsafeArchiveError
from ocislim.layers.tree import Entry, FileTree
from ocislim.slim.apprules import app_root

# Where a web server's configuration names the content it serves.
WEB_CONFIG_DIRS = ("/etc/nginx", "/etc/apache2", "/etc/httpd", "/usr/local/apache2/conf")
HTTPD_CONFIG_DIRS = ("/etc/apache2", "/etc/httpd", "/usr/local/apache2/conf")

_LOAD_MODULE = re.compile(r"^\s*LoadModule\s+\S+\s+[\"']?([^\s\"']+)", re.MULTILINE | re.IGNORECASE)
_SERVER_ROOT = re.compile(r"^\s*ServerRoot\s+[\"']?(/[^\s\"']*)", re.MULTILINE | re.IGNORECASE)
# nginx directives may share a line: ``location /s/ { alias /app/static/; }``.
_NGINX_ROOT = re.compile(r"(?:^|[{;])\s*(?:root|alias)\s+[\"']?(/[^\s;\"']*)", re.MULTILINE)
# Apache's directives are case-insensitive; Alias and ScriptAlias name the URL first.
_APACHE_ROOT = re.compile(
    r"^\s*(?:DocumentRoot|(?:Script)?Alias(?:Match)?\s+\S+)\s+[\"']?(/[^\s\"'$]*)",
    re.MULTILINE | re.IGNORECASE,
)
_APACHE_CGI = re.compile(
    r"^\s*ScriptAlias(?:Match)?\s+\S+\s+[\"']?(/[^\s\"'$]*)", re.MULTILINE | re.IGNORECASE
)


class WebConfig:
    """The enabled web server configuration of ``tree``; ``read_text(path)`` gives an
    in-image file's text, or None when it cannot be read."""

    def __init__(self, tree: FileTree, read_text: Callable[[str], str | None]) -> None:
        self.tree = tree
        self.read_text = read_text

    def served_dirs(self) -> list[str]:
        """The existing directories the configuration serves: the site's own content."""
        return self._dirs_named((_NGINX_ROOT, _APACHE_ROOT))

    def cgi_dirs(self) -> list[str]:
        """The existing directories the configuration runs as CGI (``ScriptAlias``)."""
        return self._dirs_named((_APACHE_CGI,))

    def httpd_modules(self) -> list[str]:
        """The existing modules httpd's enabled ``LoadModule`` lines load, sorted.

        Modules no enabled line names are never loaded by this configuration (nor
        their closures: libxml2 and ICU for ``mod_proxy_html``, libcurl for
        ``mod_md``)."""
        found: set[str] = set()
        for top in HTTPD_CONFIG_DIRS:
            texts = self._enabled_texts(top)
            server_root = top
            for text in texts:
                for match in _SERVER_ROOT.finditer(text):
                    server_root = match.group(1)
            for text in texts:
                for match in _LOAD_MODULE.finditer(text):
                    found.add(posixpath.normpath(posixpath.join(server_root, match.group(1))))
        return [path for path in sorted(found) if self.tree.get(self.canonical(path)) is not None]

    def canonical(self, path: str) -> str:
        """``path`` with the tree's links resolved; as given when it leaves the tree."""
        try:
            return self.tree.resolve(path)
        except UnsafeArchiveError:
            return path

    def _enabled_texts(self, top: str) -> list[str]:
        entry = self.tree.get(top)
        if entry is None or not entry.is_dir:
            return []
        return [
            self.read_text(self.canonical(child.path)) or ""
            for child in files_below(self.tree, top)
            if not _only_available(child.path)
        ]

    def _dirs_named(self, patterns: Sequence[re.Pattern[str]]) -> list[str]:
        found: set[str] = set()
        for top in WEB_CONFIG_DIRS:
            for text in self._enabled_texts(top):
                for pattern in patterns:
                    found.update(m.group(1) for m in pattern.finditer(text))
        out = []
        for path in sorted(found):
            path = posixpath.normpath(path)
            node = self.tree.get(self.canonical(path))
            if node is not None and node.is_dir and app_root(path) is not None:
                out.append(path)
        return out


def files_below(tree: FileTree, top: str) -> list[Entry]:
    """The non-directory entries below ``top`` (its own subtree only, links not followed)."""
    entry = tree.get(top)
    out: list[Entry] = []
    stack = [entry] if entry is not None and entry.is_dir else []
    while stack:
        node = stack.pop()
        for name in sorted(node.children or {}):
            child = (node.children or {})[name]
            if child.is_dir:
                stack.append(child)
            else:
                out.append(child)
    return out


def _only_available(path: str) -> bool:
    """A file of a ``*-available`` directory (Debian's ``sites-available``,
    ``mods-available``): configuration only through a ``*-enabled`` link to it."""
    return posixpath.basename(posixpath.dirname(path)).endswith("-available")
