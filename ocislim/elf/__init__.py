"""Static ELF dependency analysis inside an image tree (the ``deps`` command).

Public API::

    from ocislim.elf import analyze
    result = analyze(root, ["/usr/bin/python3"], env=image.config.env)
    result.paths      # sorted in-image paths to keep
    result.reasons    # path -> tuple[Reason, ...]

Other packages import from here only, never from the submodules.
"""

from ocislim.elf.closure import DepsAnalyzer, analyze, analyze_config
from ocislim.elf.elfinfo import ELF_MAGIC
from ocislim.elf.lazy import DEFAULT_RULES, LazyRule
from ocislim.elf.programs import find_program
from ocislim.elf.render import render_list, render_tree
from ocislim.elf.results import DepsResult, LazyEntry, ObjectReport, Reason
from ocislim.elf.rootpath import RootFS

__all__ = [
    "DEFAULT_RULES",
    "ELF_MAGIC",
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
