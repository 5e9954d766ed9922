"""Host-side control of a running sandbox: HTTP probes, the probe gate, stopping.

A :class:`RunController` carries out a :class:`ControlPlan` from the host while
the sandbox runs:

- HTTP probes are sent from a helper process (:mod:`ocislim.sandbox.httpprobe`)
  that joins the sandbox's user and network namespaces, so the program keeps its
  private network and the image needs no HTTP client;
- the gate: a FIFO bound at :data:`GATE_DIR`; the :func:`gate_probe` among the
  sandbox's probes (``read`` from it; needs the image's ``/bin/sh``, as exec
  probes do) holds the sandbox's probe sequence until the host opens the gate;
- then the plan's ``then``: open the gate, stop the program (SIGTERM), open the
  gate once the program has exited by itself, nothing, or wait for the user
  (Enter on the terminal, or SIGUSR1 to this process; the program exiting ends
  the wait too), then open the gate.

The controller finds the sandbox's processes in ``/proc`` (the sandbox's init and
program are the grandchildren of this process with namespace pids 1 and 2); it
never signals anything else.  Every thread and
helper it starts has ended when :meth:`RunController.finish` returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ocislim import scratch
from ocislim.sandbox.spec import Probe

GATE_DIR = "/.ocislim-ctl"
GATE_NAME = "gate"
HTTP_WAIT = 30.0  # how long HTTP probes wait for the server to accept, at most
_POLL = 0.02


@dataclass(frozen=True)
class HttpRequest:
    port: int
    method: str
    path: str

    def describe(self) -> str:
        return f"{self.method} http://127.0.0.1:{self.port}{self.path}"


@dataclass(frozen=True)
class HttpResult:
    """``status`` None: no HTTP answer; ``connected`` says whether the port accepted a
    TCP connection at all (a service that speaks another protocol does)."""

    request: HttpRequest
    status: int | None
    error: str | None = None
    connected: bool = False

    def __post_init__(self) -> None:
        if self.status is not None:  # an HTTP answer came over a connection
            object.__setattr__(self, "connected", True)

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.request.port,
            "method": self.request.method,
            "path": self.request.path,
            "status": self.status,
            "error": self.error,
            "connected": self.connected,
        }

    def answer(self) -> str:
        """What the port gave, for comparing runs and saying how they differ."""
        if self.status is not None:
            return f"status {self.status}"
        return "a connection but no HTTP answer" if self.connected else "no connection"


def gate_probe() -> Probe:
    """The probe that waits until the host opens the gate (see the module docstring)."""
    return Probe(command=f"read _ < {GATE_DIR}/{GATE_NAME}")


# What the controller does after the HTTP probes (if any).
AfterHttp = Literal["nothing", "open-gate", "stop-program", "open-gate-at-exit", "await-user"]
UserWait = Literal["enter", "signal"]


@dataclass(frozen=True)
class ControlPlan:
    """What the host does during one run: send ``http`` (waiting at most ``http_wait``
    seconds for the server to accept), then ``then``.  ``gate``: the sandbox's probes
    include the :func:`gate_probe`, so the gate must be mounted.  With ``await-user``:
    ``user_wait`` says what ends the wait, ``announce`` is shown when it starts, and
    ``open_first`` opens the gate once before it, or before ``open-gate`` (two gate
    probes: before and after the exec probes)."""

    http: tuple[HttpRequest, ...] = ()
    gate: bool = False
    then: AfterHttp = "nothing"
    http_wait: float = HTTP_WAIT
    user_wait: UserWait | None = None
    announce: str = ""
    open_first: bool = False

    def needed(self) -> bool:
        """Whether the run needs a controller at all."""
        return bool(self.http) or self.gate


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
        except OSError:
            continue
    return out


def _ns_pid(pid: int) -> int | None:
    """The pid of ``pid`` in its innermost pid namespace."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class _Found:
    init: int = 0
    program: int = 0


@dataclass
class RunController:
    """Drives one sandbox run from the host (see the module docstring).

    Use: ``mounts()`` goes into the run spec (with the gate probe among its probes
    when ``plan.gate``); ``start()`` right before the run, ``finish()`` right after
    it (also on error).  ``http_results`` and ``notes`` are complete after ``finish()``.
    """

    plan: ControlPlan
    say: Callable[[str], None] = lambda _: None  # shows ``plan.announce`` (e.g. a progress note)
    http_results: list[HttpResult] = field(default_factory=list, init=False)
    notes: list[str] = field(default_factory=list, init=False)
    _dir: Path | None = field(default=None, init=False)
    _gate_fd: int | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _found: _Found = field(default_factory=_Found, init=False)
    _mask: set[int | signal.Signals] | None = field(default=None, init=False)
    _wake: tuple[int, int, int] | None = field(default=None, init=False)  # r, w, previous

    def mounts(self) -> list[str]:
        if not self.plan.gate:
            return []
        if self._dir is None:
            self._dir = scratch.make_dir(tempfile.gettempdir(), "ocislim-ctl-")
            os.chmod(self._dir, 0o755)
            fifo = self._dir / GATE_NAME
            os.mkfifo(fifo, 0o666)
            # Held open read-write: opening never blocks, a line written stays
            # buffered until the probe reads it.
            self._gate_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        return [f"{self._dir}:{GATE_DIR}"]

    def start(self) -> None:
        """Call from the main thread, before any other thread starts.

        With ``signal``, SIGUSR1 is blocked in this thread (and so in every thread and
        process started after it) and taken by the controller's thread with
        sigtimedwait; should a thread that does not block it take it, the signal
        module's wakeup descriptor says so.  (A Python handler would run only when the
        main thread, blocked in the tracer's waitpid, next wakes.)"""
        if not self.plan.needed():
            return
        if self.plan.user_wait == "signal":
            signal.signal(signal.SIGUSR1, lambda *_: None)
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._wake = (r, w, signal.set_wakeup_fd(w, warn_on_full_buffer=False))
            self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        self._thread = threading.Thread(target=self._drive, name="ocislim-probes", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._mask is not None:
            # A SIGUSR1 still pending reaches the no-op handler, not the default action.
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
            self._mask = None
        # The no-op handler stays: a second SIGUSR1 must not end ocislim (the default
        # action); unlike SIG_IGN, a handler is reset for the programs exec'd later.
        if self._wake is not None:
            r, w, previous = self._wake
            signal.set_wakeup_fd(previous)
            os.close(r)
            os.close(w)
            self._wake = None
        if self._gate_fd is not None:
            os.close(self._gate_fd)
            self._gate_fd = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                (self._dir / GATE_NAME).unlink()
                self._dir.rmdir()
            scratch.release(self._dir)
            self._dir = None

    # -- the driving thread --------------------------------------------------------------

    def _drive(self) -> None:
        try:
            if not self._find_sandbox():
                return
            if self.plan.http:
                self._http()
            then = self.plan.then
            if then == "open-gate":
                if self.plan.open_first:
                    self._open_gate()
                self._open_gate()
            elif then == "stop-program":
                self._stop_program()
            elif then == "open-gate-at-exit":
                while _alive(self._found.program) and not self._stop.wait(0.05):
                    pass
                self._open_gate()
            elif then == "await-user":
                if self.plan.open_first:
                    self._open_gate()
                self._await_user()
                self._open_gate()
        except Exception as exc:  # never let the run hang on a controller failure
            self.notes.append(f"probe controller: {exc}")
            self._open_gate()

    def _find_sandbox(self) -> bool:
        me = os.getpid()
        deadline = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < deadline:
            for creator in _children(me):
                kids = {_ns_pid(k): k for k in _children(creator)}
                if 1 in kids and 2 in kids:
                    self._found = _Found(kids[1], kids[2])
                    return True
            time.sleep(_POLL)
        if not self._stop.is_set():
            self.notes.append("probe controller: the sandboxed program was not found")
        return False

    def _http(self) -> None:
        requests = [{"port": r.port, "method": r.method, "path": r.path} for r in self.plan.http]
        cmd = [
            sys.executable,
            "-m",
            "ocislim.sandbox.httpprobe",
            str(self._found.program),  # the init is not dumpable: its namespaces are closed
            json.dumps(requests),
            str(self.plan.http_wait),
        ]
        # The sandbox's tracer reaps every child of this process, so the helper's
        # exit status may be lost: its answer is the JSON on stdout.
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        try:
            answers = json.loads(proc.stdout)
        except ValueError:
            answers = None
        if not isinstance(answers, list) or len(answers) != len(self.plan.http):
            detail = proc.stderr.strip().splitlines()[-1:] or ["no answer"]
            self.notes.append(f"HTTP probes failed: {detail[0]}")
            answers = [{"status": None, "error": "probe helper failed"}] * len(self.plan.http)
        for request, answer in zip(self.plan.http, answers, strict=True):
            self.http_results.append(
                HttpResult(
                    request,
                    answer.get("status"),
                    answer.get("error"),
                    bool(answer.get("connected")),
                )
            )

    def _await_user(self) -> None:
        """Until Enter on our stdin (a terminal) or SIGUSR1, the program's exit, or the end."""
        if self.plan.announce:
            self.say(self.plan.announce)
        while not self._stop.is_set() and _alive(self._found.program):
            if self.plan.user_wait == "signal":
                if self._wake is not None and select.select([self._wake[0]], [], [], 0.1)[0]:
                    with contextlib.suppress(BlockingIOError):
                        if signal.SIGUSR1 in os.read(self._wake[0], 64):
                            return
                if signal.sigtimedwait({signal.SIGUSR1}, 0) is not None:
                    return
                continue
            ready, _, _ = select.select([0], [], [], 0.1)
            if ready:
                data = os.read(0, 4096)
                if not data or b"\n" in data or b"\r" in data:
                    return
        if not self._stop.is_set():
            self.notes.append("the program exited while waiting for the user")

    def _open_gate(self) -> None:
        if self._gate_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._gate_fd, b"go\n")

    def _stop_program(self) -> None:
        program = self._found.program
        if program and _alive(program) and _ns_pid(program) == 2:
            with contextlib.suppress(OSError):
                os.kill(program, signal.SIGTERM)
