"""``--continue-after enter|signal`` plans, the exec channel's request rules and peer
check, the sandbox registry, and how exec commands' events are told apart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ocislim.errors import SandboxError, UsageError
from ocislim.sandbox import ExecRecord, Probe, RunSpec, SandboxLabel
from ocislim.sandbox.analysis import DirTree, analyse
from ocislim.sandbox.execchannel import command_for, peer_uid
from ocislim.sandbox.registry import entries, find, registered, runtime_dir
from ocislim.sandbox.tracer import ExecEvent, ExitEvent, PathFact, SpawnEvent, SyscallEvent
from ocislim.sandbox.tracing import split_execs
from ocislim.slim.probes import ProbeOptions, ProbePlan
from ocislim.slim.probing import exec_seeds


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def plan(exposed: list[str] | None = None, **kw: object) -> ProbePlan:
    return ProbePlan.from_options(ProbeOptions(**kw), exposed or [])  # type: ignore[arg-type]


# --- plans ------------------------------------------------------------------------------


def test_enter_holds_the_sandbox_with_a_gate_after_the_probes() -> None:
    p = plan(continue_after="enter")
    assert p.gate == "last" and p.timeout is None
    (gate,) = p.sandbox_probes()
    control = p.control("press Enter")
    assert control.then == "await-user" and control.user_wait == "enter"
    assert control.announce == "press Enter" and control.gate and not control.open_first
    probes = plan(["80/tcp"], exec_commands=("true",), continue_after="signal")
    assert probes.gate == "both"
    first, user, last = probes.sandbox_probes()
    assert first == last == gate and user == Probe(command="true")
    assert probes.exec_codes((0, 5, 0)) == (5,)
    assert probes.control().user_wait == "signal" and probes.control().open_first


def test_verification_never_waits_and_replays_exec_commands() -> None:
    waited = plan(continue_after="enter", exec_commands=("true",))
    replay = Probe(argv=("/usr/bin/tac", "/etc/hostname"))
    again = waited.for_verification((replay,))
    assert again.continue_after == "exec" and not again.waits_for_user()
    assert again.sandbox_probes()[:2] == (Probe(command="true"), replay)
    control = again.control()
    assert control.then == "open-gate" and control.user_wait is None
    assert again.exec_codes((0, 3, 0)) == (0, 3)
    assert again.to_json()["exec"] == ["true", "exec /usr/bin/tac /etc/hostname"]
    plain = plan(exec_commands=("true",))
    assert plain.for_verification(()) is plain
    assert plain.for_verification((replay,)).sandbox_probes() == (Probe(command="true"), replay)
    later = plan(continue_after="app-exit").for_verification((replay,))
    assert later.gate == "last" and later.exec_codes((4, 0)) == (4,)


# --- the exec request -----------------------------------------------------------------


def _spec() -> RunSpec:
    return RunSpec(argv=("app",), env=("PATH=/bin", "HOME=/root"), workdir="/app", uid=5, gid=6)


def test_a_request_gets_the_sandbox_environment_and_user(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"/etc/passwd": "web:x:33:34::/srv:/bin/sh\n"})
    command = command_for({"argv": ["ls"], "env": ["A=1", "PATH=/x"]}, _spec(), root)
    assert command["argv"] == ["ls"] and command["workdir"] == "/app"
    assert command["env"] == ["PATH=/x", "HOME=/root", "A=1"]
    assert (command["uid"], command["gid"], command["tty"]) == (5, 6, False)
    as_web = command_for(
        {"argv": ["id"], "user": "web", "workdir": "/", "tty": True}, _spec(), root
    )
    assert (as_web["uid"], as_web["gid"], as_web["workdir"], as_web["tty"]) == (33, 34, "/", True)
    assert "HOME=/srv" in as_web["env"]
    for bad in ({"argv": []}, {"argv": "ls"}, {"argv": ["ls"], "workdir": "rel"}):
        with pytest.raises(UsageError):
            command_for(bad, _spec(), root)
    with pytest.raises(UsageError):
        command_for({"argv": ["ls"], "env": ["NOVALUE"]}, _spec(), root)
    with pytest.raises(SandboxError):
        command_for({"argv": ["ls"], "user": "nobody-here"}, _spec(), root)


def test_peer_credentials_name_the_connecting_process() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        assert peer_uid(a) == os.geteuid()


# --- the registry ---------------------------------------------------------------------


def test_registry_lists_live_sandboxes_and_removes_dead_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    label = SandboxLabel("0123456789ab", "img.tar", "run")
    with registered(label, ("/bin/app", "-v")) as listener:
        assert listener.getsockname().endswith("0123456789ab.sock")
        (found,) = entries()
        assert (found.id, found.image, found.mode, found.pid) == (
            label.id,
            "img.tar",
            "run",
            os.getpid(),
        )
        assert found.command == ("/bin/app", "-v")
        assert find("0123").id == label.id
        assert os.stat(found.socket).st_mode & 0o777 == 0o600
    assert entries() == []
    # An owner killed with SIGKILL leaves its entries behind: the next listing removes them.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    directory = runtime_dir()
    info = {"id": "deadbeef0000", "image": "x", "command": [], "pid": int(dead.stdout),
            "start_time": 1, "started": "", "mode": "run"}  # fmt: skip
    (directory / "deadbeef0000.json").write_text(json.dumps(info))
    (directory / "deadbeef0000.sock").write_text("")
    assert entries() == []
    assert sorted(os.listdir(directory)) == []
    with pytest.raises(Exception, match="no running sandbox"):
        find("dead")


def test_a_runtime_directory_others_can_enter_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    directory = runtime_dir()
    assert directory == tmp_path / "ocislim"
    assert os.stat(directory).st_mode & 0o777 == 0o700
    os.chmod(directory, 0o755)
    with pytest.raises(SandboxError, match="not a private directory"):
        runtime_dir()


# --- exec commands' events ------------------------------------------------------------


def test_events_of_an_exec_command_and_its_children_are_its_own(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"/usr/bin/tac": "x", "/bin/app": "x", "/etc/hostname": "h"})
    creator, program, shell, child = 100, 200, 300, 400
    events = (
        SpawnEvent(1, creator, creator, program, program, 2, "fork", False),
        ExecEvent(2, program, program, ("/bin/app",), "/bin/app", ()),
        SpawnEvent(3, creator, creator, shell, shell, 5, "fork", False),
        ExecEvent(4, shell, shell, ("/bin/sh",), None, ()),
        SpawnEvent(5, shell, shell, child, child, 6, "fork", False),
        ExecEvent(6, child, child, ("tac", "/etc/hostname"), "/usr/bin/tac", ()),
        SyscallEvent(7, child, child, "openat", (PathFact("/etc/hostname", None),), 0, 3),
        ExitEvent(8, child, child, 0, None),
        SyscallEvent(9, program, program, "openat", (PathFact("/etc/hostname", None),), 0, 3),
    )
    program_events, by_exec = split_execs(events, [shell])
    assert [e.seq for e in program_events] == [1, 2, 9]
    assert [e.seq for e in by_exec[shell]] == [3, 4, 5, 6, 7, 8]
    report = analyse(by_exec[shell], DirTree(root))
    assert [f.path for f in report.files] == ["/etc/hostname", "/usr/bin/tac"]
    seeds = exec_seeds(ExecRecord(shell, ("/bin/sh",), True, 0), report)
    assert {s.path for s in seeds} == {"/etc/hostname", "/usr/bin/tac"}
    assert all(s.reason.source == "exec" and s.reason.detail == "/bin/sh" for s in seeds)
    assert {s.reason.process for s in seeds} == {"tac /etc/hostname"}


# --- docker-slim's words and several --keep-from reports --------------------------------


def test_docker_slim_flag_words_and_several_reports(tmp_path: Path) -> None:
    from ocislim.cli import build
    from ocislim.cliflags import options_from_flags

    args = [
        "img.tar", "-o", str(tmp_path / "out.tar"), "-q", "--show-clogs",
        "--preserve-path", "/etc/a", "--include-path", "/etc/b",
        "--preserve-path-file", "keep.txt", "--keep-from", "a.json", "--keep-from", "b.json",
        "--continue-after", "signal",
    ]  # fmt: skip
    ctx = build.make_context("build", list(args))
    options = options_from_flags(dict(ctx.params))
    assert options.keep.include_paths == ("/etc/a", "/etc/b")
    assert options.keep.include_path_files == (Path("keep.txt"),)
    assert options.run.show_output  # --show-clogs wins over -q
    assert options.keep_from_paths == (Path("a.json"), Path("b.json"))
    assert options.probes.continue_after == "signal"
    quiet = options_from_flags(dict(build.make_context("build", args[:4]).params))
    assert not quiet.run.show_output and quiet.keep_from_paths == ()
