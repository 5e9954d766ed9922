"""``ocislim build``: the pipeline from a source image to a verified slim image.

Each stage consumes the frozen results of the ones before it and produces its own
(each is reported to the progress receiver and timed in the report); no stage
changes an earlier one's result:

1. ``unpack``  (image) -> :class:`Unpacked`: the merged tree of the source
   (original tar headers) and, from the same pass, a root filesystem on disk
   for the sandbox (one unpack);
2. ``trace``   (Unpacked) -> :class:`Traced`: the probe plan runs traced in the
   sandbox on that rootfs; its outcome and the seeds of the files it touched
   (skipped with ``--keep-from``, whose report stands in for it);
3. ``analyse`` (Unpacked, Traced) -> :class:`Planned`: the KeepPlan: traced
   files, language rules, the user's rules, closed over parents, symlinks,
   hardlinks and the static ELF closure (:mod:`ocislim.slim.keeper`);
4. ``verify``  (Unpacked, Traced, Planned) -> :class:`Verified`: the probe plan
   runs again on a slim rootfs; missing paths are added for a bounded number of
   rounds (:mod:`ocislim.slim.verify`), giving the final KeepPlan;
5. ``write``   (Unpacked, Verified) -> :class:`Written`: one layer is written
   from the kept entries' original headers and their bytes (spooled by
   ``unpack``, or copied in a second pass over the layers when the disk has no
   room for a spool of every file), then the image (atomic, deterministic) and
   the seccomp profile.  The report is written last, from every stage's result.

The sandbox is called only through :class:`~ocislim.slim.probing.Prober`.
Scratch space (rootfs, slim rootfs, spool, layer file) lives in a hidden
directory beside the output and is removed whatever happens; no process is
left running.  The slim rootfs (after ``verify``) and the unpacked rootfs (once
``write`` has read its package databases) are removed in the background while
the image is written; ``write`` waits for that, so the report's timings count
it.  On a verification failure the report is written, the image is not, and
:class:`~ocislim.errors.VerificationError` is raised.
"""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocislim import scratch as scratch_paths
from ocislim.errors import OutputError, VerificationError
from ocislim.htmlreport import write_html
from ocislim.humanize import plural
from ocislim.image.mutate import default_tag, flattened_config
from ocislim.image.source import Image, open_image
from ocislim.image.writer import WrittenImage, check_destination, write_image
from ocislim.layers.merge import merge, spool_contents, spooled_data
from ocislim.layers.rootfs import holds_image
from ocislim.layers.spool import Spool
from ocislim.layers.stats import content_stats
from ocislim.layers.tree import FileTree
from ocislim.layers.unpack import unpack
from ocislim.layers.writer import write_tree_layer
from ocislim.outputs import write_text_atomic
from ocislim.progress import NULL_PROGRESS, Nested, Progress, counted
from ocislim.slim import pkgdb, sbom
from ocislim.slim import report as report_mod
from ocislim.slim.keeper import Keeper, first_seeds
from ocislim.slim.materialize import SlimRoot
from ocislim.slim.options import BuildOptions, check_options, rule_states
from ocislim.slim.plan import KeepPlan, Seed
from ocislim.slim.probes import Outcome, ProbePlan
from ocislim.slim.probing import Prober
from ocislim.slim.seccomp import profile as seccomp_profile
from ocislim.slim.verify import Verification, verify
from ocislim.timing import StageTimer

STAGES = ("unpack", "trace", "analyse", "verify", "write")

# ``unpack`` spools every file's bytes (saving ``write`` a second pass over the layers)
# when the scratch file system has this many times the layers' compressed size free:
# room for the rootfs and the spool, each about the uncompressed size, with a margin.
SPOOL_ROOM_FACTOR = 10


@dataclass(frozen=True)
class BuildResult:
    written: WrittenImage
    report: dict[str, Any]
    report_path: Path
    seccomp_path: Path | None

    def summary(self) -> dict[str, Any]:
        return report_mod.summary(self.report, self.report_path)


# --- what the stages hand each other -------------------------------------------------


@dataclass(frozen=True)
class Unpacked:
    """``unpack``: the source's root filesystem on disk and its merged tree.

    Later stages only read the tree (its entries keep their original headers).
    ``spool``, when given, holds the bytes of every regular file at its entry's
    ``data.spool_offset``, copied from the layers in the same pass."""

    root: Path
    tree: FileTree
    spool: Spool | None = None


@dataclass(frozen=True)
class Traced:
    """``trace``: the source's outcome under the probes (None: not traced, ``--keep-from``)
    and seeds for the files it touched."""

    baseline: Outcome | None
    seeds: tuple[Seed, ...]
    notes: tuple[str, ...]
    commands: tuple[tuple[str, ...], ...] = ()  # the argv of each traced process


@dataclass(frozen=True)
class Planned:
    """``analyse``: the keep plan before verification."""

    plan: KeepPlan
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Verified:
    """``verify``: the final keep plan, the source's outcome it was checked against, the
    rounds, and what the runs so far observed (system calls on ``arch``, the program's
    argv)."""

    plan: KeepPlan
    baseline: Outcome | None
    verification: Verification
    syscalls: frozenset[str]
    arch: str
    command: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return self.verification.passed is False


@dataclass(frozen=True)
class Written:
    """``write``: the slim image, its layer's size, the seccomp profile's path, the plan
    as written (the verified one plus package-database files) and the package accounting."""

    image: WrittenImage
    layer_size: int
    seccomp_path: Path | None
    notes: tuple[str, ...]
    plan: KeepPlan
    accounting: pkgdb.Accounting


class _Notes:
    """A stage's notes: recorded for its result and shown as they come."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self.items: list[str] = []

    def __call__(self, message: str) -> None:
        self.items.append(message)
        self._progress.note(message)


# --- the pipeline --------------------------------------------------------------------


def build(image: Image, options: BuildOptions, progress: Progress = NULL_PROGRESS) -> BuildResult:
    """Slim ``image`` as ``options`` say (see the module docstring).  Atomic outputs."""
    check_options(options)
    dest = Path(os.path.abspath(options.output.path))
    check_destination(dest, options.output.fmt, [image.source])  # before tracing, not after
    for flag, side in (
        ("--report", options.output.report),
        ("--seccomp-profile", options.output.seccomp_profile),
        ("--removed-list", options.output.removed_list),
        ("--html", options.output.html),
        *(("--sbom", path) for path in options.output.sboms),
    ):
        if side is not None and not Path(os.path.abspath(side)).parent.is_dir():
            raise OutputError(f"{flag} {side}: no such directory")
    scratch = scratch_paths.make_dir(dest.parent, ".ocislim-build-")
    try:
        with ExitStack() as resources:
            return _pipeline(image, options, progress, scratch, dest, resources)
    finally:
        scratch_paths.remove(scratch)


def _pipeline(
    image: Image,
    options: BuildOptions,
    progress: Progress,
    scratch: Path,
    dest: Path,
    resources: ExitStack,
) -> BuildResult:
    timer = StageTimer()
    with timer.stage("unpack"):
        spool = _first_pass_spool(image, scratch)
        if spool is not None:
            resources.enter_context(spool)
        unpacked = _unpack(image, options, progress, scratch, spool)
    probe_plan = ProbePlan.from_options(options.probes, image.config.exposed_ports)
    keep_from = [(p, report_mod.load(p)) for p in options.keep_from_paths]
    counting = options.output.seccomp_profile is not None
    name = str(image.source)
    with Prober(image.config, options.run, probe_plan, progress, counting, name) as prober:
        traced = Traced(None, (), ())
        if not keep_from:
            with timer.stage("trace"):
                traced = _trace(unpacked, prober)
        with timer.stage("analyse"):
            progress.stage("analyse", "keep plan and ELF closure")
            keeper = Keeper(unpacked.root, unpacked.tree, image.config, options)
            planned = _analyse(keeper, image, options, traced, keep_from, progress)
        if options.verify:
            with timer.stage("verify"):
                verified = _verify(
                    unpacked, traced, planned, keeper, prober, keep_from, options, scratch
                )
        else:
            verification = Verification(False, options.verify_rounds)
            verified = _verified(planned.plan, traced.baseline, verification, prober)
    written = None
    if not verified.failed:
        with timer.stage("write"):
            written = _write(image, options, unpacked, verified, progress, scratch, dest)
    return _report(image, options, unpacked, probe_plan, traced, planned, verified, written, timer)


def _first_pass_spool(image: Image, scratch: Path) -> Spool | None:
    """A spool for ``unpack`` to fill, or None when the disk has no room for it (see
    :data:`SPOOL_ROOM_FACTOR`); ``write`` then reads the kept bytes in a second pass."""
    compressed = sum(layer.descriptor.size for layer in image.layers)
    if shutil.disk_usage(scratch).free < SPOOL_ROOM_FACTOR * compressed:
        return None
    return Spool(scratch)


def _unpack(
    image: Image, options: BuildOptions, progress: Progress, scratch: Path, spool: Spool | None
) -> Unpacked:
    """One unpack: the rootfs on disk and the tree with original headers, same pass
    (and the files' bytes in ``spool``, when given)."""
    nested = Nested(progress, "unpack")
    given = options.run.rootfs
    if given is not None:
        given = Path(os.path.abspath(given))
        if holds_image(given, image):
            progress.stage("unpack", f"reusing {given} (reading headers)")
            return Unpacked(given, merge(image, spool=spool, progress=progress), spool)
        progress.stage("unpack", str(given))
        result = unpack(image, given, nested, spool)
    else:
        progress.stage("unpack", plural(len(image.layers), "layer"))
        result = unpack(image, scratch / "rootfs", nested, spool)
    return Unpacked(result.root, result.tree, spool)


def _trace(unpacked: Unpacked, prober: Prober) -> Traced:
    baseline, seeds = prober.trace_source(unpacked.root)
    return Traced(baseline, tuple(seeds), prober.take_notes(), prober.commands)


def _analyse(
    keeper: Keeper,
    image: Image,
    options: BuildOptions,
    traced: Traced,
    keep_from: list[tuple[Path, dict[str, Any]]],
    progress: Progress,
) -> Planned:
    notes = _Notes(progress)
    keeper.extend(
        first_seeds(keeper, image.config, options, traced.seeds, keep_from, notes, traced.commands)
    )
    packages = keeper.package_note()
    if packages is not None:
        notes(packages)
    return Planned(keeper.plan(), tuple(notes.items))


def _verify(
    unpacked: Unpacked,
    traced: Traced,
    planned: Planned,
    keeper: Keeper,
    prober: Prober,
    keep_from: list[tuple[Path, dict[str, Any]]],
    options: BuildOptions,
    scratch: Path,
) -> Verified:
    """Rounds on a slim root made from ``planned``; the keeper grows with what they add."""
    baseline = traced.baseline
    if baseline is None:
        baseline = prober.baseline_for_keep_from([r for _, r in keep_from], unpacked.root)
    prober.progress.stage("verify", "slim root filesystem")
    slim = SlimRoot(scratch / "slim", unpacked.root, unpacked.tree)
    try:
        slim.add(planned.plan.paths)
        verification = verify(
            baseline,
            prober.plan,
            slim,
            unpacked.tree,
            keeper.__contains__,
            keeper.extend,
            prober.run_probes,
            options.verify_rounds,
            prober.progress,
        )
    finally:
        slim.remove_later()  # waited for at the end of ``write``
    return _verified(keeper.plan(), baseline, verification, prober)


def _verified(
    plan: KeepPlan, baseline: Outcome | None, verification: Verification, prober: Prober
) -> Verified:
    return Verified(
        plan,
        baseline,
        verification,
        frozenset(prober.syscalls),
        prober.arch,
        tuple(prober.argv),
        prober.take_notes(),
    )


def _write(
    image: Image,
    options: BuildOptions,
    unpacked: Unpacked,
    verified: Verified,
    progress: Progress,
    scratch: Path,
    dest: Path,
) -> Written:
    out = options.output
    notes = _Notes(progress)
    chosen = out.layers
    if chosen.note:
        notes(chosen.note)
    compression = chosen.compression or "gzip"
    accounting = _account(unpacked, verified.plan, out.package_db)
    if options.run.rootfs is None:  # ours, and read for the last time: remove it meanwhile
        scratch_paths.remove_in_background(unpacked.root)
    plan = pkgdb.with_metadata(verified.plan, unpacked.tree, accounting)
    entries = plan.entries(unpacked.tree)
    progress.stage("write", f"one layer, {plural(len(entries), 'entry', 'entries')}, {compression}")
    with ExitStack() as second_pass:
        if unpacked.spool is not None:
            open_data = spooled_data(unpacked.spool)
        else:
            spool = second_pass.enter_context(Spool(scratch))
            wanted = {(e.data.layer, e.data.ordinal) for e in entries if e.data is not None}
            open_data = spooled_data(spool, spool_contents(image, wanted, spool, progress))
        layer = write_tree_layer(
            counted(entries, progress, "entries", len(entries)),
            open_data,
            compression,
            out.level,
            scratch,
            accounting.replaced,
        )
    if unpacked.spool is not None:
        unpacked.spool.close()  # its space is free while the image is written
    total = sum(1 for e in unpacked.tree.walk() if e.path != "/")
    kept = sum(1 for e in entries if e.path != "/")
    created_by = f"ocislim build (kept {kept} of {total} paths)"
    config_raw = flattened_config(image, layer.diff_id, created_by, options.overrides)
    tag = out.tag or default_tag(image)
    progress.stage("write", f"{out.fmt} {dest}")
    written = write_image(dest, out.fmt, config_raw, [layer], tag, [image.source])
    if out.sboms:
        progress.stage("write", f"SBOM of {dest.name}")
        with open_image(written.path, ref=written.ref) as slim_image:
            inventory = sbom.inventory(slim_image, accounting, progress)
        sbom.write_sboms(inventory, [Path(os.path.abspath(p)) for p in out.sboms])
    seccomp_path = _abspath(out.seccomp_profile)
    if seccomp_path is not None:
        data = seccomp_profile(verified.syscalls, verified.arch)
        report_mod.write_json_atomic(seccomp_path, data)
    scratch_paths.wait_removals(scratch)
    return Written(written, layer.size, seccomp_path, tuple(notes.items), plan, accounting)


def _account(unpacked: Unpacked, plan: KeepPlan, mode: str) -> pkgdb.Accounting:
    """The packages the kept paths leave, read from the source's databases: as spooled
    from the layers, else on disk."""
    if unpacked.spool is not None:
        read = pkgdb.spool_reader(unpacked.tree, unpacked.spool)
    else:
        read = pkgdb.disk_reader(unpacked.root, unpacked.tree)
    return pkgdb.account(unpacked.tree, plan.paths, read, mode)


def _report(
    image: Image,
    options: BuildOptions,
    unpacked: Unpacked,
    probe_plan: ProbePlan,
    traced: Traced,
    planned: Planned,
    verified: Verified,
    written: Written | None,
    timer: StageTimer,
) -> BuildResult:
    """Write the report from every stage's result; raise if verification failed."""
    out = options.output
    report_path = Path(os.path.abspath(out.report_path))
    if written is not None:
        plan, accounting = written.plan, written.accounting
    else:
        plan, accounting = verified.plan, _account(unpacked, verified.plan, out.package_db)
    output_stats = content_stats(unpacked.tree, plan.paths)
    for path, new in accounting.replaced.items():  # trimmed database files changed size
        output_stats["content_size"] += len(new) - unpacked.tree.get(path).size  # type: ignore[union-attr]
    removed = pkgdb.removed(unpacked.tree, plan.paths, accounting.owners)
    notes = [*traced.notes, *planned.notes, *verified.notes, *(written.notes if written else ())]
    report = report_mod.build_report(
        image=image,
        source_stats=content_stats(unpacked.tree),
        output_stats=output_stats,
        written=written.image if written else None,
        layer_size=written.layer_size if written else None,
        tag=out.tag or default_tag(image),
        plan=plan,
        probe_plan=probe_plan,
        command=list(verified.command),
        baseline=verified.baseline,
        verification=verified.verification,
        timings={**timer.times, "total": timer.total()},
        rules=rule_states(options),
        seccomp_path=written.seccomp_path if written else None,
        keep_from=options.keep_from_paths,
        notes=notes,
        packages=pkgdb.report_json(accounting),
        removed=removed,
        removed_dirs=pkgdb.removed_dirs(removed),
        compression=(out.layers.compression or "gzip") if written else None,
    )
    report_mod.write_json_atomic(report_path, report)
    if out.html is not None:
        write_html(report, Path(os.path.abspath(out.html)))
    if out.removed_list is not None:
        lines = "".join(f"{pkgdb.printable(str(item['path']))}\n" for item in removed)
        write_text_atomic(Path(os.path.abspath(out.removed_list)), lines)
    if written is None:
        raise VerificationError(f"{verified.verification.failure()} (report: {report_path})")
    return BuildResult(written.image, report, report_path, written.seccomp_path)


def _abspath(path: Path | None) -> Path | None:
    return Path(os.path.abspath(path)) if path is not None else None
