"""The keep plan while it is being made, and the seeds the ``analyse`` stage starts it with.

A :class:`Keeper` joins the pieces of the plan over the source's merged tree: the
:class:`~ocislim.slim.plan.Planner` (parents, symlinks, hardlinks), the ELF pass
(:class:`~ocislim.slim.elfdeps.ElfDeps`) and the language rules
(:class:`~ocislim.slim.langrules.LangRules`).  The ``analyse`` stage makes one
and adds :func:`first_seeds`; the ``verify`` stage is the only other one that
extends it.  Each stage hands on a frozen :class:`~ocislim.slim.plan.KeepPlan`
(:meth:`Keeper.plan`), never the Keeper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ocislim.errors import UnsafeArchiveError
from ocislim.image.models import ImageConfig
from ocislim.layers.tree import FileTree
from ocislim.slim.elfdeps import ElfDeps, select_rules
from ocislim.slim.langrules import LangRules
from ocislim.slim.options import BuildOptions
from ocislim.slim.plan import KeepPlan, Planner, Reason, Seed, close_plan
from ocislim.slim.rules import user_seeds


class Keeper:
    """The plan over ``tree`` (unpacked at ``root``) for the program ``options`` run."""

    def __init__(
        self, root: Path, tree: FileTree, config: ImageConfig, options: BuildOptions
    ) -> None:
        self.tree = tree
        self._planner = Planner(tree, options.keep.exclude_patterns)
        self.env = [*config.env, *options.run.env]
        self.workdir = options.run.workdir or config.working_dir or "/"
        rules = select_rules(options.disabled_rules)
        self.deps = ElfDeps(root, tree, self.env, self.workdir, rules)
        self._lang = LangRules(tree, self.deps.read_text, options.language_rules)

    def __contains__(self, path: str) -> bool:
        return path in self._planner

    def extend(self, seeds: list[Seed]) -> list[str]:
        """Keep ``seeds``, what the language rules add for traced and verified paths, and
        the ELF closure of all of it; returns the newly kept paths."""
        touched = [s.path for s in seeds if s.reason.source in ("trace", "exec", "verify")]
        widened = self._lang.seeds(_resolved(self.tree, touched))
        return close_plan(self._planner, [*seeds, *widened], self.deps)

    def plan(self) -> KeepPlan:
        """The plan as it stands (a frozen value; later extensions do not change it)."""
        return self._planner.plan()

    def find_program(self, name: str) -> str | None:
        """``name`` as the probed program's environment finds it in the image."""
        return self.deps.find_program(name, self.env, self.workdir)


def first_seeds(
    keeper: Keeper,
    config: ImageConfig,
    options: BuildOptions,
    traced: Iterable[Seed],
    keep_from: Sequence[tuple[Path, Mapping[str, Any]]],
    note: Callable[[str], None],
) -> list[Seed]:
    """The ``analyse`` stage's seeds, in order: traced, the user's ``--include-*``,
    the kept paths of each ``--keep-from`` report (the reason names the report), and
    what the output config needs."""
    out_workdir = options.overrides.workdir or config.working_dir or "/"
    seeds = list(traced)
    seeds += user_seeds(options.keep, keeper.tree, keeper.find_program, out_workdir, note)
    for path, report in keep_from:
        why = Reason("rule", detail=str(path), flag="--keep-from")
        seeds += [Seed(k["path"], why, follow=False) for k in report["kept"]]
    seeds += _config_seeds(keeper.deps, config, options, out_workdir)
    return seeds


def _config_seeds(
    deps: ElfDeps, config: ImageConfig, options: BuildOptions, workdir: str
) -> list[Seed]:
    """What the output config itself needs for a runtime to start it, probed or not:
    the entrypoint's program, the working directory, and the account files when USER
    is a name (runtimes and the sandbox look it up in the image)."""
    seeds = []
    program = _entry_program(deps, config, options)
    if program is not None:
        why = Reason("rule", detail="the output image's entrypoint", flag="config")
        seeds.append(Seed(program, why))
    if workdir != "/":
        seeds.append(Seed(workdir, Reason("rule", detail="WorkingDir", flag="config")))
    users = [config.user or "", options.run.user or ""]
    if any(part and not part.isdigit() for user in users for part in user.split(":")):
        why = Reason("rule", detail="USER is a name, looked up in these files", flag="config")
        seeds += [Seed("/etc/passwd", why), Seed("/etc/group", why)]
    return seeds


def _entry_program(deps: ElfDeps, config: ImageConfig, options: BuildOptions) -> str | None:
    overrides = options.overrides
    argv = [
        *(overrides.entrypoint if overrides.entrypoint is not None else config.entrypoint or []),
        *(overrides.cmd if overrides.cmd is not None else config.cmd or []),
    ]
    if not argv:
        return None
    env = [*config.env, *overrides.env]
    workdir = overrides.workdir or config.working_dir or "/"
    return deps.find_program(argv[0], env, workdir)


def _resolved(tree: FileTree, paths: Sequence[str]) -> list[str]:
    out = []
    for path in paths:
        try:
            out.append(tree.resolve(path))
        except UnsafeArchiveError:
            continue  # a symlink loop: nothing to widen
    return out
