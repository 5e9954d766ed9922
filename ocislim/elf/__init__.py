"""Static ELF dependency analysis inside an image tree (the ``deps`` command).

Public API::

    from ocislim.elf import analyze
    result = analyze(root, ["/usr/bin/python3"], env=image.config.env)
    result.paths      # sorted in-image paths to keep
    result.reasons    # path -> tuple[Reason, ...]
"""

from ocislim.elf.closure import (
    DepsAnalyzer,
    DepsResult,
    LazyEntry,
    ObjectReport,
    Reason,
    analyze,
    analyze_config,
    find_program,
)
from ocislim.elf.lazy import DEFAULT_RULES, LazyRule
from ocislim.elf.render import render_list, render_tree
from ocislim.elf.rootpath import RootFS

__all__ = [
    "DEFAULT_RULES",
    "DepsAnalyzer",
    "DepsResult",
    "LazyEntry",
    "LazyRule",
    "ObjectReport",
    "Reason",
    "RootFS",
    "analyze",
    "analyze_config",
    "find_program",
    "render_list",
    "render_tree",
]
