"""Traced runs: the run's facts (events, runtime mounts) and their one analysis.

:func:`trace` runs a spec under the tracer, then analyses the events once
(:func:`~ocislim.sandbox.analysis.analyse`, every access labelled with its
program) against the image tree and the runtime mounts; ``ocislim trace``, the
build's trace stage and its verification rounds all read that one result.  The
processes of each ``ocislim exec`` command (the command and what it started) are
analysed apart, so their files are the exec's, not the program's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocislim.errors import SandboxError
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.sandbox.analysis import DirTree, FileReport, Process, analyse, processes
from ocislim.sandbox.namespaces import PROBE_DIR
from ocislim.sandbox.runner import run_traced
from ocislim.sandbox.spec import ExecRecord, RunResult, RunSpec
from ocislim.sandbox.tracer import (
    RECORD_LIMIT,
    Event,
    ExecEvent,
    ExitEvent,
    SpawnEvent,
    SyscallEvent,
    Tracer,
    TracerStats,
)


@dataclass(frozen=True)
class TraceResult:
    """A traced run: the run outcome and raw events (facts), and their one analysis.

    ``report``: every access classified and labelled with its program (merged lists
    plus ``report.by_program``); ``processes``: the program's processes;
    ``syscalls``: counts by name of every system call, when requested;
    ``cost``: what the tracer spent (stops, traced calls, its CPU time), not a fact
    of the run and not in :meth:`to_json`.
    """

    run: RunResult
    events: tuple[Event, ...]
    report: FileReport
    processes: tuple[Process, ...]
    syscalls: dict[str, int] | None
    exec_reports: tuple[tuple[ExecRecord, FileReport], ...] = ()
    cost: TracerStats | None = None

    @property
    def exit_code(self) -> int:
        return self.run.exit_code

    def to_json(self) -> dict[str, object]:
        """The ``ocislim trace --json`` object."""
        out: dict[str, object] = {
            "exit_code": self.run.exit_code,
            "timed_out": self.run.timed_out,
            "probe_exit_codes": list(self.run.probe_exit_codes),
            "files": [f.to_json() for f in self.report.files],
            "runtime_files": [f.to_json() for f in self.report.runtime],
            "created": [f.to_json() for f in self.report.created],
            "misses": [f.to_json() for f in self.report.misses],
            "processes": [p.to_json() for p in self.processes],
        }
        if self.exec_reports:
            out["exec"] = [
                {
                    "command": list(record.argv),
                    "tty": record.tty,
                    "exit_code": record.exit_code,
                    "files": [f.to_json() for f in report.files],
                }
                for record, report in self.exec_reports
            ]
        if self.syscalls is not None:
            out["syscalls"] = dict(sorted(self.syscalls.items()))
        return out


def trace(
    root: Path,
    spec: RunSpec,
    progress: Progress = NULL_PROGRESS,
    *,
    count_syscalls: bool = False,
    record_limit: int = RECORD_LIMIT,
) -> TraceResult:
    """Run ``spec`` in a sandbox on ``root`` under the tracer and analyse what it touched.

    Same guarantees as :func:`~ocislim.sandbox.runner.run`; ``root`` is only read (by
    the overlay and by the analysis).  ``count_syscalls`` traces every system call to
    count it (slower).  Raises :class:`SandboxError` when the program made more calls
    than the tracer keeps records of (``record_limit`` bytes, an estimate): an analysis
    of part of a run would drop files the rest needs.
    """
    tracer = Tracer(count_all=count_syscalls, record_limit=record_limit)
    progress.stage("trace", " ".join(spec.argv))
    result = run_traced(root, spec, tracer, progress)
    if tracer.dropped:
        raise SandboxError(
            f"the traced run made more system calls than ocislim keeps records of "
            f"({tracer.stats.calls:,} traced calls, over {tracer.record_limit >> 20} MiB): "
            "trace a shorter run (--timeout, fewer probe requests)"
        )
    counts = tracer.finish() if count_syscalls else None
    events = tuple(tracer.events)
    runtime = (*result.runtime_paths, PROBE_DIR)
    tree = DirTree(Path(root))
    program_events, by_exec = split_execs(events, [r.pid for r in result.exec_commands])
    report = analyse(program_events, tree, runtime)
    exec_reports = tuple(
        (record, analyse(by_exec[record.pid], tree, runtime)) for record in result.exec_commands
    )
    found = processes(program_events, tracer.init_pid)
    return TraceResult(result, events, report, found, counts, exec_reports, tracer.stats)


def split_execs(
    events: tuple[Event, ...], exec_pids: list[int]
) -> tuple[list[Event], dict[int, list[Event]]]:
    """The events of the program, and those of each exec command (by its host pid)
    and the processes it started.  Pure."""
    owner: dict[int, int] = {}  # process -> the exec command it descends from
    by_exec: dict[int, list[Event]] = {pid: [] for pid in exec_pids}
    program: list[Event] = []
    for event in events:
        pid: int | None
        if isinstance(event, SpawnEvent):
            pid = event.parent_pid
            if event.child_pid in by_exec and event.child_pid not in owner:
                owner[event.child_pid] = event.child_pid
            elif pid in owner and not event.thread:
                owner[event.child_pid] = owner[pid]
        elif isinstance(event, (SyscallEvent, ExecEvent, ExitEvent)):
            pid = event.pid
        else:
            pid = None
        target = owner.get(pid) if pid is not None else None
        if isinstance(event, SpawnEvent) and event.child_pid in owner:
            target = owner[event.child_pid]
        if target is None:
            program.append(event)
        else:
            by_exec[target].append(event)
        if isinstance(event, ExitEvent) and event.tid == event.pid and event.pid in owner:
            del owner[event.pid]  # its pid may be reused by a process that is not the exec's
    return program, by_exec
