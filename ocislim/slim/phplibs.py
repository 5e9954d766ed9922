"""The ``php-library`` rule: a PHP library that was used is kept whole.

PHP loads a library's classes one file at a time, when the code first names them (an
autoloader maps class names to files), so a trace keeps only the classes one run
used and the next code path dies with ``Class "..." not found``.  A touched file below
PHP's shared include directories (Debian's ``/usr/share/php`` and ``/usr/share/pear``,
the official images' ``/usr/local/lib/php``) therefore keeps the library it belongs
to: every file its Debian package installs below those directories, or, without a
package database entry, the directory right below the include directory.  An
application's own Composer ``vendor`` directory is kept by ``app-whole``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ocislim.layers.tree import FileTree
from ocislim.slim.langrules import LangRule
from ocislim.slim.pkgrules import DpkgIndex
from ocislim.slim.plan import Reason, Seed

PHP_LIB_RULES: tuple[LangRule, ...] = (
    LangRule(
        "php-library",
        "a touched file of PHP's shared include directories (/usr/share/php, "
        "/usr/share/pear, /usr/local/lib/php) keeps its library: the files its Debian "
        "package installs there, or the directory below the include directory",
    ),
)

INCLUDE_ROOTS = ("/usr/share/php", "/usr/share/pear", "/usr/local/lib/php")
# Below /usr/local/lib/php, the extensions belong to php-runtime, not to a library.
_NOT_LIBRARIES = frozenset({"/usr/local/lib/php/extensions"})


class PhpLibraries:
    """Applies ``php-library`` (when in ``enabled``) to touched paths; remembers what it
    kept, so each library is added once."""

    def __init__(self, tree: FileTree, packages: DpkgIndex, enabled: Collection[str]) -> None:
        self.tree = tree
        self.packages = packages
        self.enabled = "php-library" in enabled
        self._done: set[str] = set()

    def seeds(self, touched: Iterable[str]) -> list[Seed]:
        """Seeds keeping the library of each of ``touched`` (canonical in-image paths)
        that lies below an include directory."""
        if not self.enabled:
            return []
        out: list[Seed] = []
        for path in touched:
            root = next((r for r in INCLUDE_ROOTS if path.startswith(r + "/")), None)
            if root is None:
                continue
            top = root + "/" + path[len(root) + 1 :].split("/", 1)[0]
            if top in _NOT_LIBRARIES or (top == path and not self._is_dir(top)):
                continue  # a file right in the include directory is its own library
            owner = self.packages.owner(path)
            key = f"package {owner}" if owner else top
            if key in self._done:
                continue
            self._done.add(key)
            why = Reason("lazy", detail=f"PHP library of {path}", rule="php-library", by=path)
            if owner:
                out += [
                    Seed(p, why)
                    for p in self.packages.files(owner)
                    if any(p.startswith(r + "/") for r in INCLUDE_ROOTS)
                ]
            else:
                out.append(Seed(top, why, recursive=True))
        return out

    def _is_dir(self, path: str) -> bool:
        entry = self.tree.get(path)
        return entry is not None and entry.is_dir
