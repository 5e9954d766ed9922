"""Run an image's program in a rootless sandbox and record the files it touches.

Public API: :func:`run`, :func:`trace`, :class:`RunSpec`, :class:`Probe`,
:class:`RunResult`, :class:`TraceResult`, :func:`run_spec` to build a spec
from an image config, and :func:`parse_size` for ``--tmpfs-size``.
"""

from ocislim.sandbox.config import DEFAULT_TMPFS_SIZE, parse_size, run_spec
from ocislim.sandbox.runner import Probe, RunResult, RunSpec, TraceResult, run, trace

__all__ = [
    "DEFAULT_TMPFS_SIZE",
    "Probe",
    "RunResult",
    "RunSpec",
    "TraceResult",
    "parse_size",
    "run",
    "run_spec",
    "trace",
]
