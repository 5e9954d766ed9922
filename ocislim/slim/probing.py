"""Where ``build`` meets the sandbox: the probe plan run traced or plainly on a root.

A :class:`Prober` runs the build's probe plan (:mod:`ocislim.slim.probes`) on a
root filesystem in the sandbox, for the ``trace`` stage (on the source's root),
the ``verify`` stage (on slim roots) and the ``--keep-from`` baseline.  It is the
one place the pipeline calls the sandbox.  Across runs it gathers what the
report needs from all of them: the notes, the system calls seen (when a seccomp
profile is wanted; names on :attr:`Prober.arch`) and the program's argv; the
stages copy them into their frozen results.  Use it as a context manager (it may
hold ``/dev/null`` open).

The trace stage's sandbox accepts ``ocislim exec`` (its id is announced); what an
exec command touched becomes seeds of its own (reason ``exec``, with the command),
and the commands that ran without a terminal are replayed by the verification
runs (:meth:`ProbePlan.for_verification`), which never wait for the user.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ocislim.image.models import ImageConfig
from ocislim.progress import Nested, Progress
from ocislim.sandbox import (
    ExecRecord,
    FileAccess,
    FileReport,
    Probe,
    RunController,
    RunResult,
    RunSpec,
    SandboxLabel,
    TraceResult,
    native_arch,
    new_sandbox_id,
    run,
    run_spec,
    trace,
)
from ocislim.slim.options import RunOptions
from ocislim.slim.plan import Reason, Seed
from ocislim.slim.probes import Outcome, ProbePlan
from ocislim.slim.traced import trace_seeds


class Prober:
    """Runs ``plan`` for the program ``run_opts`` describe, in ``config``'s image."""

    def __init__(
        self,
        config: ImageConfig,
        run_opts: RunOptions,
        plan: ProbePlan,
        progress: Progress,
        count_syscalls: bool,
        image_name: str = "",
    ) -> None:
        self.config = config
        self.run_opts = run_opts
        self.source_plan = plan  # what the trace stage runs
        self.plan = plan.for_verification(())  # what later runs run (never waiting)
        self.image_name = image_name
        self.progress = progress
        self.count_syscalls = count_syscalls
        self.notes: list[str] = []
        self.syscalls: set[str] = set()
        self.arch = native_arch()  # the runs' architecture: the names in ``syscalls`` are its
        self.argv: list[str] = []  # of the last run, for the report
        # The argv of every process the source's traced run started (facts, in order).
        self.commands: tuple[tuple[str, ...], ...] = ()
        self._devnull: int | None = None
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._out = self._err = 2 if run_opts.show_output else self._devnull

    def __enter__(self) -> Prober:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None

    def note(self, message: str) -> None:
        self.notes.append(message)
        self.progress.note(message)

    def take_notes(self) -> tuple[str, ...]:
        """The notes since the last call (each stage keeps its own)."""
        taken = tuple(self.notes)
        self.notes.clear()
        return taken

    # --- the calls into the sandbox -----------------------------------------------------

    def spec(
        self,
        root: Path,
        mounts: Sequence[str],
        probes: Sequence[Any],
        plan: ProbePlan | None = None,
        label: SandboxLabel | None = None,
    ) -> RunSpec:
        run_opts = self.run_opts
        plan = plan or self.plan
        spec = run_spec(
            self.config,
            root,
            command=run_opts.command,
            entrypoint=run_opts.entrypoint,
            cmd=run_opts.cmd,
            env=run_opts.env,
            workdir=run_opts.workdir,
            user=run_opts.user,
            mounts=[*run_opts.mounts, *mounts],
            network=run_opts.network,
            timeout=plan.timeout,
            probes=probes,
            stdout=self._out,
        )
        self.argv = list(spec.argv)  # for the report
        if run_opts.tmpfs_size is not None:
            spec = dataclasses.replace(spec, tmpfs_size=run_opts.tmpfs_size)
        if plan.waits_for_user() and self._devnull is not None:
            spec = dataclasses.replace(spec, stdin=self._devnull)  # the terminal is ocislim's
        return dataclasses.replace(spec, stderr=self._err, sandbox=label)

    def run_plan(
        self,
        root: Path,
        progress: Progress,
        traced: bool = True,
        plan: ProbePlan | None = None,
        label: SandboxLabel | None = None,
    ) -> tuple[Outcome, Any]:
        plan = plan or self.plan
        announce = ""
        if label is not None and plan.waits_for_user():
            announce = _announce(plan, label.id)
        controller = RunController(plan.control(announce), self.progress.note)
        waiting = _WaitNotice(progress) if plan.waits_for_exit() else None
        try:
            spec = self.spec(root, controller.mounts(), plan.sandbox_probes(), plan, label)
            controller.start()
            count = self.count_syscalls
            result: TraceResult | RunResult
            if waiting is not None:
                waiting.start()
            if traced:
                result = trace(root, spec, progress, count_syscalls=count)
                run_result = result.run
            else:
                result = run_result = run(root, spec, progress)
        finally:
            if waiting is not None:
                waiting.stop()
            controller.finish()
        for note in controller.notes:
            if note.startswith("HTTP probes failed: ocislim httpprobe:") and "/proc/" in note:
                # the program ended before its namespaces could be joined
                note = f"HTTP probes not sent: the program ended (exit code {run_result.exit_code})"
            self.note(note)
        outcome = Outcome(
            run_result.exit_code,
            run_result.timed_out,
            plan.exec_codes(run_result.probe_exit_codes),
            tuple(controller.http_results),
        )
        return outcome, result

    def trace_source(self, root: Path) -> tuple[Outcome, list[Seed]]:
        """The ``trace`` stage's run on the source's ``root``: its outcome (with the exit
        codes of the exec commands verification replays) and seeds."""
        label = SandboxLabel(new_sandbox_id(), self.image_name, "build")
        plan = self.source_plan
        outcome, result = self.run_plan(root, self.progress, plan=plan, label=label)
        if result.syscalls:
            self.syscalls.update(result.syscalls)
        if outcome.exit_code != 0 and plan.continue_after == "app-exit":
            self.note(f"the program exited with code {outcome.exit_code} while traced")
        seeds = trace_seeds(result.report)
        self.commands = tuple(dict.fromkeys(p.argv for p in result.processes if p.argv))
        replays: list[Probe] = []
        codes: list[int] = []
        for record, report in result.exec_reports:
            seeds += exec_seeds(record, report)
            if record.tty or record.exit_code is None:
                self.note(
                    f"exec {shlex.join(record.argv)!r} had a terminal: not replayable, "
                    "verification does not run it"
                )
                continue
            replays.append(Probe(argv=record.argv))
            codes.append(record.exit_code)
        self.plan = plan.for_verification(tuple(replays))
        if replays:
            outcome = dataclasses.replace(outcome, exec_codes=(*outcome.exec_codes, *codes))
        return outcome, seeds

    def baseline_for_keep_from(self, reports: Sequence[dict[str, Any]], root: Path) -> Outcome:
        """The source's outcome with ``--keep-from``: the reports' (when they all probed
        as this build does and saw the same), or a run on ``root``."""
        recorded = [r.get("probes", {}) for r in reports]
        ours = self.source_plan.to_json()
        sources = [p.get("source") for p in recorded if p.get("plan") == ours]
        agreed = all(sources) and all(s == sources[0] for s in sources)
        if recorded and len(sources) == len(recorded) and agreed:
            return Outcome.from_json(sources[0])
        self.note(
            "--keep-from: the report's probes differ; running the source image for a baseline"
        )
        outcome, _ = self.run_plan(root, Nested(self.progress, "verify"), traced=False)
        return outcome

    def run_probes(self, root: Path) -> tuple[Outcome, Sequence[FileAccess]]:
        """One verification round's run on a slim ``root``: outcome and vain lookups."""
        outcome, result = self.run_plan(root, Nested(self.progress, "verify"))
        if result.syscalls:
            self.syscalls.update(result.syscalls)
        return outcome, result.report.misses


class _WaitNotice:
    """Says on stderr (the progress receiver) that the build waits for the program to
    exit by itself, at once and every :data:`WAIT_NOTICE_EVERY` seconds."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._waited = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _loop(self) -> None:
        self._progress.note(WAIT_NOTICE)
        while not self._done.wait(WAIT_NOTICE_EVERY):
            self._waited += WAIT_NOTICE_EVERY
            self._progress.note(f"still waiting for the program to exit ({self._waited:.0f} s)")


WAIT_NOTICE_EVERY = 30.0
WAIT_NOTICE = (
    "waiting for the program to exit by itself (no --exec, HTTP port or --timeout given; "
    "stop it with --timeout SECONDS)"
)


def exec_seeds(record: ExecRecord, report: FileReport) -> list[Seed]:
    """The image files an ``ocislim exec`` command (and what it started) touched, each
    with reason ``exec``: the command as ``detail``, the process and its access."""
    command = shlex.join(record.argv)
    seeds = []
    for program, category, access in report.by_program:
        if category == "files":
            why = Reason("exec", detail=command, process=program, access=access.access)
            seeds.append(Seed(access.path, why, follow=False))
    return seeds


def _announce(plan: ProbePlan, sandbox: str) -> str:
    shell = f"ocislim exec -it {sandbox} -- /bin/sh"
    if plan.continue_after == "enter":
        return (
            f"sandbox {sandbox} is probing; get a shell in it with: {shell}; "
            "press Enter here when done"
        )
    return (
        f"sandbox {sandbox} is probing; get a shell in it with: {shell}; when done: "
        f"kill -USR1 {os.getpid()}"
    )
