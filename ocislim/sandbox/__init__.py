"""Run an image's program in a rootless sandbox and record the files it touches.

Public API: :func:`run`, :func:`trace`, :class:`RunSpec`, :class:`Probe`,
:class:`RunResult`, :class:`TraceResult`, and :func:`run_spec` to build a spec
from an image config.
"""

from ocislim.sandbox.config import run_spec
from ocislim.sandbox.runner import Probe, RunResult, RunSpec, TraceResult, run, trace

__all__ = ["Probe", "RunResult", "RunSpec", "TraceResult", "run", "run_spec", "trace"]
