"""Translation catalogs: the gettext sources that nothing reads at run time.

gettext (GNU's, Python's ``gettext`` module, Django's and Babel's translations) loads
the compiled catalog ``LOCALEDIR/LANG/LC_MESSAGES/DOMAIN.mo``; the ``DOMAIN.po``
beside it is the translators' source, read only by tools that compile or extract
messages.  Frameworks ship both (Django: 8 MB of ``.po`` beside 6 MB of ``.mo``), so
a rule that keeps a package whole leaves out the ``.po`` that has its ``.mo`` beside
it.  A ``.po`` without one (Odoo loads its ``i18n/*.po`` itself) is kept.

Pure: the result depends on the tree only.
"""

from __future__ import annotations

from ocislim.layers.tree import FileTree

# The walk stops after this many entries; the rest of a larger tree keeps its .po files.
MAX_ENTRIES = 200_000


def is_compiled_catalog_source(tree: FileTree, path: str) -> bool:
    """``path`` is a ``.po`` file of an ``LC_MESSAGES`` directory with the ``.mo`` of the
    same name beside it (both regular files; links not followed)."""
    directory, _, name = path.rpartition("/")
    if not name.endswith(".po") or not directory.endswith("/LC_MESSAGES"):
        return False
    source, compiled = tree.get(path), tree.get(f"{directory}/{name[:-3]}.mo")
    return (
        source is not None
        and source.kind == "file"
        and compiled is not None
        and compiled.kind == "file"
    )


def compiled_catalog_sources(tree: FileTree, top: str) -> list[str]:
    """Every :func:`is_compiled_catalog_source` below ``top``, sorted; links are not
    followed."""
    entry = tree.get(top)
    found: list[str] = []
    stack = [entry] if entry is not None and entry.is_dir else []
    seen = 0
    while stack and seen < MAX_ENTRIES:
        node = stack.pop()
        children = node.children or {}
        seen += len(children)
        if node.path.endswith("/LC_MESSAGES"):
            found += [c.path for c in children.values() if is_compiled_catalog_source(tree, c.path)]
        stack += [c for c in children.values() if c.is_dir]
    return sorted(found)
