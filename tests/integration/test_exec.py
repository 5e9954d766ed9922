"""Probing the way people do: ``--continue-after enter|signal``, ``ocislim exec`` into the
running sandbox (with a real terminal, driven through tmux), ``ocislim ps``.

The command the exec runs (``tac``) is one the program never runs: the slim image
can run it only because the exec's files were kept (reason ``exec``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from ocislim.sandbox.wire import receive
from tests.clirun import PLAIN_USER, chown_tree, plain_user_dir, plain_user_python, run_cli
from tests.images import fixture_image
from tests.integration.build_support import Podman, podman_fixture  # noqa: F401
from tests.integration.exec_support import (
    WAIT,
    as_user,
    background,
    ocislim_argv,
    sandboxes,
    tmux,
    wait_for_sandbox,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]


def _exec_reasons(report: dict[str, object], path: str) -> list[dict[str, object]]:
    kept = {k["path"]: k for k in report["kept"]}  # type: ignore[attr-defined]
    assert path in kept, f"{path} is not kept"
    return [r for r in kept[path]["reasons"] if r["source"] == "exec"]


def test_enter_with_an_exec_shell_keeps_what_the_shell_ran(tmp_path: Path, podman: Podman) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the slim image with root's podman")
    source = fixture_image("curl")
    out = tmp_path / "slim.tar"
    build_argv = ocislim_argv(
        "build", str(source), "-o", str(out), "--continue-after", "enter", "--", "/bin/sleep", "600"
    )
    with tmux(f"ocislim-test-{os.getpid()}") as term:
        term.window("build", build_argv)
        match = term.wait_for("build", r"ocislim exec -it ([0-9a-f]{12}) -- /bin/sh; press Enter")
        sid = match.group(1)
        assert any(e["id"] == sid and e["mode"] == "build" for e in sandboxes())
        term.window("shell", ocislim_argv("exec", "-it", sid, "--", "/bin/sh"))
        term.wait_for("shell", r"(?m)^#\s*$")  # root's prompt: the shell reads its terminal
        term.keys("shell", "tac --version | head -n 1; stty size", "Enter")
        term.wait_for("shell", r"tac \(GNU coreutils\)")
        term.wait_for("shell", r"\n50 200")  # the window size reached the command's terminal
        term.keys("shell", "sleep 300", "Enter")
        term.keys("shell", "C-c")  # Ctrl-C goes to the command, not to ocislim
        term.keys("shell", "echo status=$?", "Enter")
        term.wait_for("shell", r"status=130")
        term.keys("shell", "exit 5", "Enter")
        term.wait_for("shell", r"SHELL-EXIT=5")
        assert "BUILD-EXIT" not in term.screen("build")  # still waiting for Enter
        term.keys("build", "Enter")
        term.wait_for("build", r"BUILD-EXIT=(\d+)", timeout=WAIT * 2)
        screen = term.screen("build")
        assert "BUILD-EXIT=0" in screen, screen
        assert "not replayable" in screen  # the shell had a terminal
    assert all(e["id"] != sid for e in sandboxes())
    report = json.loads((tmp_path / "slim.report.json").read_text())
    reasons = _exec_reasons(report, "/usr/bin/tac")
    assert reasons and reasons[0]["detail"] == "/bin/sh"
    assert report["probes"]["plan"]["continue_after"] == "enter"
    tag = podman.load(out, "localhost/ocislim-test/exec-enter:slim")
    ran = podman.run(tag, "/etc/hostname", entrypoint="/usr/bin/tac")
    assert ran.returncode == 0, ran.stderr


def _raw_exec(sock_path: str) -> dict[str, object] | None:
    """Connect straight to a sandbox's socket and read its first answer: a peer it
    refuses is answered before it has sent anything."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.connect(sock_path)
        conn.settimeout(WAIT)
        answer, _ = receive(conn)
        return answer


def test_signal_and_exec_without_terminal_as_plain_user() -> None:
    python, pythonpath = plain_user_python()
    work = plain_user_dir("ocislim-exec-")
    kw = {"python": python, "pythonpath": pythonpath}
    try:
        shutil.copy(fixture_image("curl"), work / "src.tar")
        chown_tree(work)
        argv = ocislim_argv(
            "build", str(work / "src.tar"), "-o", str(work / "slim.tar"),
            "--continue-after", "signal", "--", "/bin/sleep", "600", **kw,
        )  # fmt: skip
        with background(as_user(argv, PLAIN_USER)) as proc:
            entry = wait_for_sandbox("build", PLAIN_USER, **kw)
            sid = str(entry["id"])
            shown = run_cli(
                "exec", sid, "--", "/usr/bin/tac", "/etc/hostname", user=PLAIN_USER, **kw
            )
            assert shown.code == 0, shown.stderr
            assert shown.stdout.strip() == "ocislim"
            failed = run_cli("exec", sid, "--", "/bin/sh", "-c", "exit 7", user=PLAIN_USER, **kw)
            assert failed.code == 7, failed.stderr
            # Another uid (root here) reaches the socket but its peer credentials are refused.
            answer = _raw_exec(str(entry["socket"]))
            assert answer is not None and "refused" in str(answer.get("error")), answer
            assert proc.poll() is None  # nothing so far ended probing
            os.kill(int(entry["pid"]), signal.SIGUSR1)
            _, stderr = proc.communicate(timeout=WAIT * 2)
            assert proc.returncode == 0, stderr
        assert all(e["id"] != sid for e in sandboxes(PLAIN_USER, **kw))
        report = json.loads((work / "slim.report.json").read_text())
        reasons = _exec_reasons(report, "/usr/bin/tac")
        assert reasons and reasons[0]["detail"] == "/usr/bin/tac /etc/hostname"
        # Verification replayed both exec commands, and they gave the same codes.
        assert report["probes"]["slim"]["exec_exit_codes"] == [0, 7]
        assert report["verification"]["passed"] is True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_continue_after_enter_needs_a_terminal(tmp_path: Path) -> None:
    argv = ocislim_argv(
        "build", str(fixture_image("curl")), "-o", str(tmp_path / "slim.tar"),
        "--continue-after", "enter",
    )  # fmt: skip
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=WAIT
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ocislim: error:")]
    assert len(errors) == 1 and "--continue-after signal" in errors[0], result.stderr
    assert not (tmp_path / "slim.report.json").exists()


def test_an_exec_into_a_trace_is_traced_apart_from_the_program(tmp_path: Path) -> None:
    attack = tmp_path / "ctl"
    attack.mkdir(mode=0o755)
    attack.chmod(0o755)
    wait = "while [ ! -e /ctl/go ]; do sleep 0.1; done"
    argv = ocislim_argv(
        "trace", "--json", str(fixture_image("curl")), "--mount", f"{attack}:/ctl:ro",
        "--", "/bin/sh", "-c", wait,
    )  # fmt: skip
    with background(argv) as proc:
        entry = wait_for_sandbox("trace")
        script = "tac passwd >/dev/null; cat hostname; echo $X"
        shown = run_cli("exec", "-e", "X=1", "-w", "/etc", str(entry["id"]), "--",
                        "/bin/sh", "-c", script)  # fmt: skip
        assert shown.code == 0, shown.stderr
        assert shown.stdout.split() == ["ocislim", "1"]
        missing = run_cli("exec", str(entry["id"]), "--", "/no/such/program")
        assert missing.code == 127 and "/no/such/program" in missing.error  # as docker exec
        (attack / "go").write_text("")
        stdout, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, stderr
    trace = json.loads(stdout)
    records = {tuple(r["command"]): r for r in trace["exec"]}
    assert records[("/no/such/program",)]["exit_code"] == 127
    record = records[("/bin/sh", "-c", "tac passwd >/dev/null; cat hostname; echo $X")]
    assert record["exit_code"] == 0 and record["tty"] is False
    exec_files = {f["path"] for f in record["files"]}
    assert {"/usr/bin/tac", "/etc/passwd"} <= exec_files  # (/etc/hostname is the runtime's)
    program_files = {f["path"] for f in trace["files"]}
    assert "/usr/bin/tac" not in program_files  # the program never ran it
