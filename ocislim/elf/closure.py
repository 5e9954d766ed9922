"""The ``deps`` analysis: what an image must keep for given programs to load and run.

For each requested object the dynamic loader's work is replayed breadth-first, as
``ld.so`` does it: every ``DT_NEEDED`` name is first matched against objects already
loaded (by requested name or ``DT_SONAME``; the loader itself is loaded from the
start), otherwise searched with the rules in :mod:`ocislim.elf.resolver`, with the
``DT_RPATH`` chain following the object that first caused each library to load.
Lazy rules (:mod:`ocislim.elf.lazy`) then add what is opened at run time, and the
libraries they add are loaded the same way.

The result lists, for every path the image must keep, why — so that a later build
step can merge it with traced files and user rules.  The analysis only reads the
tree; it never writes, executes or follows a path out of the root.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ocislim.elf.elfinfo import ElfCatalog, ElfInfo
from ocislim.elf.lazy import (
    DEFAULT_RULES,
    LazyContext,
    LazyNeed,
    LazyRule,
    glibc_version,
    rule_needs,
)
from ocislim.elf.programs import env_map, find_elf_objects, find_program, parse_shebang
from ocislim.elf.resolver import Found, Loader, Resolver, SearchScope
from ocislim.elf.results import (
    ABSENT,
    DYNAMIC,
    INVALID,
    NOT_ELF,
    NOT_LOADABLE,
    SCRIPT,
    STATIC,
    DepsResult,
    LazyEntry,
    ObjectReport,
    Reason,
)
from ocislim.elf.rootpath import RootFS, tidy
from ocislim.errors import InputNotFoundError, UsageError
from ocislim.humanize import plural
from ocislim.image.models import ImageRunConfig
from ocislim.layers.pathwalk import lexical
from ocislim.progress import NULL_PROGRESS, Progress

# The kernel follows at most this many nested "#!" interpreters.
MAX_SCRIPT_DEPTH = 4


@dataclass
class _Node:
    """An object in one simulated load."""

    path: str  # as the loader names it
    canonical: str
    info: ElfInfo
    parent: _Node | None
    origin: str  # directory $ORIGIN expands to
    found: Found | None = None


class _Load:
    """The state of one simulated load: what is loaded, under which names."""

    def __init__(self, loader: Loader, main: _Node, keep: _Keep) -> None:
        self.loader = loader
        self.main = main
        self.keep = keep
        self.nodes: list[_Node] = [main]
        self.by_name: dict[str, _Node] = {}
        self.by_canonical: dict[str, _Node] = {main.canonical: main}
        self.missing: list[str] = []
        self.edges: dict[str, dict[str, str | None]] = {}
        if main.info.soname:
            self.by_name[main.info.soname] = main

    def add(self, catalog: ElfCatalog, found: Found, parent: _Node) -> _Node:
        """A newly opened object, queued for its own DT_NEEDED entries."""
        info = catalog.get(found.canonical)
        assert info is not None  # the resolver only returns ELF objects
        origin = found.path.rsplit("/", 1)[0] or "/"
        node = _Node(found.path, found.canonical, info, parent, origin, found)
        self.by_canonical[found.canonical] = node
        self.nodes.append(node)
        if info.soname:
            self.by_name.setdefault(info.soname, node)
        for variant in found.variants:
            self.keep.add(variant, Reason("hwcap-variant", detail=found.path))
        return node


class _Keep:
    """Accumulates kept paths and their reasons."""

    def __init__(self, rootfs: RootFS) -> None:
        self.rootfs = rootfs
        self.reasons: dict[str, dict[Reason, None]] = {}

    def add(self, path: str, reason: Reason) -> str | None:
        """Keep ``path`` and every symlink on its way; returns the canonical path."""
        res = self.rootfs.resolve(path)
        if not res.exists:
            return None
        self.reasons.setdefault(res.path, {})[reason] = None
        for link in res.symlinks:
            self.reasons.setdefault(link, {})[Reason("symlink", detail=res.path)] = None
        return res.path


def _needed_names(nodes: Iterable[_Node]) -> Iterable[str]:
    for node in nodes:
        yield from node.info.needed


class DepsAnalyzer:
    """Runs the analysis for one image tree; reusable across calls (caches stay warm)."""

    def __init__(
        self,
        root: Path | str,
        env: Iterable[str] | Mapping[str, str] = (),
        *,
        workdir: str = "/",
        rules: Sequence[LazyRule] = DEFAULT_RULES,
    ) -> None:
        self.rootfs = RootFS(root)
        self.env = env_map(env)
        self.workdir = lexical(workdir or "/")
        self.catalog = ElfCatalog(self.rootfs)
        self.resolver = Resolver(self.rootfs, self.catalog, self.env, self.workdir)
        self.rules = tuple(rules)
        self._glibc: dict[str, tuple[int, int] | None] = {}
        self._needs: dict[tuple[LazyRule, str, tuple[int, int] | None], list[LazyNeed]] = {}

    # -- entry point ------------------------------------------------------------------

    def analyze(
        self,
        paths: Iterable[str] = (),
        *,
        all_objects: bool = False,
        progress: Progress = NULL_PROGRESS,
    ) -> DepsResult:
        """Analyse ``paths`` (in-image, absolute or relative to ``/``), plus every ELF
        object of the image when ``all_objects``.  Read-only; never raises for image
        content (missing or odd files are reported in the result)."""
        requested = [tidy(p) for p in paths]
        if all_objects:
            progress.stage("deps", "scanning the image for ELF objects")
            requested += [p for p in find_elf_objects(self.rootfs) if p not in requested]
        keep = _Keep(self.rootfs)
        reports: list[ObjectReport] = []
        lazy: list[LazyEntry] = []
        queue: list[tuple[str, str | None, int]] = [(p, None, 0) for p in requested]
        seen: set[str] = set()
        # What was asked for; scripts add their interpreters, so the summary's count of
        # objects analysed can be larger.
        progress.stage("deps", f"{plural(len(queue), 'object')} asked for")
        done = 0
        while queue:
            path, script_of, depth = queue.pop(0)
            if path in seen:
                continue
            seen.add(path)
            report, extra = self._analyze_one(path, keep, script_of)
            reports.append(report)
            lazy.extend(report.lazy)
            if depth < MAX_SCRIPT_DEPTH:
                queue.extend((p, path, depth + 1) for p in extra)
            done += 1
            progress.advance("objects analysed", done, done + len(queue))
        reasons = {p: tuple(r) for p, r in keep.reasons.items()}
        return DepsResult(tuple(reports), tuple(lazy), tuple(sorted(reasons)), reasons)

    # -- one object -------------------------------------------------------------------

    def _analyze_one(
        self, path: str, keep: _Keep, script_of: str | None
    ) -> tuple[ObjectReport, list[str]]:
        res = self.rootfs.resolve(path)
        if not res.exists:
            return ObjectReport(path, None, ABSENT, note="no such file in the image"), []
        reason = Reason("script-interpreter", by=script_of) if script_of else Reason("object")
        canonical = keep.add(path, reason) or res.path
        if not self.rootfs.is_file(canonical):
            return ObjectReport(path, canonical, NOT_ELF, note="not a regular file"), []
        info = self.catalog.get(canonical)
        if info is None:
            problem = self.catalog.problems.get(canonical, "not an ELF file")
            if problem.startswith("malformed"):
                return ObjectReport(path, canonical, INVALID, note=problem), []
            return self._script(path, canonical, keep)
        if not info.is_loadable:
            return ObjectReport(
                path, canonical, NOT_LOADABLE, note=f"ELF type {info.elf_type} is not loadable"
            ), []
        if info.is_static:
            return ObjectReport(
                path, canonical, STATIC, note="statically linked", description=info.description
            ), []
        return self._dynamic(path, canonical, info, keep), []

    def _script(self, path: str, canonical: str, keep: _Keep) -> tuple[ObjectReport, list[str]]:
        head = self.rootfs.read_bytes(canonical, limit=256) or b""
        shebang = parse_shebang(head)
        if shebang is None:
            return ObjectReport(path, canonical, NOT_ELF, note="not an ELF file or script"), []
        interp, arg = shebang
        extra = [interp]
        note = None
        if interp.rsplit("/", 1)[-1] == "env" and arg:
            words = [w for w in arg.split() if not w.startswith("-") and "=" not in w]
            if words:
                program = find_program(self.rootfs, words[0], self.env, self.workdir)
                if program is None:
                    note = f"'{words[0]}' not found on the image's PATH"
                else:
                    extra.append(program)
        return ObjectReport(path, canonical, SCRIPT, interpreter=interp, note=note), extra

    def _dynamic(self, path: str, canonical: str, info: ElfInfo, keep: _Keep) -> ObjectReport:
        loader = self.resolver.loader_for(info)
        main = _Node(path, canonical, info, None, canonical.rsplit("/", 1)[0] or "/")
        load = _Load(loader, main, keep)
        note = None
        rtld: _Node | None = None
        if loader.canonical and loader.path:
            rtld_info = self.catalog.get(loader.canonical)
            if rtld_info is not None:
                rtld = load.by_canonical.get(loader.canonical)
                if rtld is None:
                    origin = loader.path.rsplit("/", 1)[0] or "/"
                    rtld = _Node(loader.path, loader.canonical, rtld_info, None, origin)
                    load.by_canonical[loader.canonical] = rtld
                if rtld_info.soname:
                    load.by_name.setdefault(rtld_info.soname, rtld)
        if info.interpreter:
            if loader.canonical:
                keep.add(info.interpreter, Reason("interpreter", by=canonical))
            else:
                note = f"interpreter {info.interpreter} is not in the image"

        self._load(load, 0)
        direct_missing = list(load.missing)
        closure = [n.path for n in load.nodes[1:]]
        # A program's loader is always there; a library pulls it in only by DT_NEEDED
        # (libc.so.6 does), which matched the already-loaded loader by soname.
        rtld_used = rtld is not None and (
            bool(info.interpreter)
            or any(load.by_name.get(n) is rtld for n in _needed_names(load.nodes))
        )
        if rtld is not None and rtld_used and rtld is not main and rtld.path not in closure:
            closure.append(rtld.path)
        lazy = self._lazy(load)
        return ObjectReport(
            path,
            canonical,
            DYNAMIC,
            interpreter=info.interpreter,
            needed=load.edges.get(path, {}),
            closure=tuple(closure),
            missing=tuple(dict.fromkeys(direct_missing)),
            lazy=tuple(lazy),
            note=note,
            description=info.description,
            dependencies=load.edges,
        )

    def _load(self, load: _Load, start: int) -> None:
        """Breadth-first loading of ``load.nodes[start:]`` and everything they need."""
        i = start
        while i < len(load.nodes):
            node = load.nodes[i]
            i += 1
            edges = load.edges.setdefault(node.path, {})
            scope: SearchScope | None = None
            for name in node.info.needed:
                target = load.by_name.get(name)
                if target is None:
                    if scope is None:
                        scope = self._scope(node, load.main, load.loader)
                    found = self.resolver.find(name, scope, load.loader)
                    if found is None:
                        load.missing.append(name)
                        edges[name] = None
                        continue
                    target = load.by_canonical.get(found.canonical)
                    if target is None:
                        target = load.add(self.catalog, found, node)
                    load.by_name[name] = target
                edges[name] = target.path
                load.keep.add(target.path, Reason("needed", by=node.canonical, detail=name))

    def _scope(self, node: _Node, main: _Node, loader: Loader) -> SearchScope:
        compat = main.info.compat
        if loader.flavor == "musl":
            chain: list[str] = []
            walk: _Node | None = node
            while walk is not None:
                entries = walk.info.runpath or walk.info.rpath
                if entries:
                    chain += self.resolver.expand(entries, walk.origin, loader)
                walk = walk.parent
            return SearchScope(compat, tuple(dict.fromkeys(chain)), (), False, main.origin)
        runpath = self.resolver.expand(node.info.runpath, node.origin, loader)
        rpath: list[str] = []
        if not node.info.runpath:
            walk = node
            while walk is not None:
                # An object's RPATH is ignored when it also has a RUNPATH.
                if walk.info.rpath and not walk.info.runpath:
                    rpath += self.resolver.expand(walk.info.rpath, walk.origin, loader)
                walk = walk.parent
        return SearchScope(
            compat, tuple(dict.fromkeys(rpath)), runpath, node.info.nodeflib, main.origin
        )

    # -- lazy rules -------------------------------------------------------------------

    def _glibc_version(self, canonical: str) -> tuple[int, int] | None:
        if canonical not in self._glibc:
            self._glibc[canonical] = glibc_version(self.rootfs, canonical)
        return self._glibc[canonical]

    def _lazy(self, load: _Load) -> list[LazyEntry]:
        entries: list[LazyEntry] = []
        libc = load.by_name.get("libc.so.6")
        version = self._glibc_version(libc.canonical) if libc else None
        fired: set[str] = set()
        checked = -1
        # A library a rule loads may trigger another rule (the JVM's font manager loads
        # fontconfig, which reads fonts): rules are tried again until nothing is loaded.
        while checked < len(load.nodes):
            loaded = list(load.nodes)
            checked = len(loaded)
            for rule in self.rules:
                if rule.name in fired or not rule.glibc_ok(version):
                    continue
                trigger = next(
                    (n for n in loaded if rule.matches_object(n.info.soname, n.canonical)), None
                )
                if trigger is None:
                    continue
                if rule.when_imports:
                    wanted = frozenset(rule.when_imports)
                    if not any(self.catalog.imports(n.canonical, wanted) for n in loaded):
                        continue
                fired.add(rule.name)
                for need in self._rule_needs(rule, trigger.canonical, version):
                    why = Reason("lazy", by=trigger.canonical, detail=need.reason, rule=rule.name)
                    if need.kind == "file":
                        entries += self._lazy_files(need, why, trigger, load.keep)
                    else:
                        entries += self._lazy_library(need, why, trigger, load)
        return entries

    def _rule_needs(
        self, rule: LazyRule, trigger: str, version: tuple[int, int] | None
    ) -> list[LazyNeed]:
        key = (rule, trigger, version)
        if key not in self._needs:
            ctx = LazyContext(self.rootfs, self.env, trigger, version)
            self._needs[key] = rule_needs(rule, ctx)
        return self._needs[key]

    def _lazy_files(
        self, need: LazyNeed, why: Reason, trigger: _Node, keep: _Keep
    ) -> list[LazyEntry]:
        target = need.target
        matches = self.rootfs.glob(target) if any(c in target for c in "*?[") else [target]
        return [
            LazyEntry(match, match, need.reason, need.rule, "file", trigger.canonical)
            for match in matches
            if keep.add(match, why) is not None
        ]

    def _lazy_library(
        self, need: LazyNeed, why: Reason, trigger: _Node, load: _Load
    ) -> list[LazyEntry]:
        """Load ``need`` as if ``trigger`` dlopen()ed it, then its own DT_NEEDED closure."""

        def entry(path: str | None, name: str, reason: str, via: str | None = None) -> LazyEntry:
            return LazyEntry(path, name, reason, need.rule, "library", trigger.canonical, via)

        name = need.target
        target = load.by_name.get(name)
        if target is None:
            scope = self._scope(trigger, load.main, load.loader)
            found = self.resolver.find(name, scope, load.loader)
            if found is None:
                return [entry(None, name, need.reason)]
            target = load.by_canonical.get(found.canonical)
            if target is None:
                start = len(load.nodes)
                target = load.add(self.catalog, found, trigger)
                load.by_name.setdefault(name, target)
                load.keep.add(found.path, why)
                missing_before = len(load.missing)
                self._load(load, start)
                reason = f"needed by {found.path}"
                return [
                    entry(found.path, name, need.reason),
                    *(
                        entry(dep.path, dep.path.rsplit("/", 1)[-1], reason, found.path)
                        for dep in load.nodes[start + 1 :]
                    ),
                    *(
                        entry(None, lost, reason, found.path)
                        for lost in dict.fromkeys(load.missing[missing_before:])
                    ),
                ]
            load.by_name.setdefault(name, target)
        load.keep.add(target.path, why)
        return [entry(target.path, name, need.reason)]


def analyze(
    root: Path | str,
    paths: Iterable[str] = (),
    env: Iterable[str] | Mapping[str, str] = (),
    *,
    all_objects: bool = False,
    workdir: str = "/",
    rules: Sequence[LazyRule] = DEFAULT_RULES,
    progress: Progress = NULL_PROGRESS,
) -> DepsResult:
    """Static dependency closure of ``paths`` inside the image tree at ``root``.

    ``paths`` are in-image paths (executables, libraries or ``#!`` scripts); ``env`` is
    the image's environment (``["KEY=VALUE", ...]`` as in the image config, or a
    mapping) — its ``PATH`` and ``LD_LIBRARY_PATH`` matter; ``workdir`` anchors relative
    search paths.  With ``all_objects`` every ELF object in the tree is analysed too.
    Read-only and deterministic; never raises for image content.
    """
    analyzer = DepsAnalyzer(root, env, workdir=workdir, rules=rules)
    return analyzer.analyze(paths, all_objects=all_objects, progress=progress)


def analyze_config(
    root: Path | str,
    config: ImageRunConfig,
    paths: Iterable[str] = (),
    *,
    all_objects: bool = False,
    rules: Sequence[LazyRule] = DEFAULT_RULES,
    progress: Progress = NULL_PROGRESS,
) -> DepsResult:
    """:func:`analyze` for an image: its Env and WorkingDir, and its program by default.

    ``paths`` not starting with ``/`` are looked up on the image's ``PATH``.  With no
    ``paths`` and not ``all_objects``, the program of the entrypoint (or, without one,
    the cmd) is analysed.  Raises :class:`~ocislim.errors.UsageError` when there is
    nothing to analyse and :class:`~ocislim.errors.InputNotFoundError` when a named
    path (or the image's program) is not in the image.  Read-only.
    """
    workdir = config.working_dir or "/"
    analyzer = DepsAnalyzer(root, config.env, workdir=workdir, rules=rules)
    names = list(paths)
    if not names and not all_objects:
        argv = [*(config.entrypoint or []), *(config.cmd or [])]
        if not argv:
            raise UsageError("the image has no entrypoint or cmd; name PATHs or use --all")
        names = [argv[0]]
    targets = []
    for name in names:
        found = find_program(analyzer.rootfs, name, config.env, workdir)
        if found is None:
            where = "in the image" if name.startswith("/") else "on the image's PATH"
            raise InputNotFoundError(f"{name}: not found {where}")
        targets.append(found)
    return analyzer.analyze(targets, all_objects=all_objects, progress=progress)
