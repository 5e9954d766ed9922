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
import signal
import socket
import stat
import tempfile
from pathlib import Path

from ocislim import scratch as scratch_paths
from ocislim.errors import InputNotFoundError, SandboxError
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.sandbox.execchannel import ExecServer
from ocislim.sandbox.idmaps import IdMapPlan, detach_trees, plan_id_maps, write_id_maps
from ocislim.sandbox.messages import creator_error, run_result
from ocislim.sandbox.namespaces import PROBE_DIR, BindMount, RootPlan, runtime_etc_files
from ocislim.sandbox.registry import registered
from ocislim.sandbox.seccomp import trace_filter
from ocislim.sandbox.spec import RunResult, RunSpec
from ocislim.sandbox.supervisor import CreatorPlan, creator_main
from ocislim.sandbox.syscalls import native_arch
from ocislim.sandbox.tracer import Tracer
from ocislim.sandbox.wire import Message, receive, send


def run(root: Path, spec: RunSpec, progress: Progress = NULL_PROGRESS) -> RunResult:
    """Run ``spec`` in a sandbox whose root is the tree at ``root``, untraced."""
    return _launch(root, spec, progress, None)


def run_traced(
    root: Path, spec: RunSpec, tracer: Tracer, progress: Progress = NULL_PROGRESS
) -> RunResult:
    """:func:`run`, with every process of the program followed by ``tracer`` (which
    holds the events afterwards); see :func:`ocislim.sandbox.tracing.trace`."""
    return _launch(root, spec, progress, tracer)


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
    with contextlib.ExitStack() as stack:
        server = None
        exec_sock: socket.socket | None = None
        if spec.sandbox is not None:
            listener = stack.enter_context(registered(spec.sandbox, spec.argv))
            to_creator, exec_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            stack.callback(exec_sock.close)
            stack.callback(to_creator.close)
            server = ExecServer(listener, to_creator, spec, root)
            stack.callback(server.stop)  # before the sockets close
            name = spec.sandbox.id
            progress.note(f"sandbox {name}; run a command in it: ocislim exec -it {name} -- sh")
        return _launch_in(root, spec, progress, tracer, id_plan, server, exec_sock)
    raise AssertionError("unreachable")


def _launch_in(
    root: Path,
    spec: RunSpec,
    progress: Progress,
    tracer: Tracer | None,
    id_plan: IdMapPlan,
    server: ExecServer | None,
    exec_sock: socket.socket | None,
) -> RunResult:
    scratch = scratch_paths.make_dir(_scratch_parent(), "ocislim-run-")
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
            if probe.argv is not None:
                probe_argvs.append(tuple(probe.argv))
            elif probe.script is not None:
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
            creator_main(creator_plan, creator_sock, exec_sock)
        creator_sock.close()
        if exec_sock is not None:
            exec_sock.close()
        message, _ = receive(host_sock)
        if message is None or message.get("error"):
            _reap(creator)
            creator = 0
            raise creator_error(message)
        notes = _start(host_sock, creator, message, plan, id_plan, progress)
        message, _ = receive(host_sock)
        if message is None or "init" not in message:
            raise creator_error(message)
        if tracer is not None:
            try:
                tracer.seize(creator)
            except OSError as exc:
                raise SandboxError(f"cannot trace the sandbox (ptrace: {exc.strerror})") from exc
        send(host_sock, {"go": True})
        if server is not None:
            server.start()
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
        return run_result(messages, status, progress, plan.tmpfs_size, notes)
    finally:
        if creator:
            _kill(creator)
            _reap(creator)
        host_sock.close()
        creator_sock.close()
        scratch_paths.remove(scratch)


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
