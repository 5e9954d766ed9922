"""What the ``deps`` analysis reports: object kinds, reasons, per-object reports.

Frozen values with their JSON forms; :mod:`ocislim.elf.closure` produces them,
:mod:`ocislim.elf.render` prints them, and the build turns their reasons into
keep-plan reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Object kinds.
DYNAMIC = "dynamic"  # run by a dynamic loader (or a shared library)
STATIC = "static"  # statically linked: nothing to load
SCRIPT = "script"  # "#!" script; its interpreter is analysed as another object
NOT_ELF = "not-elf"
NOT_LOADABLE = "not-loadable"  # relocatable object, core file
INVALID = "invalid"  # ELF magic, broken headers
ABSENT = "absent"  # the path does not exist in the image


@dataclass(frozen=True)
class Reason:
    """Why a path is kept.

    ``kind`` is one of: ``object`` (requested), ``interpreter`` (PT_INTERP of ``by``),
    ``script-interpreter``, ``needed`` (``by`` has DT_NEEDED ``detail``),
    ``hwcap-variant`` (CPU-specific copy of ``detail``), ``lazy`` (rule ``rule``,
    ``detail`` explains, ``by`` is the object that triggers it), ``symlink`` (on the
    way to ``detail``).
    """

    kind: str
    by: str | None = None
    detail: str = ""
    rule: str | None = None

    def __str__(self) -> str:
        if self.kind == "object":
            return "requested object"
        if self.kind == "interpreter":
            return f"interpreter of {self.by}"
        if self.kind == "script-interpreter":
            return f"'#!' interpreter of {self.by}"
        if self.kind == "needed":
            return f"needed by {self.by} ({self.detail})"
        if self.kind == "hwcap-variant":
            return f"CPU-specific copy of {self.detail}"
        if self.kind == "lazy":
            return f"loaded at run time by {self.by}: {self.detail} [{self.rule}]"
        if self.kind == "symlink":
            return f"symlink on the way to {self.detail}"
        return f"{self.kind}: {self.detail}"

    def to_json(self) -> dict[str, str]:
        out = {"kind": self.kind, "text": str(self)}
        if self.by:
            out["by"] = self.by
        if self.detail:
            out["detail"] = self.detail
        if self.rule:
            out["rule"] = self.rule
        return out


@dataclass(frozen=True)
class LazyEntry:
    """Something loaded or read at run time without ``DT_NEEDED``.

    ``path`` is None when a library the rule names is not in the image.  ``name`` is
    the library name or file path the rule asked for; ``via`` the lazily loaded
    library whose ``DT_NEEDED`` pulled this one in (None for the rule's own items).
    """

    path: str | None
    name: str
    reason: str
    rule: str
    kind: str  # "library" or "file"
    by: str  # canonical path of the object that triggers the rule
    via: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "reason": self.reason,
            "rule": self.rule,
            "kind": self.kind,
            "by": self.by,
            "via": self.via,
        }


@dataclass(frozen=True)
class ObjectReport:
    """One analysed object: what it needs and what its load pulls in.

    ``closure`` lists every library the loader opens for it (the interpreter
    included), transitively, as the loader names them, in load order; ``needed`` maps
    each of its own ``DT_NEEDED`` names to what satisfied it (None: missing);
    ``missing`` are the names (from any object in the closure) found nowhere.
    """

    path: str
    canonical: str | None
    kind: str
    interpreter: str | None = None
    needed: Mapping[str, str | None] = field(default_factory=dict)
    closure: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    lazy: tuple[LazyEntry, ...] = ()
    note: str | None = None
    description: str | None = None  # "ELF64 little-endian x86_64"
    # DT_NEEDED edges of every object opened (lazily loaded ones included):
    # object as named -> {name: what satisfied it, or None}.
    dependencies: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "canonical": self.canonical,
            "kind": self.kind,
            "interpreter": self.interpreter,
            "needed": dict(self.needed),
            "closure": list(self.closure),
            "missing": list(self.missing),
            "lazy": [{"path": e.path, "name": e.name, "reason": e.reason} for e in self.lazy],
            "note": self.note,
            "elf": self.description,
            "dependencies": {k: dict(v) for k, v in self.dependencies.items()},
        }


@dataclass(frozen=True)
class DepsResult:
    """Everything ``deps`` found. ``paths`` is sorted; ``reasons`` covers every path."""

    objects: tuple[ObjectReport, ...]
    lazy: tuple[LazyEntry, ...]
    paths: tuple[str, ...]
    reasons: Mapping[str, tuple[Reason, ...]]

    @property
    def missing(self) -> tuple[tuple[str, str], ...]:
        """(object path, library name) for every DT_NEEDED that could not be found."""
        return tuple((o.path, name) for o in self.objects for name in o.missing)

    def to_json(self) -> dict[str, Any]:
        lazy_seen: dict[tuple[str | None, str, str], LazyEntry] = {}
        for entry in self.lazy:
            lazy_seen.setdefault((entry.path, entry.name, entry.reason), entry)
        return {
            "objects": [o.to_json() for o in self.objects],
            "lazy": [e.to_json() for e in lazy_seen.values()],
            "paths": list(self.paths),
            "reasons": {p: [str(r) for r in self.reasons[p]] for p in self.paths},
        }
