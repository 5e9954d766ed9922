"""Run an image's program (and probes) in the sandbox, traced or not.

The host side of a run: prepare the scratch directory (runtime /etc files, probe
files), fork the creator (see :mod:`ocislim.sandbox.supervisor` for the process
layout and what the program can and cannot reach), write its id maps, hand it
root's idmapped image tree, seize it when tracing, and turn its reports into a
:class:`RunResult`.  Everything the result says comes from the creator, a process
the program cannot see: exit codes and signals are wait statuses.  When
:func:`run` returns, no process of the sandbox is left and its scratch directory
is removed; the image tree is never written (an overlay with a size-limited tmpfs
upper layer takes the writes) unless the kernel refuses the overlay, which is
reported as a note.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ocislim.errors import InputNotFoundError, SandboxError, UserNamespaceUnavailableError
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.sandbox.analysis import DirTree, FileReport, Process, analyse, processes
from ocislim.sandbox.namespaces import (
    DEFAULT_TMPFS_SIZE,
    PROBE_DIR,
    BindMount,
    IdMapPlan,
    RootPlan,
    detach_trees,
    plan_id_maps,
    runtime_etc_files,
    userns_unavailable_message,
    write_id_maps,
)
from ocislim.sandbox.seccomp import trace_filter
from ocislim.sandbox.supervisor import CreatorPlan, Message, creator_main, receive, send
from ocislim.sandbox.syscalls import native_arch
from ocislim.sandbox.tracer import Event, Tracer


@dataclass(frozen=True)
class Probe:
    """A command run inside the running sandbox, like ``docker exec``.

    ``command``: a shell snippet run with ``/bin/sh -c``.  ``script``: a host file
    bound read-only into the sandbox under /.ocislim and run (directly when it
    starts with ``#!``, else with ``/bin/sh``); it is not part of the image.
    """

    command: str | None = None
    script: Path | None = None


@dataclass(frozen=True)
class RunSpec:
    """How to run the program; see :func:`ocislim.sandbox.config.run_spec` to build one
    from an image config.  ``uid``/``gid``/``groups`` are ids inside the sandbox.
    ``stdin``/``stdout``/``stderr``: host descriptors given to the program (and, for
    the last two, the probes) as its 0, 1 and 2; nothing else of the host crosses.
    ``tmpfs_size``: bytes the program may write into its in-memory overlay."""

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


def run(root: Path, spec: RunSpec, progress: Progress = NULL_PROGRESS) -> RunResult:
    """Run ``spec`` in a sandbox whose root is the tree at ``root``, untraced."""
    return _launch(root, spec, progress, None)


def _searchable(path: str) -> bool:
    """Whether any user can reach entries of ``path`` (every directory on the way o+x)."""
    current = os.path.realpath(path)
    while True:
        try:
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        if current == "/":
            return True
        current = os.path.dirname(current)


def _scratch_parent() -> str:
    """Where the scratch directory goes: the sandbox's root (an unprivileged id when
    ocislim runs as root) must reach it."""
    default = tempfile.gettempdir()
    if os.geteuid() != 0 or _searchable(default):
        return default
    return next((d for d in ("/tmp", "/var/tmp", "/dev/shm") if _searchable(d)), default)


def _launch(
    root: Path,
    spec: RunSpec,
    progress: Progress,
    tracer: Tracer | None,
) -> RunResult:
    """Shared by run and trace. ``tracer``: a :class:`~ocislim.sandbox.tracer.Tracer` or None."""
    root = Path(root)
    if not root.is_dir():
        raise InputNotFoundError(f"rootfs {root} is not a directory")
    for mount in spec.mounts:
        if not os.path.exists(mount.source):
            raise InputNotFoundError(f"mount source {mount.source} does not exist")
    if not spec.argv:
        raise SandboxError("no command to run: the image has no entrypoint or cmd")
    if spec.tmpfs_size <= 0:
        raise SandboxError("the in-memory overlay size must be positive")
    id_plan = plan_id_maps(spec.uid, spec.gid)
    if not id_plan.mappable_uid(spec.uid) or not id_plan.mappable_gid(spec.gid):
        raise SandboxError(
            f"user {spec.uid}:{spec.gid} cannot be mapped into the sandbox "
            "(configure subordinate ids in /etc/subuid and /etc/subgid)"
        )
    scratch = Path(tempfile.mkdtemp(prefix="ocislim-run-", dir=_scratch_parent()))
    host_sock, creator_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    creator = 0
    try:
        os.chmod(scratch, 0o755)
        (scratch / "mnt").mkdir()
        files = scratch / "files"
        files.mkdir()
        binds = list(spec.mounts)
        for path, content in runtime_etc_files(spec.hostname, spec.network == "host").items():
            host_file = files / os.path.basename(path)
            host_file.write_text(content)
            binds.append(BindMount(str(host_file), path))
        probe_argvs: list[tuple[str, ...]] = []
        for index, probe in enumerate(spec.probes):
            if probe.script is not None:
                try:
                    body = Path(probe.script).read_bytes()
                except OSError as exc:
                    raise InputNotFoundError(
                        f"cannot read probe file {probe.script}: {exc.strerror}"
                    ) from exc
                host_file = files / f"probe-{index}"
                host_file.write_bytes(body)
                host_file.chmod(0o755)
                inside = f"{PROBE_DIR}/probe-{index}"
                binds.append(BindMount(str(host_file), inside, read_only=True))
                probe_argvs.append((inside,) if body.startswith(b"#!") else ("/bin/sh", inside))
            else:
                probe_argvs.append(("/bin/sh", "-c", probe.command or "true"))
        plan = RootPlan(
            image_root=str(root.resolve()),
            scratch=str(scratch / "mnt"),
            binds=tuple(
                BindMount(os.path.realpath(b.source), b.target, b.read_only) for b in binds
            ),
            private_network=spec.network != "host",
            hostname=spec.hostname,
            workdir=spec.workdir,
            tmpfs_size=spec.tmpfs_size,
        )
        filter_program = trace_filter(
            native_arch(), trace_all=tracer is not None and tracer.count_all
        )
        creator_plan = CreatorPlan(
            os.getpid(),
            plan,
            spec,
            tuple(probe_argvs),
            id_plan,
            filter_program if tracer is not None else None,
        )
        creator = os.fork()
        if creator == 0:
            host_sock.close()
            creator_main(creator_plan, creator_sock)
        creator_sock.close()
        message, _ = receive(host_sock)
        if message is None or message.get("error"):
            _reap(creator)
            creator = 0
            raise _creator_error(message)
        notes = _start(host_sock, creator, message, plan, id_plan, progress)
        message, _ = receive(host_sock)
        if message is None or "init" not in message:
            raise _creator_error(message)
        if tracer is not None:
            try:
                tracer.seize(creator)
            except OSError as exc:
                raise SandboxError(f"cannot trace the sandbox (ptrace: {exc.strerror})") from exc
        send(host_sock, {"go": True})
        try:
            if tracer is not None:
                tracer.run()
                status = tracer.child_status.get(creator, 0)
            else:
                _, status = _waitpid_retry(creator)
        except BaseException:
            _kill(creator)  # the init dies with it (parent-death signal), and the namespace
            if tracer is not None:
                tracer.run()
            raise
        creator = 0
        messages = _drain(host_sock)
        return _result(messages, status, progress, plan.tmpfs_size, notes)
    finally:
        if creator:
            _kill(creator)
            _reap(creator)
        host_sock.close()
        creator_sock.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _start(
    sock: socket.socket,
    creator: int,
    message: Message,
    plan: RootPlan,
    id_plan: IdMapPlan,
    progress: Progress,
) -> list[str]:
    """Write the creator's id maps, hand it root's detached trees, and let it go."""
    notes: list[str] = []
    sources: list[str] = []
    fds: list[int] = []
    try:
        if message.get("userns"):
            write_id_maps(creator, id_plan)
            if id_plan.enter_as_root:
                sources, fds, note = detach_trees(
                    creator, plan.image_root, [b.source for b in plan.binds]
                )
                if note:
                    progress.note(note)
                    notes.append(note)
        elif os.geteuid() == 0:
            progress.note("user namespaces unavailable: running with root's namespaces only")
        send(sock, {"go": True, "sources": sources}, fds)
    finally:
        for fd in fds:
            os.close(fd)
    return notes


def _drain(sock: socket.socket) -> list[Message]:
    messages: list[Message] = []
    while True:
        message, _ = receive(sock)
        if message is None:
            return messages
        messages.append(message)


def _creator_error(message: Message | None) -> SandboxError:
    if message is None:
        return SandboxError("the sandbox could not be created")
    if message.get("error") == "userns":
        err = OSError(int(message.get("errno", 1)), os.strerror(int(message.get("errno", 1))))
        return UserNamespaceUnavailableError(userns_unavailable_message(err))
    return SandboxError(str(message.get("message", "the sandbox could not be created")))


def _result(
    messages: list[Message], status: int, progress: Progress, tmpfs_size: int, notes: list[str]
) -> RunResult:
    ready = next((m for m in messages if m.get("event") == "ready"), None)
    errors = [m for m in messages if m.get("event") == "error" or m.get("error")]
    if ready is None:
        detail = errors[0]["message"] if errors else f"init ended with status {status}"
        raise SandboxError(f"sandbox setup failed: {detail}")
    done = next((m for m in messages if m.get("event") == "done"), None)
    reported = len(notes)  # already shown by _start
    notes = list(notes)
    if not ready.get("overlay"):
        notes.append("overlay mount refused: the program could write to the rootfs directory")
    for m in messages:
        if m.get("event") == "exec-error":
            notes.append(str(m["message"]))
    if done is None:
        raise SandboxError(f"sandbox init ended early (status {status})")
    if done.get("timed_out"):
        notes.append("timeout reached: the program was sent SIGTERM")
    if any(m.get("event") == "tmpfs-full" for m in messages):
        notes.append(
            f"the in-memory overlay reached its size limit ({tmpfs_size >> 20} MiB): writes "
            "failed with ENOSPC (raise it with --tmpfs-size)"
        )
    for note in notes[reported:]:
        progress.note(note)
    return RunResult(
        exit_code=int(done["exit_code"]),
        timed_out=bool(done.get("timed_out")),
        probe_exit_codes=tuple(int(c) for c in done.get("probes", [])),
        runtime_paths=tuple(str(p) for p in ready.get("mount_points", [])),
        overlay=bool(ready.get("overlay")),
        notes=tuple(notes),
    )


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        _waitpid_retry(pid)


def _waitpid_retry(pid: int) -> tuple[int, int]:
    while True:
        try:
            return os.waitpid(pid, 0)
        except InterruptedError:
            continue


@dataclass(frozen=True)
class TraceResult:
    """A traced run: the run outcome, the raw events (facts), and their analysis.

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

    Same guarantees as :func:`run`; ``root`` is only read (by the overlay and by the
    analysis).  ``count_syscalls`` traces every system call to count it (slower).
    """
    tracer = Tracer(count_all=count_syscalls)
    progress.stage("trace", " ".join(spec.argv))
    result = _launch(root, spec, progress, tracer)
    counts = tracer.finish() if count_syscalls else None
    events = tuple(tracer.events)
    runtime = (*result.runtime_paths, PROBE_DIR)
    report = analyse(events, DirTree(Path(root)), runtime)
    return TraceResult(result, events, report, processes(events, tracer.init_pid), counts)
