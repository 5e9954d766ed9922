"""ptrace loop: follows every task of the sandboxed program and appends facts.

The tracer seizes the sandbox's creator process with PTRACE_SEIZE and options that
auto-attach every fork, vfork and clone; the program's processes carry a
seccomp filter (see :mod:`ocislim.sandbox.seccomp`) so only path system calls
stop.  At the seccomp stop the tracer reads the call's arguments (path strings
with ``process_vm_readv``, the cwd or dirfd path for relative names, flags,
argv).  A call that creates or removes no name is recorded there and then, with
its result unknown: one stop per call.  Only calls that create or remove a name
(and exec) also stop at their exit, where their :class:`SyscallEvent` is
appended with the result.  Signals are re-injected unchanged, group stops are held with
PTRACE_LISTEN, and exec from a non-leader thread moves its pending call to the
leader's id, so the program behaves as it would untraced.

The tracer only appends events; what they mean is decided by
:mod:`ocislim.sandbox.analysis`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from ocislim.sandbox import libc
from ocislim.sandbox.syscalls import (
    AT_FDCWD,
    AUDIT_ARCH,
    OPEN_FLAGS,
    SYSCALL_NAMES,
    PathSyscall,
    native_arch,
    path_syscalls_by_number,
)

SEIZE_OPTIONS = (
    libc.PTRACE_O_TRACESYSGOOD
    | libc.PTRACE_O_TRACEFORK
    | libc.PTRACE_O_TRACEVFORK
    | libc.PTRACE_O_TRACECLONE
    | libc.PTRACE_O_TRACEEXEC
    | libc.PTRACE_O_TRACESECCOMP
    | libc.PTRACE_O_EXITKILL
)

# struct ptrace_syscall_info: op u8, pad[3], arch u32, ip u64, sp u64, then the union.
_SECCOMP_INFO = struct.Struct("=xxxxIxxxxxxxxxxxxxxxxQ6Q")  # arch, nr, args[6]
_EXIT_INFO = struct.Struct("=Bxxxxxxxxxxxxxxxxxxxxxxxq")  # op, rval
_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_SYSCALL_TRAP = signal.SIGTRAP | 0x80
_MAX_ARGV = 4096
# The kernel refuses longer paths (ENAMETOOLONG) and longer argument strings and vectors
# (E2BIG), so reading more of a hostile program's memory would only cost ours.
_PATH_MAX = 4096
_MAX_ARG_STRLEN = 131072
_MAX_ARGV_BYTES = 2 << 20
_EVENT_OVERHEAD = 320  # bytes an event costs beyond its strings (tracemalloc: 305 for a stat)
RECORD_LIMIT = 1 << 30
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class PathFact(NamedTuple):
    """A path argument as the process gave it.

    ``base``: for a relative (or empty) path, the directory it is relative to
    (the cwd or the dirfd's path at that moment, as the sandbox sees it); None
    for an absolute path or when it could not be read.
    """

    raw: str
    base: str | None


class SyscallEvent(NamedTuple):
    """A path system call. ``result``: return value or -errno, read at the call's exit;
    None when it was not read (the call creates or removes no name, so it was recorded
    at its entry: see :attr:`~ocislim.sandbox.syscalls.PathSyscall.result_needed`) or
    the task died inside the call.  (A named tuple: made once per call.)"""

    seq: int
    tid: int
    pid: int
    name: str
    paths: tuple[PathFact, ...]
    flags: int | None
    result: int | None


@dataclass(frozen=True, slots=True)
class ExecEvent:
    """A successful exec: argv, the executable and the files the kernel mapped (the
    interpreter named by PT_INTERP, the script interpreter)."""

    seq: int
    pid: int
    former_tid: int
    argv: tuple[str, ...]
    exe: str | None
    mapped: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SpawnEvent:
    """A new task. ``thread``: shares the parent's process; ``ns_pid``: its id inside
    the sandbox (0 if unknown)."""

    seq: int
    parent_tid: int
    parent_pid: int
    child_tid: int
    child_pid: int
    ns_pid: int
    kind: str
    thread: bool


@dataclass(frozen=True, slots=True)
class ExitEvent:
    """A task ended: with ``exit_code`` or killed by ``signal``."""

    seq: int
    tid: int
    pid: int
    exit_code: int | None
    signal: int | None


Event = SyscallEvent | ExecEvent | SpawnEvent | ExitEvent


@dataclass(frozen=True, slots=True)
class TracerStats:
    """What tracing cost: ``stops`` the tracer handled (every wait status of a traced
    task), ``calls`` traced system calls (seccomp stops), ``cpu`` seconds of the
    tracer thread's own CPU time inside :meth:`Tracer.run`."""

    stops: int
    calls: int
    cpu: float

    @property
    def us_per_call(self) -> float:
        """Tracer CPU microseconds per traced call (0 when none was traced)."""
        return self.cpu * 1e6 / self.calls if self.calls else 0.0


@dataclass(slots=True)
class _Pending:
    name: str
    paths: tuple[PathFact, ...]
    flags: int | None
    argv: tuple[str, ...] | None


@dataclass(slots=True)
class _Task:
    pid: int  # thread group id on the host
    pending: _Pending | None = None


@dataclass
class Tracer:
    """Collects events from every task descended from the seized init process.

    ``count_all``: the seccomp filter traces every call; counts go to
    :attr:`syscall_counts` (by name).  Events of the init process itself are not
    recorded, only the tasks it spawns.  ``record_limit``: bytes the events may take (an
    estimate); past it no event is appended and :attr:`dropped` counts them, so a
    program that makes calls without end cannot exhaust the host's memory.
    """

    count_all: bool = False
    arch: str = field(default_factory=native_arch)
    events: list[Event] = field(default_factory=list)
    syscall_counts: dict[str, int] = field(default_factory=dict)
    record_limit: int = RECORD_LIMIT

    def __post_init__(self) -> None:
        self._plans = {
            nr: _plan(spec, self.arch) for nr, spec in path_syscalls_by_number(self.arch).items()
        }
        self._names = SYSCALL_NAMES[self.arch]
        self._audit_arch = AUDIT_ARCH[self.arch]
        self._counts: dict[int, int] = {}
        self._tasks: dict[int, _Task] = {}
        self._init_pid = 0
        self._info = libc.PtraceSyscallInfo()
        self._info_p = ctypes.addressof(self._info)
        self._info_size = ctypes.sizeof(self._info)
        # Decoding the raw bytes with struct is much cheaper than ctypes field access.
        self._info_view = memoryview(self._info).cast("B")
        self._msg = ctypes.c_ulong()
        self._msg_p = ctypes.addressof(self._msg)
        self._strings = libc.ProcMemReader()
        self._reader = self._strings.fallback
        self._seq = 0
        self._stops = 0
        self._calls = 0
        self._cpu = 0.0
        self._room = self.record_limit
        self.dropped = 0
        self.child_status: dict[int, int] = {}

    # -- setup ---------------------------------------------------------------

    def seize(self, pid: int) -> None:
        """Attach to ``pid`` (the sandbox's creator, which forks the program and its probes);
        its later children are followed automatically, its own events are not recorded."""
        libc.ptrace(libc.PTRACE_SEIZE, pid, 0, SEIZE_OPTIONS)
        self._init_pid = pid
        self._tasks[pid] = _Task(pid)

    # -- main loop -----------------------------------------------------------

    def run(self) -> None:
        """Handle stops until no tracee and no child is left (returns on ECHILD).

        Non-traced children of the caller (the namespace creator) are reaped too;
        their statuses are kept in :attr:`child_status`.  Its cost is in :attr:`stats`.
        """
        started = time.thread_time()
        try:
            self._loop()
        finally:
            self._strings.close()
            self._cpu += time.thread_time() - started

    @property
    def stats(self) -> TracerStats:
        """Stops handled, calls traced and tracer CPU seconds so far."""
        return TracerStats(self._stops, self._calls, self._cpu)

    def _loop(self) -> None:
        waitpid = os.waitpid
        tasks = self._tasks
        ptrace = libc.ptrace_raw
        view = self._info_view
        unpack_exit = _EXIT_INFO.unpack_from
        info_p, info_size = self._info_p, self._info_size
        seccomp_stop = (libc.PTRACE_EVENT_SECCOMP << 16) | (signal.SIGTRAP << 8) | 0x7F
        syscall_stop = (_SYSCALL_TRAP << 8) | 0x7F
        stops = 0
        try:
            while True:
                try:
                    pid, status = waitpid(-1, libc.WALL)
                except ChildProcessError:
                    return
                except InterruptedError:
                    continue
                stops += 1
                task = tasks.get(pid)
                # The two hot stops first: a path call's seccomp stop and its exit.
                if task is not None:
                    if status == seccomp_stop:
                        self._on_seccomp(pid, task)
                        continue
                    if status == syscall_stop:
                        if (
                            task.pending is not None
                            and ptrace(libc.PTRACE_GET_SYSCALL_INFO, pid, info_size, info_p) > 0
                        ):
                            op, rval = unpack_exit(view)
                            if op == libc.PTRACE_SYSCALL_INFO_EXIT:
                                self._complete(pid, task, rval)
                        ptrace(libc.PTRACE_CONT if task.pending is None else libc.PTRACE_SYSCALL,
                               pid, 0, 0)  # fmt: skip
                        continue
                elif not os.WIFSTOPPED(status):
                    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                        self.child_status[pid] = status
                    continue
                if os.WIFSTOPPED(status):
                    self._on_stop(pid, status)
                else:
                    self._on_exit(pid, status)
        finally:
            self._stops += stops

    def _on_stop(self, pid: int, status: int) -> None:
        sig = (status >> 8) & 0xFF
        event = status >> 16
        task = self._tasks.get(pid)
        if task is None:
            task = self._new_task(pid)
        if sig == _SYSCALL_TRAP:
            self._on_syscall_stop(pid, task)
        elif event == 0:
            self._resume(pid, task, sig)  # signal-delivery-stop: deliver as untraced
        elif event == libc.PTRACE_EVENT_SECCOMP:
            self._on_seccomp(pid, task)
        elif event in (libc.PTRACE_EVENT_FORK, libc.PTRACE_EVENT_VFORK, libc.PTRACE_EVENT_CLONE):
            libc.ptrace_nocheck(libc.PTRACE_GETEVENTMSG, pid, 0, self._msg_p)
            self._on_spawn(pid, task, self._msg.value, event)
            self._resume(pid, task, 0)
        elif event == libc.PTRACE_EVENT_EXEC:
            libc.ptrace_nocheck(libc.PTRACE_GETEVENTMSG, pid, 0, self._msg_p)
            task = self._on_exec(pid, self._msg.value)
            self._resume(pid, task, 0)
        elif event == libc.PTRACE_EVENT_STOP:
            if sig in _STOP_SIGNALS:
                # Group stop: stay stopped, but let SIGCONT be reported.
                libc.ptrace_nocheck(libc.PTRACE_LISTEN, pid, 0, 0)
            else:
                self._resume(pid, task, 0)  # a new task's first stop
        else:
            self._resume(pid, task, 0)

    def _resume(self, pid: int, task: _Task, sig: int) -> None:
        request = libc.PTRACE_SYSCALL if task.pending is not None else libc.PTRACE_CONT
        libc.ptrace_nocheck(request, pid, 0, sig)

    def _new_task(self, tid: int) -> _Task:
        tgid, _ = _proc_ids(tid)
        task = _Task(tgid or tid)
        self._tasks[tid] = task
        return task

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- events --------------------------------------------------------------

    def _on_spawn(self, pid: int, task: _Task, child: int, event: int) -> None:
        tgid, ns_pid = _proc_ids(child)
        if tgid:
            thread = tgid == task.pid
        else:
            # The task is already gone. fork() and vfork() report their own events;
            # a plain CLONE event (exit signal other than SIGCHLD) is a thread in practice.
            thread = event == libc.PTRACE_EVENT_CLONE
            tgid = task.pid if thread else child
        child_task = self._tasks.get(child)
        if child_task is None:
            child_task = self._tasks[child] = _Task(tgid or child)
        elif tgid:
            child_task.pid = tgid
        kind = {libc.PTRACE_EVENT_FORK: "fork", libc.PTRACE_EVENT_VFORK: "vfork"}.get(
            event, "clone"
        )
        self._record(
            SpawnEvent(
                self._next_seq(),
                pid,
                task.pid,
                child,
                child_task.pid,
                ns_pid,
                "thread" if thread else kind,
                thread,
            ),
            _EVENT_OVERHEAD,
        )

    def _on_exec(self, pid: int, former: int) -> _Task:
        task = self._tasks.get(pid) or self._new_task(pid)
        self._strings.forget(pid)  # a new image: its memory is read through a new descriptor
        if former != pid:
            moved = self._tasks.pop(former, None)
            if moved is not None:
                task.pending = moved.pending
        task.pid = pid
        argv = task.pending.argv if task.pending and task.pending.argv is not None else ()
        exe = _readlink(f"/proc/{pid}/exe")
        mapped = _mapped_files(pid)
        size = _EVENT_OVERHEAD + sum(map(len, argv)) + sum(map(len, mapped)) + len(exe or "")
        self._record(ExecEvent(self._next_seq(), pid, former, argv, exe, mapped), size)
        return task

    def _on_exit(self, tid: int, status: int) -> None:
        # Only a process's first task has its id: its process is ending and the id may
        # be reused (its other threads, if any, open their own descriptor again).
        self._strings.forget(tid)
        task = self._tasks.pop(tid, None)
        if task is None:
            return
        if task.pending is not None:
            self._complete(tid, task, None)
        if tid == self._init_pid:
            self.child_status[tid] = status
            return
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        self._record(ExitEvent(self._next_seq(), tid, task.pid, code, sig), _EVENT_OVERHEAD)

    def _on_seccomp(self, pid: int, task: _Task) -> None:
        # The hot path: one call per traced system call, so names are bound locally and
        # the common case (absolute path, result not needed) takes the fewest steps.
        ptrace = libc.ptrace_raw
        self._calls += 1
        if ptrace(libc.PTRACE_GET_SYSCALL_INFO, pid, self._info_size, self._info_p) <= 0:
            self._resume(pid, task, 0)
            return
        info = _SECCOMP_INFO.unpack_from(self._info_view)  # arch, nr, then the six arguments
        # A foreign ABI's numbers are counted, never interpreted with this table.
        nr = info[1] if info[0] == self._audit_arch else -1
        if self.count_all:
            self._counts[nr] = self._counts.get(nr, 0) + 1
        plan = self._plans.get(nr)
        if plan is None or pid == self._init_pid:
            ptrace(libc.PTRACE_CONT, pid, 0, 0)
            return
        name, cwd, path_args, flags_at, flags_in_struct, argv_at, exit_if = plan
        read_string = self._strings.read_string
        key = task.pid
        paths = []
        if cwd:
            paths.append(PathFact(".", _readlink(f"/proc/{pid}/cwd")))
        named = False
        size = _EVENT_OVERHEAD
        for pointer_at, dirfd_at, optional in path_args:
            address = info[pointer_at]
            raw_bytes = read_string(key, pid, address, _PATH_MAX) if address else None
            if raw_bytes is None:
                if optional and address == 0:
                    continue
                raw_bytes = b""
            # os.fsdecode without its type checks: the bytes are always bytes here.
            raw = raw_bytes.decode(_FS_ENCODING, _FS_ERRORS)
            base = None
            # An empty path acts on the dirfd itself (fstat is fstatat(fd, "")); the file
            # was recorded when it was opened, so no base is needed.
            if raw:
                named = True
                if raw[0] != "/":
                    dirfd = _int32(info[dirfd_at]) if dirfd_at else AT_FDCWD
                    if dirfd == AT_FDCWD:
                        base = _readlink(f"/proc/{pid}/cwd")
                    else:
                        base = _readlink(f"/proc/{pid}/fd/{dirfd}")
                    size += len(base or "")
            size += len(raw)
            paths.append(PathFact(raw, base))
        if not named and paths and not cwd:
            # Acts on an fd only (glibc's fstat is fstatat(fd, "", AT_EMPTY_PATH)): names no
            # file, so nothing is recorded.
            ptrace(libc.PTRACE_CONT, pid, 0, 0)
            return
        flags = None
        if flags_at:
            if flags_in_struct:
                data = self._reader.read(pid, info[flags_at], 8)
                flags = struct.unpack("<Q", data)[0] if len(data) == 8 else None
            else:
                flags = info[flags_at]
        if not reads_result(exit_if, flags):
            # Creates and removes no name: one stop, its result left unknown (None), to be
            # derived by the analysis from what exists when the call is made.
            self._seq += 1
            self._record(SyscallEvent(self._seq, pid, key, name, tuple(paths), flags, None), size)
            ptrace(libc.PTRACE_CONT, pid, 0, 0)
            return
        argv = self._read_argv(pid, info[argv_at]) if argv_at else None
        task.pending = _Pending(name, tuple(paths), flags, argv)
        ptrace(libc.PTRACE_SYSCALL, pid, 0, 0)

    def _on_syscall_stop(self, pid: int, task: _Task) -> None:
        info = self._info
        got = libc.ptrace_nocheck(libc.PTRACE_GET_SYSCALL_INFO, pid, self._info_size, self._info_p)
        if got > 0 and info.op == libc.PTRACE_SYSCALL_INFO_EXIT and task.pending is not None:
            self._complete(pid, task, int(info.u.exit.rval))
        self._resume(pid, task, 0)

    def _complete(self, tid: int, task: _Task, result: int | None) -> None:
        pending = task.pending
        task.pending = None
        if pending is None:
            return
        size = _EVENT_OVERHEAD + sum(len(p.raw) + len(p.base or "") for p in pending.paths)
        self._record(
            SyscallEvent(
                self._next_seq(), tid, task.pid, pending.name, pending.paths, pending.flags, result
            ),
            size,
        )

    def _record(self, event: Event, size: int) -> None:
        """Append ``event`` while the record budget lasts; past it, count it as dropped."""
        self._room -= size
        if self._room >= 0:
            self.events.append(event)
        else:
            self.dropped += 1

    def _read_argv(self, pid: int, address: int) -> tuple[str, ...]:
        """The argument vector at ``address``; cut short at the kernel's own limits."""
        argv: list[str] = []
        total = 0
        while address and len(argv) < _MAX_ARGV and total < _MAX_ARGV_BYTES:
            data = self._reader.read(pid, address, 8 * 32)
            if len(data) < 8:
                break
            count = len(data) // 8
            pointers = struct.unpack(f"<{count}Q", data[: count * 8])
            for pointer in pointers:
                if pointer == 0:
                    return tuple(argv)
                arg = self._reader.read_string(pid, pointer, _MAX_ARG_STRLEN) or b""
                total += len(arg)
                if len(argv) >= _MAX_ARGV or total > _MAX_ARGV_BYTES:
                    return tuple(argv)
                argv.append(os.fsdecode(arg))
            address += count * 8
        return tuple(argv)

    def finish(self) -> dict[str, int]:
        """Syscall counts by name (empty unless ``count_all``)."""
        counts: dict[str, int] = {}
        for nr, count in self._counts.items():
            name = self._names.get(nr, f"unknown_{nr}") if nr >= 0 else "foreign_abi"
            counts[name] = counts.get(name, 0) + count
        self.syscall_counts = counts
        return counts

    @property
    def init_pid(self) -> int:
        return self._init_pid


class _Plan(NamedTuple):
    """How the seccomp stop reads one call; ``*_at`` index the unpacked syscall info
    (arguments from 2; 0 for none).  ``exit_if``: stop at the exit when the flags have
    one of these bits (-1: always, 0: never)."""

    name: str
    cwd: bool
    paths: tuple[tuple[int, int, bool], ...]  # (pointer_at, dirfd_at, optional)
    flags_at: int
    flags_in_struct: bool
    argv_at: int
    exit_if: int


def reads_result(exit_if: int, flags: int | None) -> bool:
    """Whether a call stops at its exit for its result: always (``exit_if`` -1), never
    (0), or when its flags have a bit of ``exit_if`` (open's O_CREAT) or are unknown."""
    return exit_if < 0 or (exit_if > 0 and (flags is None or bool(flags & exit_if)))


def exit_rule(spec: PathSyscall, arch: str) -> int:
    """The ``exit_if`` of :func:`reads_result` for ``spec`` on ``arch``."""
    creat = OPEN_FLAGS[arch].creat
    return {"always": -1, "if_creat": creat, "never": 0}[spec.result_needed]


def _plan(spec: PathSyscall, arch: str) -> _Plan:
    at = 2  # the arguments' place in the unpacked struct ptrace_syscall_info
    return _Plan(
        spec.name,
        spec.cwd,
        tuple(
            (p.index + at, 0 if p.dirfd is None else p.dirfd + at, p.optional) for p in spec.paths
        ),
        0 if spec.flags is None else spec.flags + at,
        spec.flags_in_struct,
        0 if spec.argv is None else spec.argv + at,
        exit_rule(spec, arch),
    )


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _proc_ids(tid: int) -> tuple[int, int]:
    """(thread group id on the host, innermost namespace pid) of task ``tid``; 0 if gone."""
    tgid = ns_pid = 0
    try:
        with open(f"/proc/{tid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Tgid:"):
                    tgid = int(line.split()[1])
                elif line.startswith(b"NSpid:"):
                    ns_pid = int(line.split()[-1])
                    break
    except (OSError, ValueError):
        pass
    return tgid, ns_pid


def _mapped_files(pid: int) -> tuple[str, ...]:
    """Files mapped right after exec: the executable and its ELF interpreter."""
    seen: list[str] = []
    try:
        with open(f"/proc/{pid}/maps", "rb") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith(b"/"):
                    path = os.fsdecode(parts[5].rstrip(b"\n"))
                    if path not in seen:
                        seen.append(path)
    except OSError:
        pass
    return tuple(seen)
