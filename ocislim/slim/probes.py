"""What a build runs in the sandbox, when it stops, and what came out.

:class:`ProbePlan` turns the user's probing flags into sandbox probes, HTTP
requests, and (:meth:`ProbePlan.control`) what the sandbox's host-side
controller (:class:`ocislim.sandbox.RunController`) does during the run:

- ``--continue-after`` decides when the program is stopped: ``exec`` after the
  exec probes, ``probe`` after the HTTP probes (too), ``timeout`` at the timeout,
  ``app-exit`` when it exits by itself, ``enter`` when the user presses Enter on
  the terminal (meanwhile they can ``ocislim exec`` into the sandbox), ``signal``
  when ocislim receives SIGUSR1.  When exec probes must wait for the host
  (HTTP probes first, or a stop later than the probes), the sandbox's gate probe
  (:func:`ocislim.sandbox.gate_probe`) holds them until the controller opens it;
  ``enter`` and ``signal`` hold the sandbox with a gate probe after the exec probes
  (and one before them too when there are HTTP probes).

:class:`Outcome` is what one run gave, compared between the source and the slim image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocislim.errors import UsageError
from ocislim.sandbox import (
    HTTP_WAIT,
    AfterHttp,
    ControlPlan,
    HttpRequest,
    HttpResult,
    Probe,
    UserWait,
    gate_probe,
)

CONTINUE_AFTER = ("exec", "probe", "timeout", "app-exit", "enter", "signal")
USER_WAITS = ("enter", "signal")  # the user decides when probing is over
DEFAULT_TIMEOUT = 60.0  # --continue-after timeout without --timeout
# Exit codes of a program ocislim stopped: SIGTERM, or SIGKILL after the grace time.
STOP_CODES = frozenset({128 + 15, 128 + 9})


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
    gate: str | None  # "first", "last", "both" or None: where the gate probes go
    replays: tuple[Probe, ...] = ()  # recorded ``ocislim exec`` commands, after the probes

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
        if after in USER_WAITS:
            gate = "both" if probes and http else "last"
        elif probes:
            if after in ("timeout", "app-exit"):
                gate = "last"
            elif http:
                gate = "first"
        return cls(probes, http, after, timeout, gate)

    def sandbox_probes(self) -> tuple[Probe, ...]:
        probes = (*self.exec_probes, *self.replays)
        if self.gate is None:
            return probes
        wait = gate_probe()
        if self.gate == "first":
            return (wait, *probes)
        if self.gate == "both":
            return (wait, *probes, wait)
        return (*probes, wait)

    def exec_codes(self, codes: tuple[int, ...]) -> tuple[int, ...]:
        """The exit codes of the user's exec probes and the replays, from all the
        sandbox's probe codes."""
        count = len(self.exec_probes) + len(self.replays)
        if self.gate in ("first", "both"):
            return codes[1 : 1 + count]
        return codes[:count]

    def waits_for_user(self) -> bool:
        return self.continue_after in USER_WAITS

    def for_verification(self, replays: tuple[Probe, ...]) -> ProbePlan:
        """The plan verification runs: no waiting for the user (the program is stopped
        after the probes, as with ``exec``), and the recorded exec commands replayed."""
        if not self.waits_for_user() and not replays:
            return self
        if self.waits_for_user():
            # The gate probes stay; the controller opens them at once (see control()).
            return ProbePlan(self.exec_probes, self.http, "exec", self.timeout, self.gate, replays)
        after, gate = self.continue_after, self.gate
        if gate is None and replays and after in ("timeout", "app-exit"):
            gate = "last"
        elif gate is None and replays and self.http:
            gate = "first"
        return ProbePlan(self.exec_probes, self.http, after, self.timeout, gate, replays)

    def waits_for_exit(self) -> bool:
        """Nothing but the program's own exit ends a run of this plan."""
        return (
            self.continue_after == "app-exit"
            and not self.exec_probes
            and not self.http
            and self.timeout is None
        )

    def needs_controller(self) -> bool:
        return self.control().needed()

    def control(self, announce: str = "") -> ControlPlan:
        """What the host-side controller does during a run of this plan (``announce``:
        what to tell the user when ``enter`` or ``signal`` waits for them)."""
        after = self.continue_after
        then: AfterHttp
        probes = self.exec_probes or self.replays
        if after in USER_WAITS:
            wait = min(HTTP_WAIT, self.timeout) if self.timeout else HTTP_WAIT
            user: UserWait = "enter" if after == "enter" else "signal"
            return ControlPlan(
                self.http, True, "await-user", wait, user, announce, self.gate == "both"
            )
        if after == "exec" and self.gate in ("last", "both"):
            # A plan that waited for the user, run again: no waiting this time.
            both = self.gate == "both"
            return ControlPlan(self.http, True, "open-gate", HTTP_WAIT, None, "", both)
        if self.gate == "first":
            then = "open-gate"  # the exec probes run after the HTTP probes
        elif after in ("exec", "probe") and self.http and not probes:
            then = "stop-program"
        elif after == "app-exit" and self.gate == "last":
            then = "open-gate-at-exit"
        else:
            then = "nothing"
        wait = min(HTTP_WAIT, self.timeout) if self.timeout else HTTP_WAIT
        return ControlPlan(self.http, self.gate is not None, then, wait)

    def to_json(self) -> dict[str, Any]:
        return {
            "exec": [_describe(p) for p in (*self.exec_probes, *self.replays)],
            "http": [r.describe() for r in self.http],
            "continue_after": self.continue_after,
            "timeout": self.timeout,
        }


def _describe(probe: Probe) -> str:
    if probe.argv is not None:
        return "exec " + " ".join(probe.argv)
    return probe.command if probe.command is not None else f"file {probe.script}"


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
                bool(h.get("connected")),
            )
            for h in obj.get("http", [])
        )
        return cls(
            int(obj["exit_code"]),
            bool(obj.get("timed_out", False)),
            tuple(int(c) for c in obj.get("exec_exit_codes", [])),
            http,
        )

    def stopped(self, plan: ProbePlan) -> bool:
        """The program was stopped by ocislim (SIGTERM, or SIGKILL after the grace time)
        when the plan ends it at the probes or the timeout."""
        if self.timed_out and plan.continue_after == "timeout":
            return True
        return plan.continue_after != "app-exit" and self.exit_code in STOP_CODES

    def ended_well(self, plan: ProbePlan) -> bool:
        """Exited 0 by itself, or stopped by ocislim: the same outcome, whichever came
        first (the result must not depend on timing)."""
        return self.exit_code == 0 or self.stopped(plan)

    def differences(self, slim: Outcome, plan: ProbePlan) -> list[str]:
        """How ``slim`` (the slim image's run) differs from this (the source's) run.

        "Stopped by ocislim at the end of the probes (or the timeout)" and "exited 0 by
        itself" count as the same outcome."""
        out = []
        same_end = self.ended_well(plan) and slim.ended_well(plan)
        if self.exit_code != slim.exit_code and not same_end:
            out.append(f"program exit code {self.exit_code} became {slim.exit_code}")
        if self.timed_out != slim.timed_out and not same_end:
            out.append("timed out" if slim.timed_out else "no longer times out")
        for i, (a, b) in enumerate(zip(self.exec_codes, slim.exec_codes, strict=False)):
            if a != b:
                out.append(f"exec probe {plan.to_json()['exec'][i]!r}: exit code {a} became {b}")
        if len(self.exec_codes) != len(slim.exec_codes):
            out.append(f"{len(self.exec_codes)} exec probes ran, then {len(slim.exec_codes)}")
        for before, after in zip(self.http, slim.http, strict=False):
            if before.answer() != after.answer():
                out.append(
                    f"HTTP probe {before.request.describe()}: {before.answer()} became "
                    f"{after.answer()}" + (f" ({after.error})" if after.error else "")
                )
        return out
