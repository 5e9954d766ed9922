"""Probe plans (what runs, when it stops), outcomes and their comparison; traced files per
program from fabricated events; seccomp profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocislim.errors import UsageError
from ocislim.sandbox import HTTP_WAIT, ControlPlan, HttpRequest, HttpResult, Probe
from ocislim.sandbox.analysis import BEFORE_EXEC, analyse, split_by_program
from ocislim.sandbox.control import GATE_DIR
from ocislim.sandbox.tracer import ExecEvent, PathFact, SpawnEvent, SyscallEvent
from ocislim.slim.probes import (
    DEFAULT_TIMEOUT,
    Outcome,
    ProbeOptions,
    ProbePlan,
    exposed_tcp_ports,
    parse_http_command,
)
from ocislim.slim.seccomp import RUNTIME_SYSCALLS, profile
from ocislim.slim.traced import trace_seeds


def plan(exposed: list[str] | None = None, **kw: object) -> ProbePlan:
    return ProbePlan.from_options(ProbeOptions(**kw), exposed or [])  # type: ignore[arg-type]


def test_default_is_to_run_the_program_until_it_exits() -> None:
    p = plan()
    assert (p.continue_after, p.http, p.exec_probes, p.gate, p.timeout) == (
        "app-exit",
        (),
        (),
        None,
        None,
    )
    assert not p.needs_controller()
    assert plan(timeout=5.0).continue_after == "timeout"


def test_exec_probes_stop_the_program_after_them() -> None:
    p = plan(exec_commands=("ls /",), exec_files=(Path("/tmp/p.sh"),))
    assert p.continue_after == "exec"
    assert p.sandbox_probes() == (Probe(command="ls /"), Probe(script=Path("/tmp/p.sh")))
    assert p.exec_codes((0, 3)) == (0, 3)


def test_exposed_ports_turn_http_probes_on_unless_switched_off() -> None:
    p = plan(["8080/tcp", "53/udp", "9090"], http_commands=("post:/api", "/health"))
    assert p.continue_after == "probe"
    assert [r.describe() for r in p.http] == [
        "POST http://127.0.0.1:8080/api",
        "GET http://127.0.0.1:8080/health",
        "POST http://127.0.0.1:9090/api",
        "GET http://127.0.0.1:9090/health",
    ]
    assert plan(["8080/tcp"], http=False).http == ()
    assert plan([], http_ports=(3000,)).http == (HttpRequest(3000, "GET", "/"),)
    with pytest.raises(UsageError):
        plan([], http=True)
    with pytest.raises(UsageError):
        parse_http_command("GET:no-slash")
    assert exposed_tcp_ports(["80", "443/tcp", "53/udp", "x/tcp"]) == [80, 443]


def test_a_gate_orders_exec_probes_around_the_host_side() -> None:
    both = plan(["8080/tcp"], exec_commands=("true",))
    assert both.gate == "first"
    gate, user = both.sandbox_probes()
    assert user == Probe(command="true")
    assert gate.command is not None and GATE_DIR in gate.command
    assert both.exec_codes((0, 7)) == (7,)
    later = plan(exec_commands=("true",), continue_after="timeout")
    assert later.gate == "last" and later.timeout == DEFAULT_TIMEOUT
    assert later.exec_codes((7, 143)) == (7,)
    assert plan(exec_commands=("true",), continue_after="app-exit").gate == "last"
    with pytest.raises(UsageError):
        plan(continue_after="never")


def test_the_plan_tells_the_sandbox_controller_what_to_do_after_http() -> None:
    both = plan(["8080/tcp"], exec_commands=("true",), timeout=5.0)
    assert both.control() == ControlPlan(both.http, True, "open-gate", 5.0)
    http_only = plan(["8080/tcp"])
    assert (http_only.control().then, http_only.control().gate) == ("stop-program", False)
    assert http_only.control().http_wait == HTTP_WAIT
    at_exit = plan(exec_commands=("true",), continue_after="app-exit")
    assert at_exit.control() == ControlPlan((), True, "open-gate-at-exit")
    assert plan(exec_commands=("true",), continue_after="timeout").control().then == "nothing"
    assert plan(["8080/tcp"], continue_after="timeout").control().then == "nothing"
    assert not plan().control().needed() and at_exit.control().needed()


def test_outcome_differences_and_json() -> None:
    p = plan(["80/tcp"], exec_commands=("check",))
    source = Outcome(143, False, (0,), (HttpResult(HttpRequest(80, "GET", "/"), 200),))
    same = Outcome.from_json(source.to_json())
    assert same == source
    assert source.differences(same, p) == []
    slim = Outcome(1, True, (2,), (HttpResult(HttpRequest(80, "GET", "/"), None, "refused"),))
    assert source.differences(slim, p) == [
        "program exit code 143 became 1",
        "timed out",
        "exec probe 'check': exit code 0 became 2",
        "HTTP probe GET http://127.0.0.1:80/: status 200 became no connection (refused)",
    ]


def test_a_service_of_another_protocol_is_compared_by_its_connection() -> None:
    p = plan(["6379/tcp"])
    request = HttpRequest(6379, "GET", "/")
    source = Outcome(143, False, (), (HttpResult(request, None, "not HTTP", connected=True),))
    assert Outcome.from_json(source.to_json()) == source
    assert source.differences(Outcome.from_json(source.to_json()), p) == []
    slim = Outcome(143, False, (), (HttpResult(request, None, "refused"),))
    assert source.differences(slim, p) == [
        "HTTP probe GET http://127.0.0.1:6379/: a connection but no HTTP answer became "
        "no connection (refused)"
    ]


# --- traced files per program -----------------------------------------------------------


class FakeTree:
    """A TreeView over a dict: path -> kind, symlinks in ``links``."""

    def __init__(self, kinds: dict[str, str], links: dict[str, str]) -> None:
        self.kinds, self.links = kinds, links

    def kind(self, path: str) -> str | None:
        return self.kinds.get(path)

    def readlink(self, path: str) -> str:
        return self.links[path]


TREE = FakeTree(
    {
        "/bin": "dir",
        "/bin/sh": "symlink",
        "/bin/dash": "file",
        "/etc": "dir",
        "/etc/app.conf": "file",
        "/usr": "dir",
        "/usr/bin": "dir",
        "/usr/bin/app": "file",
    },
    {"/bin/sh": "dash"},
)


def events() -> list[object]:
    return [
        SpawnEvent(1, 10, 10, 11, 11, 2, "fork", False),
        SyscallEvent(2, 11, 11, "execve", (PathFact("/bin/sh", None),), None, 0),
        ExecEvent(2, 11, 11, ("/bin/sh", "-c", "app"), "/bin/dash", ()),
        SyscallEvent(3, 11, 11, "openat", (PathFact("app.conf", "/etc"),), 0, 3),
        SpawnEvent(4, 11, 11, 12, 12, 3, "fork", False),
        SyscallEvent(5, 12, 12, "openat", (PathFact("/etc/app.conf", None),), 0, 4),
        ExecEvent(6, 12, 12, ("app",), "/usr/bin/app", ()),
        SyscallEvent(7, 12, 12, "openat", (PathFact("/etc/app.conf", None),), 0, 3),
        SyscallEvent(8, 12, 12, "openat", (PathFact("/etc/missing", None),), 0, -2),
    ]


def test_events_are_split_by_the_program_running_at_the_time() -> None:
    groups = split_by_program(events())  # type: ignore[arg-type]
    assert sorted(groups) == [BEFORE_EXEC, "/bin/sh -c app", "app"]
    assert len(groups["/bin/sh -c app"]) == 3  # its exec, its open, the fork child's open
    assert len(groups[BEFORE_EXEC]) == 1  # the execve call, made by the sandbox's child


def test_each_traced_file_names_the_programs_and_accesses() -> None:
    report = analyse(events(), TREE, ())  # type: ignore[arg-type]
    files = report.files_by_program()
    assert sorted(files) == ["/bin/dash", "/bin/sh", "/etc/app.conf", "/usr/bin/app"]
    assert [(label, a.access, a.kind) for label, a in files["/bin/sh"]] == [
        (BEFORE_EXEC, ("read",), "symlink")
    ]
    programs = [label for label, _ in files["/etc/app.conf"]]
    assert programs == ["/bin/sh -c app", "app"]
    seeds = trace_seeds(report)
    conf = [s for s in seeds if s.path == "/etc/app.conf"]
    assert [s.reason.process for s in conf] == ["/bin/sh -c app", "app"]
    assert all(s.reason.access == ("read",) and not s.follow for s in conf)
    exe = next(s for s in seeds if s.path == "/usr/bin/app")
    assert exe.reason.access == ("exec",)


# --- seccomp ----------------------------------------------------------------------------


def test_seccomp_profile_allows_observed_and_runtime_calls_only() -> None:
    data = profile(["read", "openat", "getrandom", "unknown_999", ""], "x86_64")
    assert data["defaultAction"] == "SCMP_ACT_ERRNO"
    assert data["architectures"][0] == "SCMP_ARCH_X86_64"
    (rule,) = data["syscalls"]
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert rule["names"] == sorted(rule["names"])
    assert "getrandom" in rule["names"] and "execve" in rule["names"]
    assert set(rule["names"]) == {"getrandom", *RUNTIME_SYSCALLS}
    assert "mount" not in rule["names"]
