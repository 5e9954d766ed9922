"""The program's processes: how the creator starts the entrypoint, a probe or an
``ocislim exec`` command inside the sandbox.

Each child joins the init's namespaces, gets its own session, keeps only its
stdin, stdout and stderr, drops the capabilities OCI runtimes drop, installs the
tracing filter when asked, switches to its user and execs; what went wrong before
exec is reported on a close-on-exec pipe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import termios
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ocislim.sandbox import libc
from ocislim.sandbox.idmaps import IdMapPlan
from ocislim.sandbox.wire import close_fds_except, no_imports

if TYPE_CHECKING:
    from ocislim.sandbox.spec import RunSpec

# The capabilities OCI runtimes (runc, crun, podman, docker) leave a container by default.
DEFAULT_CAPABILITIES = frozenset(
    {
        0,  # CAP_CHOWN
        1,  # CAP_DAC_OVERRIDE
        3,  # CAP_FOWNER
        4,  # CAP_FSETID
        5,  # CAP_KILL
        6,  # CAP_SETGID
        7,  # CAP_SETUID
        8,  # CAP_SETPCAP
        10,  # CAP_NET_BIND_SERVICE
        13,  # CAP_NET_RAW
        18,  # CAP_SYS_CHROOT
        27,  # CAP_MKNOD
        29,  # CAP_AUDIT_WRITE
        31,  # CAP_SETFCAP
    }
)


@dataclass(frozen=True)
class Command:
    """What one process of the program runs, and as whom; ``stdio``: its 0, 1 and 2."""

    argv: list[str]
    env: list[str]
    workdir: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    stdio: tuple[int | None, int, int]
    tty: bool = False


@dataclass
class Launcher:
    spec: RunSpec
    id_plan: IdMapPlan
    ns_fds: list[int]
    filter_program: list[tuple[int, int, int, int]] | None
    init: int
    errors: list[str] = field(default_factory=list)
    _error_pipes: dict[int, int] = field(default_factory=dict)

    def start(self, argv: list[str], stdin: int | None) -> int:
        """Start ``argv`` as the program's spec says (the entrypoint or a probe)."""
        spec = self.spec
        stdio = (stdin, spec.stdout, spec.stderr)
        return self.start_command(
            Command(argv, list(spec.env), spec.workdir, spec.uid, spec.gid, spec.groups, stdio)
        )

    def start_command(self, command: Command) -> int:
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        # Signals stay blocked across the fork: a stop that reaches the child before it
        # has reset ocislim's Python handlers must kill it (143), not run them.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            os.close(err_r)
            os.close(err_w)
            raise
        if pid == 0:
            self._child(command, err_w)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        os.close(err_w)
        self._error_pipes[pid] = err_r
        return pid

    def kill_init(self) -> None:
        """Kill the init, and with it every process of the pid namespace."""
        with contextlib.suppress(OSError):
            os.kill(self.init, signal.SIGKILL)

    def ended(self, pid: int) -> str:
        """What the child ``pid`` reported before exec ("" if nothing; it has been reaped)."""
        fd = self._error_pipes.pop(pid, None)
        if fd is None:
            return ""
        text = ""
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):
            text = os.read(fd, 4096).decode(errors="replace").strip()
        os.close(fd)
        return text

    def _child(self, command: Command, err_w: int) -> None:
        argv = command.argv
        code = 127
        try:
            no_imports()
            os.setsid()
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            for fd in self.ns_fds:
                libc.setns(fd, 0)
            os.chdir(command.workdir)
            stdin, stdout, stderr = command.stdio
            if stdin is None:
                stdin = os.open("/dev/null", os.O_RDONLY)
            # Moved above 2 first, so that one target never overwrites a later source.
            sources = [os.dup(fd) for fd in (stdin, stdout, stderr)]
            for target, source in enumerate(sources):
                os.dup2(source, target)
            if command.tty:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # job control and Ctrl-C are its own
            env = {name: value for name, _, value in (e.partition("=") for e in command.env)}
            path = _lookup(argv[0], env.get("PATH", ""))
            if path is None:
                os.write(err_w, f"executable not found in the image: {argv[0]}".encode())
                os._exit(127)
            close_fds_except({0, 1, 2, err_w})
            _drop_capabilities()
            if self.filter_program is not None:
                libc.install_seccomp_filter(self.filter_program)
            groups = [g for g in command.groups if self.id_plan.mappable_gid(g)]
            if os.getuid() != command.uid or os.getgid() != command.gid:
                if self.id_plan.setgroups:
                    os.setgroups(groups)
                os.setgid(command.gid)
                os.setuid(command.uid)
            elif self.id_plan.setgroups:
                os.setgroups(groups)
            try:
                os.execve(path, argv, env)
            except OSError as exc:
                code = 127 if exc.errno == 2 else 126
                os.write(err_w, f"cannot execute {argv[0]}: {exc.strerror}".encode())
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                os.write(err_w, f"cannot start {argv[0]}: {exc}".encode())
        os._exit(code)


_ALL_SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


def _drop_capabilities() -> None:
    for cap in range(64):
        if cap in DEFAULT_CAPABILITIES:
            continue
        try:
            libc.prctl(libc.PR_CAPBSET_DROP, cap)
        except OSError:
            break  # EINVAL: past the kernel's last capability


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


def exit_code(status: int) -> int:
    """A wait status as a shell reports it (128+N when killed by signal N)."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1
