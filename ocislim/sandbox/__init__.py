"""Run an image's program in a rootless sandbox and record the files it touches.

The package's face: other packages import only from here.

- Running: :func:`run` (untraced), :func:`trace` (traced, giving a
  :class:`TraceResult`: the facts and their one analysis), :class:`RunSpec`,
  :class:`Probe`, :class:`RunResult`, and :func:`run_spec` to build a spec from an
  image config, :func:`parse_size` for ``--tmpfs-size`` (default
  :data:`DEFAULT_TMPFS_SIZE`).
- The analysis: :class:`FileReport` (paths by class, merged and per program as
  :class:`ProgramAccess`), :class:`FileAccess`, :class:`Process`, and
  :func:`resolve` over a :class:`TreeView` (an image tree, as the kernel would
  see it with the tree as root).
- Probe control from the host: :class:`RunController` carrying out a
  :class:`ControlPlan` (:class:`HttpRequest` in, :class:`HttpResult` out, then an
  :data:`AfterHttp` step), the :func:`gate_probe`, :data:`HTTP_WAIT`.
- Paths the sandbox provides, never image content: :data:`PROBE_DIR` (probe files)
  and :data:`RUNTIME_ETC_FILES` (/etc files bound in as a container runtime does).
- :func:`native_arch`: the architecture traced (and the syscall table's name).
- ``ocislim exec`` and ``ps``: a run whose spec has a :class:`SandboxLabel` (id from
  :func:`new_sandbox_id`) accepts commands; :func:`running_sandboxes` lists them,
  :func:`find_sandbox` picks one, :func:`exec_command` runs a command in it; the
  commands run are the result's :class:`ExecRecord` entries.
"""

from ocislim.sandbox.analysis import (
    FileAccess,
    FileReport,
    Process,
    ProgramAccess,
    TreeView,
    resolve,
)
from ocislim.sandbox.config import parse_size, run_spec
from ocislim.sandbox.control import (
    HTTP_WAIT,
    AfterHttp,
    ControlPlan,
    HttpRequest,
    HttpResult,
    RunController,
    UserWait,
    gate_probe,
)
from ocislim.sandbox.execchannel import exec_command
from ocislim.sandbox.namespaces import DEFAULT_TMPFS_SIZE, PROBE_DIR, RUNTIME_ETC_FILES
from ocislim.sandbox.registry import Entry as SandboxEntry
from ocislim.sandbox.registry import entries as running_sandboxes
from ocislim.sandbox.registry import find as find_sandbox
from ocislim.sandbox.registry import new_sandbox_id
from ocislim.sandbox.runner import run
from ocislim.sandbox.spec import ExecRecord, Probe, RunResult, RunSpec, SandboxLabel
from ocislim.sandbox.syscalls import native_arch
from ocislim.sandbox.tracing import TraceResult, trace

__all__ = [
    "DEFAULT_TMPFS_SIZE",
    "HTTP_WAIT",
    "PROBE_DIR",
    "RUNTIME_ETC_FILES",
    "AfterHttp",
    "ControlPlan",
    "ExecRecord",
    "FileAccess",
    "FileReport",
    "HttpRequest",
    "HttpResult",
    "Probe",
    "Process",
    "ProgramAccess",
    "RunController",
    "RunResult",
    "RunSpec",
    "SandboxEntry",
    "SandboxLabel",
    "TraceResult",
    "TreeView",
    "UserWait",
    "exec_command",
    "find_sandbox",
    "gate_probe",
    "native_arch",
    "new_sandbox_id",
    "parse_size",
    "resolve",
    "run",
    "run_spec",
    "running_sandboxes",
    "trace",
]
