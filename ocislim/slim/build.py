"""``ocislim build``: the pipeline from a source image to a verified slim image.

Stages (each reported to the progress receiver and timed in the report):

1. ``unpack``  — the merged tree of the source (original tar headers) and, from
   the same pass, a root filesystem on disk for the sandbox (one unpack);
2. ``trace``   — the probe plan runs traced in the sandbox on that rootfs;
3. ``analyse`` — the KeepPlan: traced files, language rules, the user's rules,
   closed over parents, symlinks, hardlinks and the static ELF closure;
4. ``verify``  — the probe plan runs again on a slim rootfs; missing paths are
   added for a bounded number of rounds (:mod:`ocislim.slim.verify`);
5. ``write``   — a second pass over the layers copies only the kept files'
   bytes, one layer is written from the kept entries' original headers, then
   the image (atomic, deterministic), the report and the seccomp profile.

Scratch space (rootfs, slim rootfs, spool, layer file) lives in a hidden
directory beside the output and is removed whatever happens; no process is
left running.  On a verification failure the report is written, the image is
not, and :class:`~ocislim.errors.VerificationError` is raised.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ocislim.convert import flattened_config, write_tree_layer
from ocislim.elf import find_program
from ocislim.errors import (
    InputNotFoundError,
    OutputError,
    UnsafeArchiveError,
    UsageError,
    VerificationError,
)
from ocislim.image.models import canonical_json
from ocislim.image.source import Image
from ocislim.image.writer import FORMATS, WrittenImage, check_destination, write_image
from ocislim.layers.extract import remove_tree
from ocislim.layers.merge import merge, spool_contents
from ocislim.layers.rootfs import holds_image
from ocislim.layers.spool import Spool
from ocislim.layers.tree import FileTree
from ocislim.layers.unpack import unpack
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.sandbox import RunResult, RunSpec, TraceResult, parse_size, run, run_spec, trace
from ocislim.sandbox.analysis import DirTree, FileAccess
from ocislim.sandbox.namespaces import PROBE_DIR
from ocislim.sandbox.syscalls import native_arch
from ocislim.slim import report as report_mod
from ocislim.slim.elfdeps import NETWORK_RULES, ElfDeps, lazy_rule_names, select_rules
from ocislim.slim.langrules import LangRules, default_enabled, rule_names
from ocislim.slim.materialize import SlimRoot
from ocislim.slim.plan import KeepPlan, Planner, Reason, Seed, close_plan
from ocislim.slim.probes import Outcome, ProbeOptions, ProbePlan, RunController
from ocislim.slim.rules import KeepOptions, user_seeds
from ocislim.slim.seccomp import profile as seccomp_profile
from ocislim.slim.traced import trace_seeds, traced_files
from ocislim.slim.verify import Verification, verify

STAGES = ("unpack", "trace", "analyse", "verify", "write")
DEFAULT_REPORT_NAME = "slim.report.json"


@dataclass(frozen=True)
class OutputOptions:
    path: Path
    fmt: str = "oci-archive"
    compression: str | None = None  # None: gzip (docker-archive: none)
    level: int | None = None
    tag: str | None = None
    report: Path | None = None  # None: slim.report.json beside the output
    seccomp_profile: Path | None = None


@dataclass(frozen=True)
class RunOptions:
    """The run options ``ocislim trace`` has (the program to probe and its sandbox)."""

    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    cmd: str | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    mounts: tuple[str, ...] = ()
    network: Literal["none", "host"] = "none"
    rootfs: Path | None = None
    show_output: bool = True  # the program's stdout/stderr go to stderr (else nowhere)
    tmpfs_size: int | None = None  # bytes of writes inside (None: the sandbox's default)


@dataclass(frozen=True)
class ConfigOverrides:
    """``--new-*``: replace fields of the output config (None: keep the source's)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildOptions:
    output: OutputOptions
    run: RunOptions = field(default_factory=RunOptions)
    probes: ProbeOptions = field(default_factory=ProbeOptions)
    keep: KeepOptions = field(default_factory=KeepOptions)
    overrides: ConfigOverrides = field(default_factory=ConfigOverrides)
    include_oslibs_net: bool = True
    enable_rules: tuple[str, ...] = ()
    disable_rules: tuple[str, ...] = ()
    keep_from: Path | None = None
    verify: bool = True
    verify_rounds: int = 3


@dataclass
class BuildResult:
    written: WrittenImage
    report: dict[str, Any]
    report_path: Path
    seccomp_path: Path | None

    def summary(self) -> dict[str, Any]:
        return report_mod.summary(self.report, self.report_path)


# --- helpers -------------------------------------------------------------------------


class _Nested:
    """Progress of a sub-step, shown under the stage it belongs to."""

    def __init__(self, outer: Progress, stage: str) -> None:
        self._outer = outer
        self._stage = stage

    def stage(self, name: str, detail: str = "") -> None:
        self._outer.stage(self._stage, f"{name} {detail}".strip())

    def advance(self, what: str, done: int, total: int | None = None) -> None:
        self._outer.advance(what, done, total)

    def note(self, message: str) -> None:
        self._outer.note(message)


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._start = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.times[name] = round(self.times.get(name, 0.0) + time.monotonic() - start, 3)

    def total(self) -> float:
        return round(time.monotonic() - self._start, 3)


_NAME_RE = re.compile(r"[^a-z0-9._/-]+")


def default_tag(image: Image) -> str:
    """``NAME.slim:TAG`` from the source's reference, else from its file name."""
    ref = image.ref_name or ""
    ref = ref.split("@", 1)[0]
    name, tag = ref, "latest"
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1 :] or "latest"
    if not name:
        stem = image.source.name
        for suffix in (".tar", ".oci", ".docker", ".archive"):
            stem = stem.removesuffix(suffix)
        name = "localhost/" + (_NAME_RE.sub("-", stem.lower()).strip("-._/") or "image")
    return f"{name}.slim:{tag}"


def _parse_list(value: str | None) -> list[str] | None:
    """``--new-entrypoint``/``--new-cmd``: a JSON array, or words split like a shell."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise UsageError(f"{value!r}: expected a JSON array of strings")
        return parsed
    return shlex.split(text)


def parse_command_list(value: str | None) -> list[str] | None:
    return _parse_list(value)


def slim_config(image: Image, diff_id: Any, overrides: ConfigOverrides, created_by: str) -> bytes:
    """The source config with one layer, the slimming in its history, and overrides."""
    raw = json.loads(flattened_config(image, diff_id, created_by))
    config = raw.setdefault("config", {})
    if overrides.entrypoint is not None:
        config["Entrypoint"] = overrides.entrypoint or None
    if overrides.cmd is not None:
        config["Cmd"] = overrides.cmd or None
    if overrides.env:
        env = list(config.get("Env") or [])
        for item in overrides.env:
            key = item.split("=", 1)[0]
            if not key or "=" not in item:
                raise UsageError(f"--new-env {item!r}: expected K=V")
            env = [e for e in env if e.split("=", 1)[0] != key] + [item]
        config["Env"] = env
    if overrides.workdir is not None:
        config["WorkingDir"] = overrides.workdir
    if overrides.labels:
        labels = dict(config.get("Labels") or {})
        for item in overrides.labels:
            key, sep, value = item.partition("=")
            if not key or not sep:
                raise UsageError(f"--new-label {item!r}: expected K=V")
            labels[key] = value
        config["Labels"] = labels
    for key in [k for k, v in config.items() if v is None]:
        del config[key]
    return canonical_json(raw)


def _content_stats(tree: FileTree, keep: frozenset[str] | None = None) -> dict[str, int]:
    files = dirs = links = other = 0
    size = 0
    inodes: set[int] = set()
    for entry in tree.walk():
        if entry.path == "/" or (keep is not None and entry.path not in keep):
            continue
        kind = entry.kind
        if kind == "dir":
            dirs += 1
        elif kind == "symlink":
            links += 1
        elif kind == "file":
            files += 1
            if entry.inode not in inodes:
                inodes.add(entry.inode)
                size += entry.size
        else:
            other += 1
    return {
        "files": files,
        "directories": dirs,
        "symlinks": links,
        "other": other,
        "content_size": size,
    }


# --- the pipeline --------------------------------------------------------------------


@dataclass
class _State:
    """What the stages hand each other."""

    image: Image
    options: BuildOptions
    progress: Progress
    scratch: Path
    timer: _Timer = field(default_factory=_Timer)
    root: Path = Path("/")
    tree: FileTree = field(default_factory=FileTree)
    probe_plan: ProbePlan | None = None
    baseline: Outcome | None = None
    syscalls: set[str] = field(default_factory=set)
    planner: Planner | None = None
    verification: Verification | None = None
    notes: list[str] = field(default_factory=list)
    process_argv: list[str] = field(default_factory=list)
    devnull: int | None = None

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.progress.note(message)


def _check_options(options: BuildOptions) -> None:
    out = options.output
    if out.fmt not in FORMATS:
        raise UsageError(f"--format {out.fmt!r}: choose one of {', '.join(FORMATS)}")
    known = set(rule_names()) | set(lazy_rule_names())
    for name in (*options.enable_rules, *options.disable_rules):
        if name not in known:
            raise UsageError(f"unknown rule {name!r}; rules: {', '.join(sorted(known))}")
    if options.verify_rounds < 1:
        raise UsageError("--verify-rounds must be at least 1")
    gzip = out.fmt != "docker-archive" and (out.compression or "gzip") == "gzip"
    if out.level is not None and gzip and not 1 <= out.level <= 9:
        raise UsageError(f"--level {out.level}: gzip levels are 1-9")  # as convert checks
    if options.keep_from is not None and not Path(options.keep_from).is_file():
        raise InputNotFoundError(f"--keep-from {options.keep_from}: no such file")


def build(image: Image, options: BuildOptions, progress: Progress = NULL_PROGRESS) -> BuildResult:
    """Slim ``image`` as ``options`` say (see the module docstring).  Atomic outputs."""
    _check_options(options)
    dest = Path(os.path.abspath(options.output.path))
    check_destination(dest, options.output.fmt, [image.source])  # before tracing, not after
    for flag, side in (
        ("--report", options.output.report),
        ("--seccomp-profile", options.output.seccomp_profile),
    ):
        if side is not None and not Path(os.path.abspath(side)).parent.is_dir():
            raise OutputError(f"{flag} {side}: no such directory")
    scratch = Path(tempfile.mkdtemp(prefix=".ocislim-build-", dir=dest.parent))
    state = _State(image, options, progress, scratch)
    try:
        return _build(state, dest)
    finally:
        if state.devnull is not None:
            os.close(state.devnull)
        remove_tree(scratch)


def _build(state: _State, dest: Path) -> BuildResult:
    options = state.options
    with state.timer.stage("unpack"):
        _unpack(state)
    spec_maker = _spec_maker(state)
    state.probe_plan = ProbePlan.from_options(options.probes, state.image.config.exposed_ports)
    keep_from = report_mod.load(options.keep_from) if options.keep_from else None
    traced: list[Seed] = []
    if keep_from is None:
        with state.timer.stage("trace"):
            state.baseline, traced = _trace_source(state, spec_maker)
    with state.timer.stage("analyse"):
        state.progress.stage("analyse", "keep plan and ELF closure")
        extend = _analyse(state, traced, keep_from)
    if options.verify:
        with state.timer.stage("verify"):
            if state.baseline is None:
                state.baseline = _baseline_for_keep_from(state, keep_from, spec_maker)
            _verify(state, spec_maker, extend)
    assert state.planner is not None
    plan = state.planner.plan()
    report_path = Path(os.path.abspath(options.output.report or dest.parent / DEFAULT_REPORT_NAME))
    seccomp_path = (
        Path(os.path.abspath(options.output.seccomp_profile))
        if options.output.seccomp_profile
        else None
    )
    failed = state.verification is not None and state.verification.passed is False
    written = None
    layer_size = None
    if not failed:
        with state.timer.stage("write"):
            written, layer_size = _write(state, plan, dest)
            if seccomp_path is not None:
                data = seccomp_profile(state.syscalls, native_arch())
                report_mod.write_json_atomic(seccomp_path, data)
    report = report_mod.build_report(
        image=state.image,
        source_stats=_content_stats(state.tree),
        output_stats=_content_stats(state.tree, plan.paths),
        written=written,
        layer_size=layer_size,
        tag=options.output.tag or default_tag(state.image),
        plan=plan,
        probe_plan=state.probe_plan,
        command=state.process_argv,
        baseline=state.baseline,
        verification=state.verification or Verification(False, options.verify_rounds),
        timings={**state.timer.times, "total": state.timer.total()},
        rules=_rule_states(options),
        seccomp_path=seccomp_path if written else None,
        keep_from=options.keep_from,
        notes=state.notes,
    )
    report_mod.write_json_atomic(report_path, report)
    if failed:
        assert state.verification is not None
        raise VerificationError(f"{state.verification.failure()} (report: {report_path})")
    assert written is not None
    return BuildResult(written, report, report_path, seccomp_path)


def _rule_states(options: BuildOptions) -> dict[str, list[str]]:
    lang = (set(default_enabled()) | set(options.enable_rules)) - set(options.disable_rules)
    lazy = set(lazy_rule_names()) - set(options.disable_rules)
    if not options.include_oslibs_net:
        lazy -= NETWORK_RULES
    enabled = sorted(lang | lazy)
    every = sorted(set(rule_names()) | set(lazy_rule_names()))
    return {"enabled": enabled, "disabled": [r for r in every if r not in enabled]}


def _unpack(state: _State) -> None:
    """One unpack: the rootfs on disk and the tree with original headers, same pass."""
    progress = _Nested(state.progress, "unpack")
    given = state.options.run.rootfs
    if given is not None:
        given = Path(os.path.abspath(given))
        if holds_image(given, state.image):
            state.progress.stage("unpack", f"reusing {given} (reading headers)")
            state.root = given
            state.tree = merge(state.image, progress=progress)
            return
        state.progress.stage("unpack", str(given))
        result = unpack(state.image, given, progress)
    else:
        state.progress.stage("unpack", f"{len(state.image.layers)} layers")
        result = unpack(state.image, state.scratch / "rootfs", progress)
    state.root = result.root
    state.tree = result.tree


def _spec_maker(state: _State) -> Callable[[Path, Sequence[str], Sequence[Any]], RunSpec]:
    run_opts = state.options.run
    if run_opts.show_output:
        out = err = 2
    else:
        out = err = state.devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)

    def make(root: Path, mounts: Sequence[str], probes: Sequence[Any]) -> RunSpec:
        spec = run_spec(
            state.image.config,
            root,
            command=run_opts.command,
            entrypoint=run_opts.entrypoint,
            cmd=run_opts.cmd,
            env=run_opts.env,
            workdir=run_opts.workdir,
            user=run_opts.user,
            mounts=[*run_opts.mounts, *mounts],
            network=run_opts.network,
            timeout=state.probe_plan.timeout if state.probe_plan else None,
            probes=probes,
            stdout=out,
        )
        state.process_argv = list(spec.argv)  # for the report
        if run_opts.tmpfs_size is not None:
            spec = dataclasses.replace(spec, tmpfs_size=run_opts.tmpfs_size)
        return dataclasses.replace(spec, stderr=err)

    return make


def _run_plan(
    state: _State,
    spec_maker: Callable[[Path, Sequence[str], Sequence[Any]], RunSpec],
    root: Path,
    progress: Progress,
    traced: bool = True,
) -> tuple[Outcome, Any]:
    plan = state.probe_plan
    assert plan is not None
    controller = RunController(plan)
    try:
        spec = spec_maker(root, controller.mounts(), plan.sandbox_probes())
        controller.start()
        count = state.options.output.seccomp_profile is not None
        result: TraceResult | RunResult
        if traced:
            result = trace(root, spec, progress, count_syscalls=count)
            run_result = result.run
        else:
            result = run_result = run(root, spec, progress)
    finally:
        controller.finish()
    for note in controller.notes:
        state.note(note)
    outcome = Outcome(
        run_result.exit_code,
        run_result.timed_out,
        plan.exec_codes(run_result.probe_exit_codes),
        tuple(controller.http_results),
    )
    return outcome, result


def _trace_source(
    state: _State, spec_maker: Callable[[Path, Sequence[str], Sequence[Any]], RunSpec]
) -> tuple[Outcome, list[Seed]]:
    outcome, result = _run_plan(state, spec_maker, state.root, state.progress)
    if result.syscalls:
        state.syscalls.update(result.syscalls)
    runtime = (*result.run.runtime_paths, PROBE_DIR)
    files = traced_files(result.events, DirTree(state.root), runtime)
    plan = state.probe_plan
    if outcome.exit_code != 0 and plan is not None and plan.continue_after == "app-exit":
        state.note(f"the program exited with code {outcome.exit_code} while traced")
    return outcome, trace_seeds(files)


def _analyse(
    state: _State, traced: list[Seed], keep_from: dict[str, Any] | None
) -> Callable[[list[Seed]], list[str]]:
    options = state.options
    tree = state.tree
    planner = Planner(tree, options.keep.exclude_patterns)
    state.planner = planner
    disabled = set(options.disable_rules)
    if not options.include_oslibs_net:
        disabled |= NETWORK_RULES
    config = state.image.config
    env = [*config.env, *options.run.env]
    workdir = options.run.workdir or config.working_dir or "/"
    deps = ElfDeps(state.root, tree, env, workdir, select_rules(disabled))
    lang_enabled = (set(default_enabled()) | set(options.enable_rules)) - disabled
    lang = LangRules(tree, deps.analyzer.rootfs.read_text, lang_enabled)

    def extend(seeds: list[Seed]) -> list[str]:
        touched = [s.path for s in seeds if s.reason.source in ("trace", "verify")]
        return close_plan(planner, [*seeds, *lang.seeds(_resolved(tree, touched))], deps)

    out_workdir = options.overrides.workdir or config.working_dir or "/"
    seeds = list(traced)
    seeds += user_seeds(
        options.keep,
        tree,
        lambda name: find_program(deps.analyzer.rootfs, name, env, workdir),
        out_workdir,
        state.note,
    )
    if keep_from is not None:
        why = Reason("rule", detail=str(options.keep_from), flag="--keep-from")
        seeds += [Seed(k["path"], why, follow=False) for k in keep_from["kept"]]
    seeds += _config_seeds(state, deps, out_workdir)
    extend(seeds)
    return extend


def _config_seeds(state: _State, deps: ElfDeps, workdir: str) -> list[Seed]:
    """What the output config itself needs for a runtime to start it, probed or not:
    the entrypoint's program, the working directory, and the account files when USER
    is a name (runtimes and the sandbox look it up in the image)."""
    seeds = []
    program = _entry_program(state, deps)
    if program is not None:
        why = Reason("rule", detail="the output image's entrypoint", flag="config")
        seeds.append(Seed(program, why))
    if workdir != "/":
        seeds.append(Seed(workdir, Reason("rule", detail="WorkingDir", flag="config")))
    users = [state.image.config.user or "", state.options.run.user or ""]
    if any(part and not part.isdigit() for user in users for part in user.split(":")):
        why = Reason("rule", detail="USER is a name, looked up in these files", flag="config")
        seeds += [Seed("/etc/passwd", why), Seed("/etc/group", why)]
    return seeds


def _resolved(tree: FileTree, paths: Sequence[str]) -> list[str]:
    out = []
    for path in paths:
        try:
            out.append(tree.resolve(path))
        except UnsafeArchiveError:
            continue  # a symlink loop: nothing to widen
    return out


def _entry_program(state: _State, deps: ElfDeps) -> str | None:
    config = state.image.config
    overrides = state.options.overrides
    argv = [
        *(overrides.entrypoint if overrides.entrypoint is not None else config.entrypoint or []),
        *(overrides.cmd if overrides.cmd is not None else config.cmd or []),
    ]
    if not argv:
        return None
    env = [*config.env, *overrides.env]
    workdir = overrides.workdir or config.working_dir or "/"
    return find_program(deps.analyzer.rootfs, argv[0], env, workdir)


def _baseline_for_keep_from(
    state: _State,
    keep_from: dict[str, Any] | None,
    spec_maker: Callable[[Path, Sequence[str], Sequence[Any]], RunSpec],
) -> Outcome:
    assert state.probe_plan is not None
    recorded = (keep_from or {}).get("probes", {})
    if recorded.get("plan") == state.probe_plan.to_json() and recorded.get("source"):
        return Outcome.from_json(recorded["source"])
    state.note("--keep-from: the report's probes differ; running the source image for a baseline")
    outcome, _ = _run_plan(
        state, spec_maker, state.root, _Nested(state.progress, "verify"), traced=False
    )
    return outcome


def _verify(
    state: _State,
    spec_maker: Callable[[Path, Sequence[str], Sequence[Any]], RunSpec],
    extend: Callable[[list[Seed]], list[str]],
) -> None:
    planner = state.planner
    assert planner is not None and state.baseline is not None and state.probe_plan is not None
    state.progress.stage("verify", "slim root filesystem")
    slim = SlimRoot(state.scratch / "slim", state.root, state.tree)
    try:
        slim.add(planner.kept_paths)

        def run_probes(root: Path) -> tuple[Outcome, Sequence[FileAccess]]:
            outcome, result = _run_plan(state, spec_maker, root, _Nested(state.progress, "verify"))
            if result.syscalls:
                state.syscalls.update(result.syscalls)
            return outcome, result.report.misses

        state.verification = verify(
            state.baseline,
            state.probe_plan,
            slim,
            state.tree,
            planner.__contains__,
            extend,
            run_probes,
            state.options.verify_rounds,
            state.progress,
        )
    finally:
        slim.remove()


def _write(state: _State, plan: KeepPlan, dest: Path) -> tuple[WrittenImage, int]:
    out = state.options.output
    docker = out.fmt == "docker-archive"
    if docker and out.compression not in (None, "none"):
        state.note("docker-archive layers are stored uncompressed; ignoring --compression")
    compression = "none" if docker else out.compression or "gzip"
    entries = plan.entries(state.tree)
    wanted = {(e.data.layer, e.data.ordinal) for e in entries if e.data is not None}
    progress = _Nested(state.progress, "write")
    with Spool(state.scratch) as spool:
        offsets = spool_contents(state.image, wanted, spool, progress)
        state.tree.set_spool_offsets(offsets)
        entries = plan.entries(state.tree)
        state.progress.stage("write", f"one layer, {len(entries)} entries, {compression}")
        layer = write_tree_layer(
            entries,
            lambda ref: spool.reader(ref.spool_offset or 0, ref.size),
            compression,
            out.level,
            state.scratch,
        )
    total = sum(1 for e in state.tree.walk() if e.path != "/")
    kept = sum(1 for e in entries if e.path != "/")
    created_by = f"ocislim build (kept {kept} of {total} paths)"
    config_raw = slim_config(state.image, layer.diff_id, state.options.overrides, created_by)
    tag = out.tag or default_tag(state.image)
    state.progress.stage("write", f"{out.fmt} {dest}")
    written = write_image(dest, out.fmt, config_raw, [layer], tag, [state.image.source])
    return written, layer.size


def options_from_flags(flags: dict[str, Any]) -> BuildOptions:
    """BuildOptions from the ``build`` command's flags (click parameter names)."""
    ports: list[int] = []
    for item in (flags.get("http_probe_ports") or "").replace(" ", "").split(","):
        if not item:
            continue
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise UsageError(f"--http-probe-ports: {item!r} is not a port number")
        ports.append(int(item))
    output = OutputOptions(
        path=Path(flags["output"]),
        fmt=flags["fmt"],
        compression=flags.get("compression"),
        level=flags.get("level"),
        tag=flags.get("tag"),
        report=Path(flags["report"]) if flags.get("report") else None,
        seccomp_profile=Path(flags["seccomp_profile"]) if flags.get("seccomp_profile") else None,
    )
    run_options = RunOptions(
        command=tuple(flags.get("command") or ()),
        entrypoint=flags.get("entrypoint"),
        cmd=flags.get("cmd"),
        env=tuple(flags.get("env") or ()),
        workdir=flags.get("workdir"),
        user=flags.get("user"),
        mounts=tuple(flags.get("mount") or ()),
        network=flags.get("network") or "none",
        rootfs=Path(flags["rootfs"]) if flags.get("rootfs") else None,
        show_output=not flags.get("quiet", False),
        tmpfs_size=parse_size(flags["tmpfs_size"]) if flags.get("tmpfs_size") else None,
    )
    probes = ProbeOptions(
        exec_commands=tuple(flags.get("exec_") or ()),
        exec_files=tuple(Path(f) for f in flags.get("exec_file") or ()),
        http=flags.get("http_probe"),
        http_commands=tuple(flags.get("http_probe_cmd") or ()),
        http_ports=tuple(ports),
        continue_after=flags.get("continue_after"),
        timeout=flags.get("timeout"),
    )
    keep = KeepOptions(
        include_paths=tuple(flags.get("include_path") or ()),
        include_path_files=tuple(Path(f) for f in flags.get("include_path_file") or ()),
        include_bins=tuple(flags.get("include_bin") or ()),
        include_exes=tuple(flags.get("include_exe") or ()),
        include_shell=bool(flags.get("include_shell")),
        include_cert_all=flags.get("include_cert_all", True),
        include_zoneinfo=bool(flags.get("include_zoneinfo")),
        include_workdir=bool(flags.get("include_workdir")),
        exclude_patterns=tuple(flags.get("exclude_pattern") or ()),
    )
    overrides = ConfigOverrides(
        entrypoint=_parse_list(flags.get("new_entrypoint")),
        cmd=_parse_list(flags.get("new_cmd")),
        env=tuple(flags.get("new_env") or ()),
        workdir=flags.get("new_workdir"),
        labels=tuple(flags.get("new_label") or ()),
    )
    return BuildOptions(
        output=output,
        run=run_options,
        probes=probes,
        keep=keep,
        overrides=overrides,
        include_oslibs_net=flags.get("include_oslibs_net", True),
        enable_rules=tuple(flags.get("enable_rule") or ()),
        disable_rules=tuple(flags.get("disable_rule") or ()),
        keep_from=Path(flags["keep_from"]) if flags.get("keep_from") else None,
        verify=not flags.get("no_verify", False),
        verify_rounds=flags.get("verify_rounds") or 3,
    )
