"""Honest verification: a source run that did not work is an error, and the verdict does
not depend on whether the program exited by itself or was stopped after the probes."""

from __future__ import annotations

from pathlib import Path

from ocislim.sandbox import FileAccess, HttpRequest, HttpResult
from ocislim.slim.probes import Outcome, ProbeOptions, ProbePlan
from ocislim.slim.verify import missing_in_slim, source_failure, verify
from tests.synth import M
from tests.unit.slim_synth import tree_from


def plan(exposed: list[str] | None = None, **kw: object) -> ProbePlan:
    return ProbePlan.from_options(ProbeOptions(**kw), exposed or [])  # type: ignore[arg-type]


def test_a_program_that_cannot_start_is_an_error_never_a_pass() -> None:
    p = plan()
    assert source_failure(Outcome(127, False, ()), p) == (
        "the program exited 127 in the source image (a command was not found); nothing to verify"
    )
    assert "could not be executed" in (source_failure(Outcome(126, False, ()), p) or "")
    assert "failed in the source image (exit code 3)" in (
        source_failure(Outcome(3, False, ()), p) or ""
    )
    assert source_failure(Outcome(0, False, ()), p) is None


def test_a_failing_probe_in_the_source_is_an_error() -> None:
    p = plan(exec_commands=("check",))
    assert source_failure(Outcome(143, False, (0,)), p) is None  # stopped after the probe
    line = source_failure(Outcome(143, False, (127,)), p)
    assert line == "exec probe 'check' exited 127 in the source image (a command was not found)"
    assert "failed" in (source_failure(Outcome(0, False, (1,)), p) or "")
    http = plan(["80/tcp"])
    refused = HttpResult(HttpRequest(80, "GET", "/"), None, "refused")
    assert "got no answer" in (source_failure(Outcome(143, False, (), (refused,)), http) or "")
    other = HttpResult(HttpRequest(80, "GET", "/"), None, "not HTTP", connected=True)
    assert source_failure(Outcome(143, False, (), (other,)), http) is None  # e.g. redis


def test_verify_runs_no_round_when_the_source_failed() -> None:
    calls: list[Path] = []

    def run_probes(root: Path) -> tuple[Outcome, list[object]]:
        calls.append(root)
        return Outcome(127, False, ()), []

    class Slim:
        root = Path("/nowhere")

    result = verify(
        Outcome(127, False, ()), plan(), Slim(), None, lambda p: True, lambda s: [],  # type: ignore[arg-type]
        run_probes, 3,  # type: ignore[arg-type]
    )  # fmt: skip
    assert result.passed is False and result.rounds == () and calls == []
    assert "nothing to verify" in result.failure()


def test_stopped_by_ocislim_and_exited_zero_are_the_same_outcome() -> None:
    p = plan(exec_commands=("check",))  # continue-after exec: stopped after the probe
    stopped, exited = Outcome(143, False, (0,)), Outcome(0, False, (0,))
    assert stopped.differences(exited, p) == []
    assert exited.differences(stopped, p) == []
    assert exited.differences(Outcome(1, False, (0,)), p) == ["program exit code 0 became 1"]
    at_exit = plan()  # app-exit: ocislim stops nothing, 143 is the program's own
    assert exited.differences(stopped, at_exit) == ["program exit code 0 became 143"]
    timeout = plan(timeout=5.0, continue_after="timeout")
    assert Outcome(143, True, ()).differences(Outcome(0, False, ()), timeout) == []


def test_a_plan_with_nothing_to_end_it_waits_for_the_program() -> None:
    assert plan().waits_for_exit()
    assert not plan(timeout=3.0).waits_for_exit()
    assert not plan(["8080/tcp"]).waits_for_exit()
    assert not plan(exec_commands=("x",)).waits_for_exit()


def test_a_failed_mkdir_in_a_dropped_directory_names_that_directory() -> None:
    tree = tree_from([M("var/lib/nginx", "dir"), M("etc/x", data=b"x")])
    misses = [
        FileAccess("/var/lib/nginx/body", ("create",)),  # mkdir failed: its parent was dropped
        FileAccess("/var/lib/nginx/proxy", ("stat",)),  # only looked for: not a reason
        FileAccess("/etc/x", ("read",)),
    ]
    assert missing_in_slim(misses, tree, lambda p: p == "/etc/x") == ["/var/lib/nginx"]
    assert missing_in_slim(misses, tree, lambda p: True) == []
