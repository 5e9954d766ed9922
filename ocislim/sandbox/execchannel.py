"""``ocislim exec``: the channel that lets a command into a running sandbox.

Three parties, none inside the sandbox:

- the **client** (``ocislim exec``, :func:`exec_command`) connects to the sandbox's
  socket in the user's private runtime directory (:mod:`ocislim.sandbox.registry`)
  and sends one request with three descriptors: its stdin (or ``/dev/null``),
  stdout and stderr, or, with a terminal, three copies of a pty's slave end (the
  client keeps the master and relays the user's terminal to it);
- the **server** (:class:`ExecServer`, a thread of the ocislim process that started
  the sandbox, in the host's namespaces) accepts a connection only when the peer's
  credentials (``SO_PEERCRED``, host ids) name the user who started the sandbox,
  turns the request into a full command (environment, working directory and user
  resolved against the sandbox's spec and the image's passwd) and hands it, with
  the client's descriptors and the connection, to the creator;
- the **creator** (:mod:`ocislim.sandbox.supervisor`) forks the command into the
  sandbox exactly as it forks probes (the init's namespaces, the capability
  bounding set, the seccomp filter when traced, every other descriptor closed),
  and answers on the connection with the command's exit code.

The command holds nothing of the host but the descriptors the client gave.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import threading
import tty
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocislim.errors import OcislimError, SandboxError, UsageError
from ocislim.sandbox.config import env_item, resolve_user
from ocislim.sandbox.registry import Entry
from ocislim.sandbox.spec import RunSpec
from ocislim.sandbox.wire import Message, receive, send

_UCRED = struct.Struct("3i")  # pid, uid, gid


class ExecFailed(SandboxError):
    """The command could not be started in the sandbox; ``exit_code`` is what a shell
    would report (127: not found, 126: not executable), as ``docker exec`` does."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


_REQUEST_TIMEOUT = 10.0


def peer_uid(conn: socket.socket) -> int:
    """The effective uid of the process at the other end of ``conn`` (host ids)."""
    data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(data)[1])


def command_for(request: Message, spec: RunSpec, root: Path) -> dict[str, Any]:
    """The command the creator runs for a client's ``request``: its argv, the sandbox's
    environment with the request's ``K=V`` on top, the working directory and the user
    (``USER[:GROUP]`` looked up in the image at ``root``; default: the program's).
    Raises :class:`UsageError` or :class:`SandboxError` for a bad request."""
    argv = request.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise UsageError("exec: no command")
    env = dict(e.partition("=")[::2] for e in spec.env)
    uid, gid, groups = spec.uid, spec.gid, spec.groups
    user = request.get("user")
    if isinstance(user, str) and user:
        uid, gid, groups, home = resolve_user(root, user)
        env["HOME"] = home
    for item in request.get("env") or []:
        key, sep, value = str(item).partition("=")
        if not key or not sep:
            raise UsageError(f"exec: -e {item!r}: expected K=V")
        env[key] = value
    workdir = request.get("workdir") or spec.workdir
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise UsageError(f"exec: working directory {workdir!r} must be absolute")
    return {
        "argv": argv,
        "env": [f"{k}={v}" for k, v in env.items()],
        "workdir": workdir,
        "uid": uid,
        "gid": gid,
        "groups": list(groups),
        "tty": bool(request.get("tty")),
    }


class ExecServer:
    """Accepts ``exec`` connections on ``listener`` for the sandbox run by ``spec`` on
    ``root``, and hands each checked request to the creator over ``to_creator``.

    ``start()`` once the creator runs; ``stop()`` when the run is over (also on error);
    the thread has ended when ``stop()`` returns."""

    def __init__(
        self, listener: socket.socket, to_creator: socket.socket, spec: RunSpec, root: Path
    ) -> None:
        self._listener = listener
        self._to_creator = to_creator
        self._spec = spec
        self._root = root
        self._thread: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None  # stop() writes to [1]; the thread selects [0]

    def start(self) -> None:
        self._wake = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(
            target=self._serve, args=(self._wake[0],), name="ocislim-exec", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """End the thread at once (a request being handled is finished first); idempotent."""
        if self._thread is None or self._wake is None:
            return
        os.write(self._wake[1], b"x")
        self._thread.join()
        self._thread = None
        for fd in self._wake:
            os.close(fd)
        self._wake = None

    def _serve(self, stop_fd: int) -> None:
        listen_fd = self._listener.fileno()
        while True:
            ready, _, _ = select.select([listen_fd, stop_fd], [], [])
            if stop_fd in ready:
                return
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            if peer_uid(conn) != os.geteuid():
                send(conn, {"error": "refused: the sandbox belongs to another user"})
                return
            conn.settimeout(_REQUEST_TIMEOUT)
            request, fds = receive(conn, 3)
            if request is None:
                return
            if len(fds) != 3:
                send(conn, {"error": "exec: the request must carry stdin, stdout and stderr"})
                return
            command = command_for(request, self._spec, self._root)
            try:
                send(self._to_creator, {"exec": command}, [*fds, conn.fileno()])
            except OSError:
                send(conn, {"error": "the sandbox has ended"})
        except OcislimError as exc:
            with contextlib.suppress(OSError):
                send(conn, {"error": str(exc)})
        except (OSError, ValueError):
            return
        finally:
            for fd in fds:
                os.close(fd)


# --- the client ---------------------------------------------------------------------


def exec_command(
    entry: Entry,
    argv: Sequence[str],
    env: Sequence[str] = (),
    workdir: str | None = None,
    user: str | None = None,
    interactive: bool = False,
    terminal: bool = False,
) -> int:
    """Run ``argv`` in the running sandbox ``entry``; returns its exit code (128+N when
    killed by signal N).  ``interactive``: our stdin goes to it; ``terminal``: it gets
    a pty (job control, window size and Ctrl-C are the command's), relayed to ours."""
    if not argv:
        raise UsageError("exec: give a COMMAND after --")
    pairs = [env_item(item, "-e") for item in env]
    values = [f"{key}={value}" for key, value in filter(None, pairs)]
    request = {"argv": list(argv), "env": values, "workdir": workdir, "user": user}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        try:
            conn.connect(str(entry.socket))
        except OSError as exc:
            raise SandboxError(f"cannot reach sandbox {entry.id}: {exc.strerror}") from None
        if terminal:
            return _with_terminal(conn, request, interactive)
        stdin = 0 if interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            send(conn, {**request, "tty": False}, [stdin, 1, 2])
        finally:
            if stdin != 0:
                os.close(stdin)
        return _answer(conn, entry)
    finally:
        conn.close()


def _answer(conn: socket.socket, entry: Entry) -> int:
    answer, _ = receive(conn)
    if answer is None:
        raise SandboxError(f"sandbox {entry.id} ended before the command did")
    if "error" in answer:
        if answer.get("exit_code") is not None:
            raise ExecFailed(str(answer["error"]), int(answer["exit_code"]))
        raise SandboxError(str(answer["error"]))
    return int(answer["exit_code"])


def _copy_size(source: int, target: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


def _with_terminal(conn: socket.socket, request: dict[str, Any], interactive: bool) -> int:
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    ours = next((fd for fd in (0, 1, 2) if os.isatty(fd)), None)
    if ours is not None:
        _copy_size(ours, master)
    try:
        send(conn, {**request, "tty": True}, [slave, slave, slave])
    finally:
        os.close(slave)
    saved = None
    if interactive and os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0, termios.TCSANOW)  # keep what was typed ahead
    previous = signal.getsignal(signal.SIGWINCH)
    if ours is not None:
        signal.signal(signal.SIGWINCH, lambda *_: _copy_size(ours, master))
    try:
        return _relay(conn, master, interactive)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _relay(conn: socket.socket, master: int, interactive: bool) -> int:
    """Copy our stdin to the pty and the pty to our stdout until the command's answer."""
    reading = [master, conn.fileno()] + ([0] if interactive else [])
    answer: Message | None = None
    while True:
        try:
            ready, _, _ = select.select(reading, [], [])
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""  # EIO: every holder of the slave end has closed it
            if data:
                _write_all(1, data)
            else:
                reading.remove(master)
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                _write_all(master, data)
            else:
                reading.remove(0)
                _write_all(master, b"\x04")  # end of our input: end of file on its terminal
        if conn.fileno() in ready:
            answer, _ = receive(conn)
            break
    # The command has ended: show what it wrote last.
    os.set_blocking(master, False)
    with contextlib.suppress(OSError):
        while data := os.read(master, 65536):
            _write_all(1, data)
    sys.stdout.flush()
    if answer is None:
        raise SandboxError("the sandbox ended before the command did")
    if "error" in answer:
        if answer.get("exit_code") is not None:
            raise ExecFailed(str(answer["error"]), int(answer["exit_code"]))
        raise SandboxError(str(answer["error"]))
    return int(answer["exit_code"])
