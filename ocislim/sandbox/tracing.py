"""Traced runs: the run's facts (events, runtime mounts) and their one analysis.

:func:`trace` runs a spec under the tracer, then analyses the events once
(:func:`~ocislim.sandbox.analysis.analyse`, every access labelled with its
program) against the image tree and the runtime mounts; ``ocislim trace``, the
build's trace stage and its verification rounds all read that one result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.sandbox.analysis import DirTree, FileReport, Process, analyse, processes
from ocislim.sandbox.namespaces import PROBE_DIR
from ocislim.sandbox.runner import run_traced
from ocislim.sandbox.spec import RunResult, RunSpec
from ocislim.sandbox.tracer import Event, Tracer


@dataclass(frozen=True)
class TraceResult:
    """A traced run: the run outcome and raw events (facts), and their one analysis.

    ``report``: every access classified and labelled with its program (merged lists
    plus ``report.by_program``); ``processes``: the program's processes;
    ``syscalls``: counts by name of every system call, when requested.
    """

    run: RunResult
    events: tuple[Event, ...]
    report: FileReport
    processes: tuple[Process, ...]
    syscalls: dict[str, int] | None

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
        if self.syscalls is not None:
            out["syscalls"] = dict(sorted(self.syscalls.items()))
        return out


def trace(
    root: Path,
    spec: RunSpec,
    progress: Progress = NULL_PROGRESS,
    *,
    count_syscalls: bool = False,
) -> TraceResult:
    """Run ``spec`` in a sandbox on ``root`` under the tracer and analyse what it touched.

    Same guarantees as :func:`~ocislim.sandbox.runner.run`; ``root`` is only read (by
    the overlay and by the analysis).  ``count_syscalls`` traces every system call to
    count it (slower).
    """
    tracer = Tracer(count_all=count_syscalls)
    progress.stage("trace", " ".join(spec.argv))
    result = run_traced(root, spec, tracer, progress)
    counts = tracer.finish() if count_syscalls else None
    events = tuple(tracer.events)
    runtime = (*result.runtime_paths, PROBE_DIR)
    report = analyse(events, DirTree(Path(root)), runtime)
    return TraceResult(result, events, report, processes(events, tracer.init_pid), counts)
