"""The processes of a sandbox: the creator (supervisor), the init, the program.

Process layout::

    ocislim (host; the tracer when tracing, which seizes the creator)
      └─ creator: host pid namespace, new user namespace; unshares the pid namespace
           ├─ init (pid 1 inside): unshares mount/net/uts/ipc, builds the root, reports
           │    once on a pipe it then closes, closes every descriptor, becomes
           │    non-dumpable and only reaps orphans
           ├─ entrypoint (pid 2): joins init's namespaces, then execs the program
           ├─ probes, one at a time, while the entrypoint runs
           └─ ``ocislim exec`` commands, whenever the host hands one over

The creator forks the entrypoint and the probes itself (after unshare(CLONE_NEWPID)
its children land in the new pid namespace), so their exit codes are wait statuses
it collects from the kernel.  It is invisible from inside (its pid is in the host
namespace only), and it is the only process holding the channel to the host.  The
program's processes hold nothing of ocislim's: every descriptor but the chosen
stdin/stdout/stderr is closed before exec, they run in their own session (no
controlling terminal, their own process group), with the capability bounding set
of OCI runtimes' default (no CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN, ...),
so the mounts protecting /proc and /sys stay in place and the init cannot be
traced or read.

The plan the creator runs: start the entrypoint; run each probe to its end; then
send the entrypoint SIGTERM.  At ``timeout`` SIGTERM goes to the entrypoint and the
running probe.  After ``grace`` seconds, or as soon as the entrypoint has exited,
the init is killed, which kills every process left in the pid namespace.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocislim.sandbox import libc
from ocislim.sandbox.idmaps import IdMapPlan
from ocislim.sandbox.launcher import Command, Launcher, exit_code
from ocislim.sandbox.namespaces import RootPlan, build_root
from ocislim.sandbox.wire import (
    close_fds_except,
    no_imports,
    read_lines,
    receive,
    send,
    write_line,
)

if TYPE_CHECKING:
    from ocislim.sandbox.spec import RunSpec

# --- creator (host pid namespace, new user namespace) -------------------------------


@dataclass(frozen=True)
class CreatorPlan:
    """What the creator needs, made on the host before forking."""

    host_pid: int
    root: RootPlan
    spec: RunSpec
    probe_argvs: tuple[tuple[str, ...], ...]
    id_plan: IdMapPlan
    filter_program: list[tuple[int, int, int, int]] | None


def creator_main(
    plan: CreatorPlan, sock: socket.socket, exec_sock: socket.socket | None = None
) -> None:
    """Never returns. Creates the namespaces, forks the init, runs the program's plan.

    Protocol on ``sock`` (to the host): sends ``{"userns": bool}``; receives ``go`` with
    the detached mounts (``sources``: path for each descriptor); sends ``{"init": pid}``;
    receives ``go`` (the host has seized this process when tracing); sends ``ready``
    (or ``error``), any ``exec-error``, ``tmpfs-full``, then ``done`` (with ``execs``,
    the commands run for ``ocislim exec``).  ``exec_sock``: where the host's exec server
    hands over checked commands (``{"exec": command}`` with stdin, stdout, stderr and
    the client's connection, which gets ``{"exit_code": N}`` or ``{"error": ...}``).
    """
    code = 1
    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != plan.host_pid:
            os._exit(1)
        userns = True
        try:
            libc.unshare(libc.CLONE_NEWUSER | libc.CLONE_NEWPID)
        except OSError as exc:
            if os.geteuid() != 0:
                send(sock, {"error": "userns", "errno": exc.errno})
                os._exit(1)
            userns = False
            libc.unshare(libc.CLONE_NEWPID)
        send(sock, {"userns": userns})
        go, fds = receive(sock, 64)
        if go is None:
            os._exit(1)
        detached = dict(zip(go.get("sources", []), fds, strict=False))
        if userns and plan.id_plan.enter_as_root:
            # Our host uid is not in the map: become the namespace's root.
            os.setgroups([])
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            # Both cleared by the change; dumpable lets us open the init's namespaces
            # (nothing inside can see this process to make use of it).
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            libc.prctl(libc.PR_SET_DUMPABLE, 1)
            if os.getppid() != plan.host_pid:
                os._exit(1)
        setup_r, setup_w = os.pipe()
        ack_r, ack_w = os.pipe()
        init = os.fork()
        if init == 0:
            _init_main(plan.root, setup_w, ack_r, detached, userns)
        for fd in (setup_w, ack_r, *detached.values()):
            os.close(fd)
        send(sock, {"init": init})
        code = _supervise_run(plan, sock, init, setup_r, ack_w, exec_sock)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            send(sock, {"error": "setup", "message": f"creating namespaces: {exc}"})
    os._exit(code)


def _supervise_run(
    plan: CreatorPlan,
    sock: socket.socket,
    init: int,
    setup_r: int,
    ack_w: int,
    exec_sock: socket.socket | None,
) -> int:
    try:
        go, _ = receive(sock)
        if go is None:
            return 1
        messages = read_lines(setup_r)
        os.close(setup_r)
        ready = next((m for m in messages if m.get("event") == "ready"), None)
        if ready is None:
            for m in messages:
                send(sock, m)
            return 1
        # Taken while the init is still dumpable; it turns non-dumpable on the ack.
        namespaces = ["ipc", "uts", "mnt"]
        if plan.root.private_network:
            namespaces.insert(0, "net")
        ns_fds = [os.open(f"/proc/{init}/ns/{n}", os.O_RDONLY | os.O_CLOEXEC) for n in namespaces]
        root_fd = os.open(f"/proc/{init}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        os.write(ack_w, b"k")
        os.close(ack_w)
        send(sock, ready)
        launcher = Launcher(plan.spec, plan.id_plan, ns_fds, plan.filter_program, init)
        execs = _Execs(exec_sock, launcher)
        done = _supervise(plan.spec, plan.probe_argvs, launcher, root_fd, execs)
        for note in launcher.errors:
            send(sock, {"event": "exec-error", "message": note})
        if done.pop("tmpfs_full"):
            send(sock, {"event": "tmpfs-full"})
        send(sock, {"event": "done", **done})
        return 0
    finally:
        with contextlib.suppress(OSError):
            os.kill(init, signal.SIGKILL)
        _reap_all()


# --- init (pid 1 in the sandbox) ------------------------------------------------------


def _init_main(
    plan: RootPlan, setup_w: int, ack_r: int, detached: dict[str, int], userns: bool
) -> None:
    """Never returns. Builds the root, reports once, then only reaps orphans."""
    try:
        close_fds_except({setup_w, ack_r, *detached.values()})
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        flags = libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC
        if plan.private_network:
            flags |= libc.CLONE_NEWNET
        libc.unshare(flags)
        no_imports()
        try:
            layout = build_root(plan, detached, userns=userns)
        except BaseException as exc:
            detail = str(exc)
            if isinstance(exc, OSError) and exc.strerror:
                where = exc.filename if exc.filename else "mount"
                detail = f"{where}: {exc.strerror}"
            write_line(setup_w, {"event": "error", "message": detail})
            os._exit(1)
        write_line(
            setup_w,
            {
                "event": "ready",
                "mount_points": list(layout.mount_points),
                "overlay": layout.overlay,
            },
        )
        os.close(setup_w)
        os.read(ack_r, 1)  # the creator has opened our namespaces
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            write_line(setup_w, {"event": "error", "message": f"sandbox init: {exc}"})
        os._exit(1)
    # Nothing of ocislim's is left to see: no descriptor, no memory to read or trace.
    close_fds_except(set())
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            signal.sigwait({signal.SIGCHLD})
        except InterruptedError:
            continue


class _Children:
    """Waits for the creator's children with a deadline, using pidfds; meanwhile
    starts the ``ocislim exec`` commands the host hands over (``execs``)."""

    def __init__(self, launcher: Launcher, execs: _Execs) -> None:
        self.status: dict[int, int] = {}
        self._fds: dict[int, int] = {}
        self._launcher = launcher
        self._execs = execs

    def watch(self, pid: int) -> None:
        self._fds[pid] = os.pidfd_open(pid)

    def alive(self, pid: int) -> bool:
        return pid not in self.status

    def wait(self, pids: list[int], deadline: float | None, tick: Any = None) -> bool:
        """Until one of ``pids`` has exited (True) or ``deadline`` passes (False).

        ``tick``: called about every half second while waiting.
        """
        while True:
            if any(p in self.status for p in pids):
                return True
            poller = select.poll()
            by_fd = {}
            for pid, fd in self._fds.items():
                poller.register(fd, select.POLLIN)
                by_fd[fd] = pid
            exec_fd = self._execs.fileno()
            if exec_fd is not None:
                poller.register(exec_fd, select.POLLIN)
            timeout = 500.0
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()) * 1000)
            ready = poller.poll(timeout)
            if tick is not None:
                tick()
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                continue
            for fd, _ in ready:
                if fd == exec_fd:
                    pid = self._execs.take()
                    if pid:
                        self.watch(pid)
                else:
                    self._reap(by_fd[fd])

    def _reap(self, pid: int) -> None:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        self.status[pid] = status
        os.close(self._fds.pop(pid))
        error = self._launcher.ended(pid)
        if pid in self._execs.running:
            self._execs.ended(pid, status, error)
        elif error:
            self._launcher.errors.append(error)


def _answer(conn: int, obj: dict[str, object]) -> None:
    with socket.socket(fileno=conn) as sock, contextlib.suppress(OSError):
        send(sock, obj)


@dataclass
class _Execs:
    """The ``ocislim exec`` commands: taken from ``sock`` (None: no exec channel), each
    started by the launcher; its connection gets the exit code when it has been reaped."""

    sock: socket.socket | None
    launcher: Launcher
    closed: bool = False
    running: dict[int, tuple[int, Command]] = field(default_factory=dict)
    records: list[dict[str, object]] = field(default_factory=list)

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def take(self) -> int:
        """Start the next command handed over; its pid, or 0 (refused or none)."""
        assert self.sock is not None
        message, fds = receive(self.sock, 4)
        if message is None or len(fds) != 4 or not isinstance(message.get("exec"), dict):
            for fd in fds:
                os.close(fd)
            if message is None:
                self.sock = None  # the host's server has gone
            return 0
        *stdio, conn = fds
        try:
            if self.closed:
                _answer(conn, {"error": "the sandbox is stopping"})
                return 0
            c = message["exec"]
            command = Command(
                [str(a) for a in c["argv"]],
                [str(e) for e in c["env"]],
                str(c["workdir"]),
                int(c["uid"]),
                int(c["gid"]),
                tuple(int(g) for g in c["groups"]),
                (stdio[0], stdio[1], stdio[2]),
                bool(c["tty"]),
            )
            pid = self.launcher.start_command(command)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            _answer(conn, {"error": f"cannot start the command: {exc}"})
            return 0
        finally:
            for fd in stdio:
                os.close(fd)
        self.running[pid] = (conn, command)
        return pid

    def ended(self, pid: int, status: int, error: str) -> None:
        conn, command = self.running.pop(pid)
        code = exit_code(status)
        _answer(conn, {"error": error, "exit_code": code} if error else {"exit_code": code})
        self.records.append(
            {"pid": pid, "argv": command.argv, "tty": command.tty, "exit_code": code}
        )


@dataclass
class _Overlay:
    """Watches the in-memory upper layer of the sandbox's root (an O_PATH descriptor
    of it; an overlay reports its upper layer's usage) for running full."""

    root_fd: int
    full: bool = False

    def check(self) -> None:
        if self.full:
            return
        with contextlib.suppress(OSError):
            st = os.fstatvfs(self.root_fd)
            self.full = st.f_bavail == 0 and st.f_blocks > 0


def _supervise(
    spec: RunSpec,
    probe_argvs: tuple[tuple[str, ...], ...],
    launcher: Launcher,
    root_fd: int,
    execs: _Execs,
) -> dict[str, object]:
    children = _Children(launcher, execs)
    overlay = _Overlay(root_fd)
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
        running_probe = launcher.start(list(argv), None)
        children.watch(running_probe)
        if not children.wait([running_probe], deadline, overlay.check):
            timed_out = True
            break
        probe_codes.append(exit_code(children.status[running_probe]))
        running_probe = 0
    if not timed_out and probe_argvs and children.alive(entry):
        _signal(entry, signal.SIGTERM)
        children.wait([entry], time.monotonic() + spec.grace, overlay.check)
    elif not timed_out and not children.wait([entry], deadline, overlay.check):
        timed_out = True
    if timed_out:
        for pid in (entry, running_probe):
            if pid and children.alive(pid):
                _signal(pid, signal.SIGTERM)
        children.wait([entry], time.monotonic() + spec.grace, overlay.check)
    overlay.check()
    # Whatever is left (daemons, a probe, an exec, an entrypoint ignoring SIGTERM) dies
    # with the init.
    execs.closed = True
    launcher.kill_init()
    if children.alive(entry):
        children.wait([entry], None)
    if running_probe and children.alive(running_probe):
        children.wait([running_probe], None)
    for pid in list(execs.running):
        if children.alive(pid):
            children.wait([pid], None)
    return {
        "exit_code": exit_code(children.status[entry]),
        "timed_out": timed_out,
        "probes": probe_codes,
        "tmpfs_full": overlay.full,
        "execs": execs.records,
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
