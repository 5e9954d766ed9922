"""The keep plan while it is being made, and the seeds the ``analyse`` stage starts it with.

A :class:`Keeper` joins the pieces of the plan over the source's merged tree: the
:class:`~ocislim.slim.plan.Planner` (parents, symlinks, hardlinks), the ELF pass
(:class:`~ocislim.slim.elfdeps.ElfDeps`), the language rules
(:class:`~ocislim.slim.langrules.LangRules`), the runtime rules
(:class:`~ocislim.slim.runtimerules.RuntimeRules`), the package levels
(:class:`~ocislim.slim.pkgrules.PackageRules`), the plugin and data directories
(:mod:`ocislim.slim.plugindirs`, :mod:`ocislim.slim.datadirs`), the other names of
programs that ran (:mod:`ocislim.slim.aliases`) and the application rules
(:mod:`ocislim.slim.apprules`: written places, skeleton directories, the
application's own tree).  The ``analyse`` stage makes one
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
from ocislim.slim.aliases import ProgramAliases
from ocislim.slim.apprules import (
    app_candidates,
    app_seeds,
    app_sources,
    binary_named_seeds,
    counted_as_run,
    home_seeds,
    is_below,
    script_command_seeds,
    skeleton_seeds,
    written_seeds,
)
from ocislim.slim.commandtext import MAX_SCRIPT_BYTES, script_interpreter
from ocislim.slim.confpaths import ConfigPaths
from ocislim.slim.datadirs import ProgramDataDirs
from ocislim.slim.elfdeps import ElfDeps, select_rules
from ocislim.slim.javapaths import classpath_seeds, container_seeds, is_jvm
from ocislim.slim.langrules import LangRules
from ocislim.slim.namedprograms import NamedPrograms
from ocislim.slim.nestedscripts import NestedScripts
from ocislim.slim.options import BuildOptions
from ocislim.slim.phplibs import PhpLibraries
from ocislim.slim.pkgrules import (
    DpkgIndex,
    LibraryData,
    PackageRules,
    PackageStateDirs,
    PerlDistributions,
    package_summary,
)
from ocislim.slim.plan import KeepPlan, Planner, Reason, Seed, close_plan
from ocislim.slim.plugindirs import PluginDirs
from ocislim.slim.rules import user_seeds
from ocislim.slim.runtimerules import RuntimeRules


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
        self.rules = options.language_rules
        self._lang = LangRules(tree, self.deps.read_text, self.rules)
        self._runtime = RuntimeRules(tree, self.rules, self.deps.read_text, self.env, self.workdir)
        self.packages = DpkgIndex(tree, self.deps.read_text)
        self._pkg = PackageRules(self.packages, self.rules)
        self._perl = PerlDistributions(self.packages, self.rules)
        self._state = PackageStateDirs(self.packages, self.rules)
        self._library_data = LibraryData(self.packages, self.rules)
        self._php = PhpLibraries(tree, self.packages, self.rules)
        self._config = ConfigPaths(
            tree, self.deps.read_text, self.rules, self.find_program, self.is_program
        )
        self._plugins = PluginDirs(tree, self.rules)
        self._data_dirs = ProgramDataDirs(self.packages, self.rules)
        self._aliases = ProgramAliases(tree, self.env, self.rules)
        self.nested = NestedScripts(
            tree,
            self.deps.read_text,
            self.find_program,
            self.is_program,
            self.rules,
            self.deps.read_bytes,
        )
        self._named = NamedPrograms(tree, self.deps.read_bytes, self.is_program, self.rules)

    def __contains__(self, path: str) -> bool:
        return path in self._planner

    def extend(self, seeds: list[Seed]) -> list[str]:
        """Keep ``seeds``, what the language, runtime and package rules add for traced and
        verified paths and for the programs a rule counts as run
        (:func:`~ocislim.slim.apprules.counted_as_run`), and the ELF closure of all of it;
        returns the newly kept paths.

        Traced paths absent from the source (made at run time) are not kept; with
        ``written-places`` the source directory they were made in is."""
        seeds, places = written_seeds(self.tree, seeds)
        if "written-places" not in self.rules:
            places = []
        touched = _resolved(
            self.tree, [s.path for s in seeds if s.reason.source in ("trace", "exec", "verify")]
        )
        programs = _resolved(
            self.tree,
            [s.path for s in seeds if s.reason.source == "trace" and "exec" in s.reason.access],
        )
        sourced = _resolved(
            self.tree,
            [
                s.path
                for s in seeds
                if s.reason.source == "trace"
                and "read" in s.reason.access
                and self.nested.is_shell_process(s.reason.process)
            ],
        )
        widened = [*self._widen(touched, programs), *self.nested.seeds(sourced, programs)]
        # What a rule keeps because it will run (a program a script names, a CGI script's
        # interpreter) fires every rule as if it had run, and so on for what that keeps.
        ran = set(touched)
        found = [*seeds, *widened]
        while True:
            run = _resolved(self.tree, counted_as_run(found))
            run += _resolved(self.tree, [i for p in run if (i := self._interpreter(p))])
            more = [p for p in dict.fromkeys(run) if p not in ran]
            if not more:
                break
            ran.update(more)
            found = [*self._widen(more, more), *self.nested.seeds((), more), *self.imports(more)]
            widened += found
        return close_plan(self._planner, [*seeds, *places, *widened], self.deps)

    def _widen(self, touched: list[str], programs: list[str]) -> list[Seed]:
        """The language, runtime and package rules' seeds for ``touched`` paths and run
        ``programs`` (canonical)."""
        return [
            *self._state.seeds(programs),
            *self._lang.seeds(touched),
            *self._runtime.seeds(touched),
            *self._pkg.seeds(touched),
            *self._perl.seeds(touched),
            *self._php.seeds(touched),
            *self._config.seeds(touched),
            *self._plugins.seeds(touched),
            *self._data_dirs.seeds(touched, programs),
            *self._aliases.seeds(programs),
            *self._named.seeds(programs),
            *self._library_data.seeds(programs),
        ]

    def entry_packages(self, script: str) -> list[str]:
        """The installed packages the script ``script`` imports directly
        (:meth:`~ocislim.slim.langrules.LangRules.entry_packages`)."""
        return self._lang.entry_packages(script)

    def imports(self, scripts: Iterable[str]) -> list[Seed]:
        """What the language rules keep for the modules ``scripts`` import, read as if
        they ran (:meth:`~ocislim.slim.langrules.LangRules.imported`)."""
        return self._lang.imported(scripts)

    def is_script(self, path: str) -> bool:
        """``path`` is a text file small enough to read as a script (not a compiled
        program, whose bytes no import reader understands)."""
        entry = self.tree.follow(path)
        if entry is None or entry.kind != "file" or entry.size > MAX_SCRIPT_BYTES:
            return False
        return not (self.deps.read_text(path) or "").startswith("\x7fELF")

    def _interpreter(self, path: str) -> str | None:
        """The ``#!`` interpreter of the script at ``path`` (None: no script): a script
        that counts as run runs it."""
        entry = self.tree.get(path)
        if entry is None or entry.size > MAX_SCRIPT_BYTES or not self.is_program(path):
            return None  # a large file is a compiled program, not worth reading whole
        head = (self.deps.read_text(path) or "")[:512]
        return script_interpreter(head, self.find_program, self.is_program)

    def plan(self) -> KeepPlan:
        """The plan as it stands (a frozen value; later extensions do not change it)."""
        return self._planner.plan()

    def package_note(self) -> str | None:
        """One line: how many of the image's Debian packages the plan keeps whole, partly,
        not at all (None without a dpkg database)."""
        summary = package_summary(self.packages, self._planner.plan().paths)
        if not any(summary.values()):
            return None
        partly = ", ".join(summary["partly"][:12]) + (" ..." if len(summary["partly"]) > 12 else "")
        return (
            f"Debian packages: {len(summary['whole'])} kept whole, {len(summary['partly'])} "
            f"partly ({partly}), {len(summary['none'])} not at all"
        )

    def is_program(self, path: str) -> bool:
        """``path`` names (through links) an executable regular file of the image."""
        entry = self.tree.follow(path)
        return entry is not None and entry.kind == "file" and bool(entry.mode & 0o111)

    def own_binary(self, name: str) -> str | None:
        """The ELF program ``name`` runs when no Debian package owns it (the
        application's own compiled program), else None."""
        program = self.find_program(name)
        if program is None or not self.is_program(program):
            return None
        resolved = self.tree.resolve(program)
        if self.packages.owner(resolved) is not None or self.packages.owner(program) is not None:
            return None
        head = self.deps.read_text(resolved) or ""
        return program if head.startswith("\x7fELF") else None

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
    commands: Sequence[Sequence[str]] = (),
) -> list[Seed]:
    """The ``analyse`` stage's seeds, in order: traced, the user's ``--include-*``,
    the kept paths of each ``--keep-from`` report (the reason names the report), what
    the output config needs, and (without ``--keep-from``, whose plan they already
    shaped) the skeleton and application rules.  ``commands``: the argv of each
    process the trace saw (the JVM's real options, after its launcher scripts)."""
    out_workdir = options.overrides.workdir or config.working_dir or "/"
    seeds = list(traced)
    loaded = [s.path for s in seeds if s.reason.source == "trace"]
    seeds += user_seeds(options.keep, keeper.tree, keeper.find_program, out_workdir, note)
    for path, report in keep_from:
        why = Reason("rule", detail=str(path), flag="--keep-from")
        seeds += [Seed(k["path"], why, follow=False) for k in report["kept"]]
    seeds += _config_seeds(keeper.deps, config, options, out_workdir)
    if not keep_from:  # a --keep-from plan already holds what these rules kept
        seeds += _rule_seeds(keeper, config, options, out_workdir, commands, loaded)
    return seeds


def _rule_seeds(
    keeper: Keeper,
    config: ImageConfig,
    options: BuildOptions,
    workdir: str,
    commands: Sequence[Sequence[str]] = (),
    loaded: Sequence[str] = (),
) -> list[Seed]:
    """The skeleton directories and the application's own trees, when their rules are on
    (``loaded``: the paths the trace saw, for the application sources among them)."""
    seeds: list[Seed] = []
    if "skeleton-dirs" in keeper.rules:
        seeds += skeleton_seeds(keeper.tree, config.volumes or [])
        users = [config.user or "", options.run.user or config.user or ""]
        seeds += home_seeds(keeper.tree, keeper.deps.read_text, users, keeper.env)
    argvs = (_entry_argv(config, options), list(options.run.command))
    # The program and scripts the command names, looked up once for the rules that read them.
    scripts = sorted(
        {p for argv in argvs for p, _ in script_paths(keeper.tree, argv, workdir, keeper)}
    )
    if "app-whole" in keeper.rules:
        trees = [
            s
            for i, argv in enumerate(argvs)
            for s in app_seeds(
                keeper.tree, argv, workdir, keeper.find_program, loaded if i == 0 else ()
            )
        ]
        seeds += trees
        # The application's code runs on paths the probe did not take: what it imports
        # there, and what the scripts the command names import (in a system directory too:
        # /srv/app.js, a Python tool's /usr/bin script).
        sources = app_sources(keeper.tree, [s.path for s in trees])
        named = [p for p in scripts if keeper.is_script(p)]
        seeds += keeper.imports(sorted({*sources, *named}))
        # A command installed by pip (a wrapper in /usr/local/bin outside every tree) has
        # its application in the packages the wrapper imports: their scripts are read too.
        roots = [s.path for s in trees]
        installed = [p for s in named if not is_below(s, roots) for p in keeper.entry_packages(s)]
        seeds += keeper.nested.app_seeds([*roots, *installed], scripts)
    else:
        seeds += keeper.nested.app_seeds([], scripts)  # read as script-commands' only
    jvms = [argv for argv in commands if is_jvm(argv)]
    if "java-classpath" in keeper.rules:
        seeds += classpath_seeds(
            keeper.tree,
            argvs,
            scripts,
            keeper.env,
            workdir,
            keeper.deps.read_text,
            keeper.deps.open_file,
            traced=jvms,
        )
    if "java-webapps" in keeper.rules:
        seeds += container_seeds(keeper.tree, jvms, keeper.deps.read_text)
    if "script-commands" in keeper.rules:
        seeds += script_command_seeds(
            scripts, keeper.deps.read_text, keeper.find_program, keeper.is_program
        )
    if "binary-named-paths" in keeper.rules:
        for program in sorted({p for argv in argvs if argv and (p := keeper.own_binary(argv[0]))}):
            text = keeper.deps.read_text(program) or ""
            seeds += binary_named_seeds(keeper.tree, program, text)
    return seeds


def script_paths(
    tree: FileTree, argv: list[str], workdir: str, keeper: Keeper
) -> list[tuple[str, str]]:
    """The program and scripts ``argv`` names, as in-image paths."""
    out = []
    if argv:
        program = keeper.find_program(argv[0])
        if program is not None:
            out.append((program, "program"))
    for _directory, what in app_candidates(tree, argv, workdir, keeper.find_program):
        if what.startswith("the script "):
            out.append((what[len("the script ") :], "script"))
    return out


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


def _entry_argv(config: ImageConfig, options: BuildOptions) -> list[str]:
    overrides = options.overrides
    return [
        *(overrides.entrypoint if overrides.entrypoint is not None else config.entrypoint or []),
        *(overrides.cmd if overrides.cmd is not None else config.cmd or []),
    ]


def _entry_program(deps: ElfDeps, config: ImageConfig, options: BuildOptions) -> str | None:
    overrides = options.overrides
    argv = _entry_argv(config, options)
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
