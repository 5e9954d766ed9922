"""What the sandbox runs (:class:`RunSpec`, :class:`Probe`) and what a run gave
(:class:`RunResult`): plain data, shared by the runner, the config rules and callers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ocislim.sandbox.namespaces import DEFAULT_TMPFS_SIZE, BindMount


@dataclass(frozen=True)
class Probe:
    """A command run inside the running sandbox, like ``docker exec``.

    ``command``: a shell snippet run with ``/bin/sh -c``.  ``script``: a host file
    bound read-only into the sandbox under /.ocislim and run (directly when it
    starts with ``#!``, else with ``/bin/sh``); it is not part of the image.
    """

    command: str | None = None
    script: Path | None = None
    argv: tuple[str, ...] | None = None  # run as is (a recorded ``ocislim exec`` replayed)


@dataclass(frozen=True)
class SandboxLabel:
    """What ``ocislim ps`` shows of a running sandbox that accepts ``ocislim exec``:
    its ``id``, the ``image`` it runs and the ``mode`` (build, trace or run)."""

    id: str
    image: str
    mode: str


@dataclass(frozen=True)
class ExecRecord:
    """A command ``ocislim exec`` ran in the sandbox: ``pid`` is its host pid (the
    tracer's), ``tty`` whether it had a terminal, ``exit_code`` as a shell reports it."""

    pid: int
    argv: tuple[str, ...]
    tty: bool
    exit_code: int | None


@dataclass(frozen=True)
class RunSpec:
    """How to run the program; see :func:`ocislim.sandbox.config.run_spec` to build one
    from an image config.  ``uid``/``gid``/``groups`` are ids inside the sandbox.
    ``stdin``/``stdout``/``stderr``: host descriptors given to the program (and, for
    the last two, the probes) as its 0, 1 and 2; nothing else of the host crosses.
    ``tmpfs_size``: bytes the program may write into its in-memory overlay.
    ``sandbox``: when set, the run accepts ``ocislim exec`` (see
    :mod:`ocislim.sandbox.execchannel`) and is listed by ``ocislim ps``."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    mounts: tuple[BindMount, ...] = ()
    network: Literal["none", "host"] = "none"
    timeout: float | None = None
    grace: float = 5.0
    hostname: str = "ocislim"
    probes: tuple[Probe, ...] = ()
    stdin: int = 0
    stdout: int = 1
    stderr: int = 2
    tmpfs_size: int = DEFAULT_TMPFS_SIZE
    sandbox: SandboxLabel | None = None  # set: registered for ``ocislim exec`` and ``ps``


@dataclass(frozen=True)
class RunResult:
    """Outcome of a run. ``exit_code``: the entrypoint's (128+N when killed by signal N,
    127 when its executable was not found, 126 when it could not be executed)."""

    exit_code: int
    timed_out: bool
    probe_exit_codes: tuple[int, ...]
    runtime_paths: tuple[str, ...]
    overlay: bool
    notes: tuple[str, ...] = ()
    exec_commands: tuple[ExecRecord, ...] = ()
