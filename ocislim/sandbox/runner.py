"""Run an image's program (and probes) in the sandbox, traced or not.

Process layout::

    ocislim (host; the tracer when tracing)
      └─ creator: unshares user/mount/pid/net/uts/ipc namespaces, waits for its id maps
           └─ init (pid 1 inside): builds the root, then runs the plan below
                ├─ entrypoint (execs the program; seccomp filter installed when tracing)
                └─ probes, one at a time, while the entrypoint runs

The init's plan: start the entrypoint; run each probe to its end; then send the
entrypoint SIGTERM.  At ``timeout`` SIGTERM goes to the entrypoint and the running
probe.  After ``grace`` seconds, or as soon as the entrypoint has exited, every
remaining process in the pid namespace is killed with SIGKILL.  When :func:`run`
returns, no process of the sandbox is left and its scratch directory is removed;
the image tree is never written (an overlay with a tmpfs upper layer takes the
writes) unless the kernel refuses the overlay, which is reported as a note.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ocislim.errors import InputNotFoundError, SandboxError
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.sandbox import libc

# The pipe helpers keep the private names the launch code below uses.
from ocislim.sandbox.messages import Channel as _Channel
from ocislim.sandbox.messages import creator_error as _creator_error
from ocislim.sandbox.messages import read_all as _read_all
from ocislim.sandbox.messages import recv as _recv
from ocislim.sandbox.messages import run_result as _result
from ocislim.sandbox.messages import send as _send
from ocislim.sandbox.namespaces import (
    PROBE_DIR,
    BindMount,
    IdMapPlan,
    RootPlan,
    build_root,
    plan_id_maps,
    runtime_etc_files,
    write_id_maps,
)
from ocislim.sandbox.seccomp import trace_filter
from ocislim.sandbox.spec import RunResult, RunSpec
from ocislim.sandbox.syscalls import native_arch
from ocislim.sandbox.tracer import Tracer


def run(root: Path, spec: RunSpec, progress: Progress = NULL_PROGRESS) -> RunResult:
    """Run ``spec`` in a sandbox whose root is the tree at ``root``, untraced."""
    return _launch(root, spec, progress, None)


def run_traced(
    root: Path, spec: RunSpec, tracer: Tracer, progress: Progress = NULL_PROGRESS
) -> RunResult:
    """:func:`run`, with every process of the program followed by ``tracer`` (which
    holds the events afterwards); see :func:`ocislim.sandbox.tracing.trace`."""
    return _launch(root, spec, progress, tracer)


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
    id_plan = plan_id_maps(spec.uid, spec.gid)
    if not id_plan.mappable_uid(spec.uid) or not id_plan.mappable_gid(spec.gid):
        raise SandboxError(
            f"user {spec.uid}:{spec.gid} cannot be mapped into the sandbox "
            "(configure subordinate ids in /etc/subuid and /etc/subgid)"
        )
    scratch = Path(tempfile.mkdtemp(prefix="ocislim-run-"))
    channel = _Channel()
    creator = init_pid = 0
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
        probe_argvs: list[list[str]] = []
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
                probe_argvs.append([inside] if body.startswith(b"#!") else ["/bin/sh", inside])
            else:
                probe_argvs.append(["/bin/sh", "-c", probe.command or "true"])
        plan = RootPlan(
            image_root=str(root.resolve()),
            scratch=str(scratch / "mnt"),
            binds=tuple(
                BindMount(os.path.realpath(b.source), b.target, b.read_only) for b in binds
            ),
            private_network=spec.network != "host",
            hostname=spec.hostname,
            workdir=spec.workdir,
        )
        to_creator_r, to_creator_w = channel.pipe()
        from_creator_r, from_creator_w = channel.pipe()
        to_init_r, to_init_w = channel.pipe()
        status_r, status_w = channel.pipe()
        filter_program = trace_filter(
            native_arch(), trace_all=tracer is not None and tracer.count_all
        )
        host_pid = os.getpid()
        creator = os.fork()
        if creator == 0:
            _creator_main(
                host_pid,
                plan,
                spec,
                probe_argvs,
                id_plan,
                (to_creator_r, from_creator_w, to_init_r, status_w),
                filter_program if tracer is not None else None,
            )
        for fd in (to_creator_r, from_creator_w, to_init_r, status_w):
            os.close(fd)
            channel.fds.remove(fd)
        message = _recv(from_creator_r)
        if message is None or message.get("error"):
            _reap(creator)
            creator = 0
            raise _creator_error(message)
        if message.get("userns"):
            write_id_maps(creator, id_plan)
        elif os.geteuid() == 0:
            progress.note("user namespaces unavailable: running with root's namespaces only")
        _send(to_creator_w, {"go": True})
        message = _recv(from_creator_r)
        if message is None or "init" not in message:
            raise SandboxError("the sandbox's init process did not start")
        init_pid = int(message["init"])
        if tracer is not None:
            try:
                tracer.seize(init_pid)
            except OSError as exc:
                raise SandboxError(f"cannot trace the sandbox (ptrace: {exc.strerror})") from exc
        _send(to_init_w, {"go": True})
        os.close(to_init_w)
        channel.fds.remove(to_init_w)
        try:
            if tracer is not None:
                tracer.run()
                status = tracer.child_status.get(creator, 0)
            else:
                _, status = _waitpid_retry(creator)
        except BaseException:
            _kill(init_pid)
            if tracer is not None:
                tracer.run()
            raise
        creator = 0
        messages = _read_all(status_r)
        return _result(messages, status, progress)
    finally:
        if init_pid:
            _kill(init_pid)
        if creator:
            _kill(creator)
            _reap(creator)
        channel.close_all()
        shutil.rmtree(scratch, ignore_errors=True)


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


# --- creator (host pid namespace, new user namespace) -------------------------------


def _creator_main(
    host_pid: int,
    plan: RootPlan,
    spec: RunSpec,
    probe_argvs: list[list[str]],
    id_plan: IdMapPlan,
    fds: tuple[int, int, int, int],
    filter_program: list[tuple[int, int, int, int]] | None,
) -> None:
    """Never returns. Creates the namespaces and forks the init."""
    from_host, to_host, init_go, status_w = fds
    code = 1
    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != host_pid:
            os._exit(1)
        flags = libc.CLONE_NEWNS | libc.CLONE_NEWPID | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC
        if plan.private_network:
            flags |= libc.CLONE_NEWNET
        userns = True
        try:
            libc.unshare(flags | libc.CLONE_NEWUSER)
        except OSError as exc:
            if os.geteuid() != 0:
                _send(to_host, {"error": "userns", "errno": exc.errno})
                os._exit(1)
            userns = False
            libc.unshare(flags)
        _send(to_host, {"userns": userns})
        if _recv(from_host) is None:
            os._exit(1)
        init = os.fork()
        if init == 0:
            os.close(to_host)
            _init_main(plan, spec, probe_argvs, id_plan, init_go, status_w, filter_program)
        os.close(init_go)
        os.close(status_w)
        _send(to_host, {"init": init})
        _, status = _waitpid_retry(init)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            _send(to_host, {"error": "setup", "message": f"creating namespaces: {exc}"})
    os._exit(code)


# --- init (pid 1 in the sandbox) ------------------------------------------------------


def _init_main(
    plan: RootPlan,
    spec: RunSpec,
    probe_argvs: list[list[str]],
    id_plan: IdMapPlan,
    go_fd: int,
    status_fd: int,
    filter_program: list[tuple[int, int, int, int]] | None,
) -> None:
    """Never returns."""
    code = 1
    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if _recv(go_fd) is None:
            os._exit(1)
        os.close(go_fd)
        try:
            layout = build_root(plan)
        except BaseException as exc:
            detail = str(exc)
            if isinstance(exc, OSError) and exc.strerror:
                where = exc.filename if exc.filename else "mount"
                detail = f"{where}: {exc.strerror}"
            _send(status_fd, {"event": "error", "message": detail})
            os._exit(1)
        _send(
            status_fd,
            {
                "event": "ready",
                "mount_points": list(layout.mount_points),
                "overlay": layout.overlay,
            },
        )
        launcher = _Launcher(spec, id_plan, status_fd, filter_program)
        done = _supervise(spec, probe_argvs, launcher)
        _send(status_fd, {"event": "done", **done})
        code = 0
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            _send(status_fd, {"event": "error", "message": f"sandbox init: {exc}"})
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGKILL)
    os._exit(code)


@dataclass
class _Launcher:
    spec: RunSpec
    id_plan: IdMapPlan
    status_fd: int
    filter_program: list[tuple[int, int, int, int]] | None

    def start(self, argv: list[str], stdin: int | None) -> int:
        pid = os.fork()
        if pid == 0:
            self._child(argv, stdin)
        return pid

    def _child(self, argv: list[str], stdin: int | None) -> None:
        spec = self.spec
        code = 127
        try:
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            if stdin is None:
                stdin = os.open("/dev/null", os.O_RDONLY)
            for target, source in ((0, stdin), (1, spec.stdout), (2, spec.stderr)):
                if source != target:
                    os.dup2(source, target)
            os.chdir(spec.workdir)
            env = {name: value for name, _, value in (e.partition("=") for e in spec.env)}
            path = _lookup(argv[0], env.get("PATH", ""))
            if path is None:
                self._fail(f"executable not found in the image: {argv[0]}")
                os._exit(127)
            keep = self.status_fd
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 20)
            if self.filter_program is not None:
                libc.install_seccomp_filter(self.filter_program)
            if os.getuid() != spec.uid or os.getgid() != spec.gid:
                if self.id_plan.setgroups:
                    os.setgroups([g for g in spec.groups if self.id_plan.mappable_gid(g)])
                os.setgid(spec.gid)
                os.setuid(spec.uid)
            elif self.id_plan.setgroups:
                os.setgroups([g for g in spec.groups if self.id_plan.mappable_gid(g)])
            try:
                os.execve(path, argv, env)
            except OSError as exc:
                code = 127 if exc.errno == 2 else 126
                self._fail(f"cannot execute {argv[0]}: {exc.strerror}")
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                self._fail(f"cannot start {argv[0]}: {exc}")
        os._exit(code)

    def _fail(self, message: str) -> None:
        _send(self.status_fd, {"event": "exec-error", "message": message})


def _lookup(name: str, search_path: str) -> str | None:
    """``name`` as execve would be given it: relative to the cwd if it has a slash,
    else the first executable regular file along ``search_path``."""
    if "/" in name:
        return name
    for directory in search_path.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
    return None


def _exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1


class _Children:
    """Waits for the init's children with a deadline, using pidfds."""

    def __init__(self) -> None:
        self.status: dict[int, int] = {}
        self._fds: dict[int, int] = {}

    def watch(self, pid: int) -> None:
        self._fds[pid] = os.pidfd_open(pid)

    def alive(self, pid: int) -> bool:
        return pid not in self.status

    def wait(self, pids: list[int], deadline: float | None) -> bool:
        """Until one of ``pids`` has exited (True) or ``deadline`` passes (False)."""
        while True:
            if any(p in self.status for p in pids):
                return True
            poller = select.poll()
            by_fd = {}
            for pid in pids:
                poller.register(self._fds[pid], select.POLLIN)
                by_fd[self._fds[pid]] = pid
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            ready = poller.poll(timeout)
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                continue
            for fd, _ in ready:
                self._reap(by_fd[fd])

    def _reap(self, pid: int) -> None:
        _, status = _waitpid_retry(pid)
        self.status[pid] = status
        os.close(self._fds.pop(pid))


def _supervise(
    spec: RunSpec, probe_argvs: list[list[str]], launcher: _Launcher
) -> dict[str, object]:
    children = _Children()
    entry = launcher.start(list(spec.argv), spec.stdin)
    children.watch(entry)
    start = time.monotonic()
    deadline = None if spec.timeout is None else start + spec.timeout
    timed_out = False
    probe_codes: list[int] = []
    running_probe = 0
    for argv in probe_argvs:
        if not children.alive(entry):
            break
        running_probe = launcher.start(argv, None)
        children.watch(running_probe)
        if not children.wait([running_probe], deadline):
            timed_out = True
            break
        probe_codes.append(_exit_code(children.status[running_probe]))
        running_probe = 0
    if not timed_out and probe_argvs and children.alive(entry):
        _signal(entry, signal.SIGTERM)
        children.wait([entry], time.monotonic() + spec.grace)
    elif not timed_out and not children.wait([entry], deadline):
        timed_out = True
    if timed_out:
        for pid in (entry, running_probe):
            if pid and children.alive(pid):
                _signal(pid, signal.SIGTERM)
        children.wait([entry], time.monotonic() + spec.grace)
    # Whatever is left (daemons, a probe, an entrypoint ignoring SIGTERM) is killed.
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGKILL)
    if children.alive(entry):
        children.wait([entry], None)
    if running_probe and children.alive(running_probe):
        children.wait([running_probe], None)
    _reap_all()
    return {
        "exit_code": _exit_code(children.status[entry]),
        "timed_out": timed_out,
        "probes": probe_codes,
    }


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
