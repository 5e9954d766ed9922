"""The plan's ELF pass: static closures of kept ELF objects and scripts, as seeds.

:class:`ElfDeps` is the ``deps`` function of :func:`~ocislim.slim.plan.close_plan`:
given newly kept paths it picks the ELF objects (by their magic bytes) and the
executable ``#!`` scripts, runs :mod:`ocislim.elf` on them inside the unpacked
source tree (read-only, nothing executed), and turns each of its reasons into a
slim :class:`~ocislim.slim.plan.Reason`: ``elf`` (loader, ``DT_NEEDED``,
``#!`` interpreter, CPU-specific copy) or ``lazy`` (a lazy-loading rule such as
the NSS modules named by ``/etc/nsswitch.conf``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from ocislim.elf import DEFAULT_RULES, ELF_MAGIC, DepsAnalyzer, LazyRule, RootFS, find_program
from ocislim.elf import Reason as ElfReason
from ocislim.layers.tree import FileTree
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.slim.plan import Reason, Seed

# The lazy rules --no-include-oslibs-net switches off.
NETWORK_RULES = frozenset({"glibc-nss", "glibc-resolver"})


def lazy_rule_names() -> tuple[str, ...]:
    return tuple(r.name for r in DEFAULT_RULES)


def select_rules(disabled: Collection[str]) -> tuple[LazyRule, ...]:
    return tuple(r for r in DEFAULT_RULES if r.name not in disabled)


def convert_reason(reason: ElfReason) -> Reason | None:
    """The slim reason for an ELF analysis reason (None for the requested object itself)."""
    if reason.kind == "object":
        return None
    if reason.kind == "interpreter":
        return Reason("elf", detail="PT_INTERP", by=reason.by)
    if reason.kind == "script-interpreter":
        return Reason("elf", detail="#! interpreter", by=reason.by)
    if reason.kind == "needed":
        return Reason("elf", detail=f"DT_NEEDED {reason.detail}", by=reason.by)
    if reason.kind == "hwcap-variant":
        return Reason("elf", detail=f"CPU-specific copy of {reason.detail}", by=reason.by)
    if reason.kind == "lazy":
        return Reason("lazy", detail=reason.detail, by=reason.by, rule=reason.rule)
    if reason.kind == "symlink":
        return Reason("symlink", detail=f"on the way to {reason.detail}", by=reason.detail)
    return Reason("elf", detail=str(reason), by=reason.by)


class ElfDeps:
    """Remembers what it analysed; reuse one instance for a whole build (warm caches).

    It also answers the in-image questions the rest of the plan asks of the same
    root (:meth:`read_text`, :meth:`find_program`), read-only like the analysis.
    """

    def __init__(
        self,
        root: Path,
        tree: FileTree,
        env: Iterable[str],
        workdir: str,
        rules: Sequence[LazyRule] = DEFAULT_RULES,
        progress: Progress = NULL_PROGRESS,
    ) -> None:
        self.tree = tree
        self._analyzer = DepsAnalyzer(root, list(env), workdir=workdir or "/", rules=rules)
        self._files: RootFS = self._analyzer.rootfs  # one lookup cache for the whole root
        self.progress = progress
        self.analysed: set[str] = set()

    def read_text(self, path: str) -> str | None:
        """The text of the in-image regular file ``path`` resolves to (None: none)."""
        return self._files.read_text(path)

    def read_bytes(self, path: str) -> bytes | None:
        """The bytes of the in-image regular file ``path`` resolves to (None: none)."""
        return self._files.read_bytes(path)

    def open_file(self, path: str) -> int | None:
        """A read-only descriptor of the regular file ``path`` resolves to in the image,
        or None (no link followed out of it, no FIFO opened); the caller closes it."""
        res = self._files.resolve(path)
        return self._files.open_file(res.path) if res.exists else None

    def find_program(self, name: str, env: Iterable[str], workdir: str) -> str | None:
        """The in-image path ``execvp`` would run for ``name`` (None: absent)."""
        return find_program(self._files, name, env, workdir)

    def is_object(self, path: str) -> bool:
        """An ELF file, or a ``#!`` script with an execute bit."""
        entry = self.tree.get(path)
        if entry is None or entry.kind != "file" or entry.size < 4:
            return False
        head = self._files.read_bytes(path, limit=4) or b""
        if head == ELF_MAGIC:
            return True
        return head[:2] == b"#!" and bool(entry.mode & 0o111)

    def __call__(self, paths: Sequence[str]) -> list[Seed]:
        objects = [p for p in paths if p not in self.analysed and self.is_object(p)]
        self.analysed.update(paths)
        if not objects:
            return []
        result = self._analyzer.analyze(objects)
        seeds: list[Seed] = []
        for path in result.paths:
            for reason in result.reasons[path]:
                converted = convert_reason(reason)
                if converted is not None:
                    seeds.append(Seed(path, converted, follow=False))
        return seeds
