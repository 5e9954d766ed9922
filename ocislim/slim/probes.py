"""What a build runs in the sandbox, when it stops, and what came out.

:class:`ProbePlan` turns the user's probing flags into sandbox probes plus HTTP
requests; :class:`RunController` carries one run out from the host side:

- HTTP probes are sent from a helper process (:mod:`ocislim.slim.httpprobe`) that
  joins the sandbox's user and network namespaces, so the program keeps its
  private network and the image needs no HTTP client;
- ``--continue-after`` decides when the program is stopped: ``exec`` after the
  exec probes, ``probe`` after the HTTP probes (too), ``timeout`` at the timeout,
  ``app-exit`` when it exits by itself.  When exec probes must wait for the host
  (HTTP probes first, or a stop later than the probes), a gate probe
  (``read`` from a FIFO bound at :data:`GATE_DIR`; needs the image's ``/bin/sh``,
  as exec probes do) holds the sandbox's probe sequence until the host opens it.

The controller finds the sandbox's processes in ``/proc`` (the sandbox's init is
the grandchild of this process with namespace pid 1, the program is the init's
child with namespace pid 2); it never signals anything else.  Every thread and
helper it starts has ended when :meth:`RunController.finish` returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocislim import scratch
from ocislim.errors import UsageError
from ocislim.sandbox import Probe

CONTINUE_AFTER = ("exec", "probe", "timeout", "app-exit")
GATE_DIR = "/.ocislim-ctl"
GATE_NAME = "gate"
DEFAULT_TIMEOUT = 60.0  # --continue-after timeout without --timeout
HTTP_WAIT = 30.0  # how long HTTP probes wait for the server to accept
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
    request: HttpRequest
    status: int | None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.request.port,
            "method": self.request.method,
            "path": self.request.path,
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True)
class ProbeOptions:
    """The probing flags as given (``http`` None: on when the image exposes ports)."""

    exec_commands: tuple[str, ...] = ()
    exec_files: tuple[Path, ...] = ()
    http: bool | None = None
    http_commands: tuple[str, ...] = ()
    http_ports: tuple[int, ...] = ()
    continue_after: str | None = None
    timeout: float | None = None


def parse_http_command(text: str) -> tuple[str, str]:
    """``METHOD:PATH`` (or just ``PATH``) into (method, path)."""
    method, sep, path = text.partition(":")
    if not sep:
        method, path = "GET", text
    method = method.strip().upper() or "GET"
    path = path.strip() or "/"
    if not method.isalpha() or not path.startswith("/"):
        raise UsageError(f"--http-probe-cmd {text!r}: expected METHOD:/PATH")
    return method, path


def exposed_tcp_ports(exposed: list[str]) -> list[int]:
    """TCP port numbers of an image's ExposedPorts (``8080/tcp``, ``53/udp``, ``80``)."""
    ports = []
    for item in exposed:
        number, _, proto = item.partition("/")
        if (proto or "tcp").lower() == "tcp" and number.isdigit():
            ports.append(int(number))
    return sorted(set(ports))


@dataclass(frozen=True)
class ProbePlan:
    """The resolved plan of a probing run (the same for the source and the slim image)."""

    exec_probes: tuple[Probe, ...]
    http: tuple[HttpRequest, ...]
    continue_after: str
    timeout: float | None
    gate: str | None  # "first", "last" or None: where the gate probe goes

    @classmethod
    def from_options(cls, options: ProbeOptions, exposed: list[str]) -> ProbePlan:
        probes = tuple(Probe(command=c) for c in options.exec_commands) + tuple(
            Probe(script=Path(f)) for f in options.exec_files
        )
        ports = list(options.http_ports) or exposed_tcp_ports(exposed)
        want_http = options.http if options.http is not None else bool(ports)
        if options.http and not ports:
            raise UsageError("--http-probe: the image exposes no TCP port; give --http-probe-ports")
        commands = [parse_http_command(c) for c in options.http_commands] or [("GET", "/")]
        http = (
            tuple(HttpRequest(p, m, path) for p in ports for m, path in commands)
            if want_http
            else ()
        )
        after = options.continue_after
        if after is None:
            after = (
                "exec"
                if probes
                else "probe"
                if http
                else "timeout"
                if options.timeout
                else "app-exit"
            )
        if after not in CONTINUE_AFTER:
            choices = ", ".join(CONTINUE_AFTER)
            raise UsageError(f"--continue-after {after!r}: choose one of {choices}")
        timeout = options.timeout
        if after == "timeout" and timeout is None:
            timeout = DEFAULT_TIMEOUT
        gate = None
        if probes:
            if after in ("timeout", "app-exit"):
                gate = "last"
            elif http:
                gate = "first"
        return cls(probes, http, after, timeout, gate)

    def sandbox_probes(self) -> tuple[Probe, ...]:
        if self.gate is None:
            return self.exec_probes
        wait = Probe(command=f"read _ < {GATE_DIR}/{GATE_NAME}")
        if self.gate == "first":
            return (wait, *self.exec_probes)
        return (*self.exec_probes, wait)

    def exec_codes(self, codes: tuple[int, ...]) -> tuple[int, ...]:
        """The exit codes of the user's exec probes, from all the sandbox's probe codes."""
        if self.gate == "first":
            return codes[1:]
        if self.gate == "last":
            return codes[: len(self.exec_probes)]
        return codes

    def needs_controller(self) -> bool:
        return bool(self.http) or self.gate is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "exec": [
                p.command if p.command is not None else f"file {p.script}" for p in self.exec_probes
            ],
            "http": [r.describe() for r in self.http],
            "continue_after": self.continue_after,
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class Outcome:
    """What one run gave: the program's exit code, each probe's result."""

    exit_code: int
    timed_out: bool
    exec_codes: tuple[int, ...]
    http: tuple[HttpResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "exec_exit_codes": list(self.exec_codes),
            "http": [h.to_json() for h in self.http],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Outcome:
        http = tuple(
            HttpResult(
                HttpRequest(int(h["port"]), str(h["method"]), str(h["path"])),
                h.get("status"),
                h.get("error"),
            )
            for h in obj.get("http", [])
        )
        return cls(
            int(obj["exit_code"]),
            bool(obj.get("timed_out", False)),
            tuple(int(c) for c in obj.get("exec_exit_codes", [])),
            http,
        )

    def differences(self, slim: Outcome, plan: ProbePlan) -> list[str]:
        """How ``slim`` (the slim image's run) differs from this (the source's) run."""
        out = []
        if self.exit_code != slim.exit_code:
            out.append(f"program exit code {self.exit_code} became {slim.exit_code}")
        if self.timed_out != slim.timed_out:
            out.append("timed out" if slim.timed_out else "no longer times out")
        for i, (a, b) in enumerate(zip(self.exec_codes, slim.exec_codes, strict=False)):
            if a != b:
                out.append(f"exec probe {plan.to_json()['exec'][i]!r}: exit code {a} became {b}")
        if len(self.exec_codes) != len(slim.exec_codes):
            out.append(f"{len(self.exec_codes)} exec probes ran, then {len(slim.exec_codes)}")
        for before, after in zip(self.http, slim.http, strict=False):
            if before.status != after.status:
                out.append(
                    f"HTTP probe {before.request.describe()}: status {before.status} became "
                    f"{after.status}" + (f" ({after.error})" if after.error else "")
                )
        return out


# --- host side of a run --------------------------------------------------------------


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

    Use: ``mounts()`` and ``plan.sandbox_probes()`` go into the run spec;
    ``start()`` right before the run, ``finish()`` right after it (also on error).
    """

    plan: ProbePlan
    http_results: list[HttpResult] = field(default_factory=list, init=False)
    notes: list[str] = field(default_factory=list, init=False)
    _dir: Path | None = field(default=None, init=False)
    _gate_fd: int | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _found: _Found = field(default_factory=_Found, init=False)

    def mounts(self) -> list[str]:
        if self.plan.gate is None:
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
        if not self.plan.needs_controller():
            return
        self._thread = threading.Thread(target=self._drive, name="ocislim-probes", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
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
            after = self.plan.continue_after
            if self.plan.gate == "first":
                self._open_gate()
            elif after in ("exec", "probe") and self.plan.http and not self.plan.exec_probes:
                self._stop_program()
            elif after == "app-exit" and self.plan.gate == "last":
                while _alive(self._found.program) and not self._stop.wait(0.05):
                    pass
                self._open_gate()
        except Exception as exc:  # never let the run hang on a controller failure
            self.notes.append(f"probe controller: {exc}")
            self._open_gate()

    def _find_sandbox(self) -> bool:
        me = os.getpid()
        deadline = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < deadline:
            for creator in _children(me):
                for init in _children(creator):
                    if _ns_pid(init) != 1:
                        continue
                    for child in _children(init):
                        if _ns_pid(child) == 2:
                            self._found = _Found(init, child)
                            return True
            time.sleep(_POLL)
        if not self._stop.is_set():
            self.notes.append("probe controller: the sandboxed program was not found")
        return False

    def _http(self) -> None:
        requests = [{"port": r.port, "method": r.method, "path": r.path} for r in self.plan.http]
        wait = min(HTTP_WAIT, self.plan.timeout) if self.plan.timeout else HTTP_WAIT
        cmd = [
            sys.executable,
            "-m",
            "ocislim.slim.httpprobe",
            str(self._found.init),
            json.dumps(requests),
            str(wait),
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
            self.http_results.append(HttpResult(request, answer.get("status"), answer.get("error")))

    def _open_gate(self) -> None:
        if self._gate_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._gate_fd, b"go\n")

    def _stop_program(self) -> None:
        program = self._found.program
        if program and _alive(program) and _ns_pid(program) == 2:
            with contextlib.suppress(OSError):
                os.kill(program, signal.SIGTERM)
