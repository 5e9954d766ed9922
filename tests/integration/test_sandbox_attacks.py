"""A hostile program in the sandbox: nothing it does reaches the host or decides a result.

Each test runs ``tests/integration/attack.c`` (compiled with ``gcc -static`` and
bound read-only into the demo image) through the real CLI, once as root and once
as the plain user ``tester``, and checks what must be unchanged on the host: the
input archive's hash, a file given as ocislim's stdout, the reported exit code,
the id map of a sandbox process as the host sees it, host ``/proc/sys`` values.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clirun import PLAIN_USER, REPO, CliResult, plain_user_dir, plain_user_python, run_cli
from tests.images import DEMO_IMAGE
from tests.integration.sandbox_support import leftovers, new_token
from tests.tools import require_tool

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

ATTACK_SOURCE = Path(__file__).with_name("attack.c")
HOST_SYSCTLS = ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/overcommit_memory")


@dataclass(frozen=True)
class Sandbox:
    """Where one user's attacks run: the attack binary, a private copy of the image."""

    user: str | None  # None: root, the test's own user
    python: str
    pythonpath: Path
    attack: Path
    archive: Path
    workdir: Path

    def cli(self, *args: str, timeout: float = 300) -> CliResult:
        return run_cli(
            *args, python=self.python, user=self.user, pythonpath=self.pythonpath, timeout=timeout
        )

    def argv(self, *args: str) -> list[str]:
        """``ocislim ARGS`` as a command line (through ``su`` for the plain user)."""
        cmd = [self.python, "-m", "ocislim", *args]
        env = ["env", f"PYTHONPATH={self.pythonpath}"]
        if self.user is None:
            return [*env, *cmd]
        return ["su", self.user, "-s", "/bin/sh", "-c", shlex.join([*env, *cmd])]

    def attack_args(self, command: str, *mode: str, extra: tuple[str, ...] = ()) -> list[str]:
        return [
            command, str(self.archive), "--mount", f"{self.attack}:/attack:ro", *extra,
            "--", "/attack", *mode,
        ]  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _report(stderr: str, mode: str) -> dict[str, int]:
    """The attack's ``MODE key=value ...`` line as numbers."""
    lines = [line for line in stderr.splitlines() if line.startswith(mode + " ")]
    assert lines, f"the attack printed no report:\n{stderr}"
    pairs = (item.partition("=") for item in lines[-1].split()[1:])
    return {key: int(value) for key, _, value in pairs}


@pytest.fixture(scope="module", params=["root", "tester"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    gcc = require_tool("gcc")
    if request.param == "root":
        if os.geteuid() != 0:
            pytest.skip("the root variant runs as root")
        base = Path(tempfile.mkdtemp(prefix="ocislim-attack-"))
        os.chmod(base, 0o700)  # the sandbox's root must not need to reach it
        user, python, source = None, sys.executable, REPO
    else:
        python, source = plain_user_python()
        base = plain_user_dir("ocislim-attack-")
        user = PLAIN_USER
    try:
        attack = base / "attack"
        subprocess.run([gcc, "-static", "-O1", "-o", str(attack), str(ATTACK_SOURCE)], check=True)
        archive = base / "demo.oci.tar"
        shutil.copyfile(DEMO_IMAGE, archive)
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (attack, archive):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        yield Sandbox(user, python, source, attack, archive, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def token() -> Iterator[str]:
    value = new_token()
    yield value
    assert leftovers(value) == [], "a sandboxed process outlived its run"


@pytest.mark.parametrize("command", ["run", "trace"])
def test_no_host_descriptor_is_reachable(sandbox: Sandbox, command: str, token: str) -> None:
    """Finding 1: the program wrote the input archive through /proc/1/fd/3."""
    before = _digest(sandbox.archive)
    result = sandbox.cli(*sandbox.attack_args(command, "fds", token))
    assert result.code == 0, result.stderr
    report = _report(result.stderr, "fds")
    assert report["open"] == 0  # nothing beyond 0, 1, 2 crossed
    assert report["wrote"] == 0
    assert _digest(sandbox.archive) == before


def test_a_file_given_as_stdout_is_not_reachable(sandbox: Sandbox, token: str) -> None:
    """``trace --json > FILE``: the program's output goes to stderr, FILE is ocislim's."""
    out = sandbox.workdir / "report.json"
    with out.open("wb") as fh:
        if sandbox.user is not None:
            entry = pwd.getpwnam(sandbox.user)
            os.fchown(fh.fileno(), entry.pw_uid, entry.pw_gid)
        argv = sandbox.argv(*sandbox.attack_args("trace", "fds", token, extra=("--json", "-q")))
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.PIPE, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "PWNED" not in text
    assert json.loads(text)["exit_code"] == 0
    assert _report(proc.stderr, "fds")["wrote"] == 0


@pytest.mark.parametrize("command", ["run", "trace"])
def test_forged_results_do_not_win(sandbox: Sandbox, command: str, token: str) -> None:
    """Finding 2: a forged "done" line on the status pipe made ``run`` exit 0."""
    result = sandbox.cli(*sandbox.attack_args(command, "forge", token))
    assert result.code == 42, result.stderr
    assert _report(result.stderr, "forge")["wrote"] == 0


def test_forged_trace_report_does_not_win(sandbox: Sandbox, token: str) -> None:
    result = sandbox.cli(*sandbox.attack_args("trace", "forge", token, extra=("--json", "-q")))
    assert result.code == 42, result.stderr
    # The forged line went to the program's stdout (stderr with --json), not the report.
    assert json.loads(result.stdout)["exit_code"] == 42


def test_other_processes_cannot_be_traced_read_or_killed(sandbox: Sandbox, token: str) -> None:
    result = sandbox.cli(*sandbox.attack_args("run", "procs", token))
    # 7 only if the init survived every signal (its death would kill the program).
    assert result.code == 7, result.stderr
    report = _report(result.stderr, "procs")
    assert report["visible"] == 1  # the init; ocislim's processes are not in the namespace
    for key in ("attached", "mem", "root", "cwd", "environ", "fds"):
        assert report[key] == 0, (key, report)


@pytest.mark.parametrize(
    ("command", "extra"), [("run", ()), ("trace", ()), ("run", ("--network", "host"))]
)
def test_kernel_settings_stay_out_of_reach(
    sandbox: Sandbox, command: str, extra: tuple[str, ...], token: str
) -> None:
    """Finding 3: core_pattern and overcommit_memory were writable; cgroup files too."""
    before = {path: Path(path).read_text() for path in HOST_SYSCTLS}
    result = sandbox.cli(*sandbox.attack_args(command, "kernel", token, extra=extra))
    assert result.code == 0, result.stderr
    report = _report(result.stderr, "kernel")
    assert report == {"sysctl": 0, "masked": 0, "mounts": 0, "userns": 0, "cgroup": 0}
    assert {path: Path(path).read_text() for path in HOST_SYSCTLS} == before


def test_id_map_seen_from_the_host(sandbox: Sandbox, token: str) -> None:
    """Root's sandbox maps to an unprivileged range, never ``0 0 4294967295``."""
    argv = sandbox.argv(*sandbox.attack_args("run", "sleep", token, extra=("--timeout", "60")))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    try:
        deadline = time.monotonic() + 60
        pids: list[int] = []
        while not pids and time.monotonic() < deadline:
            pids = [p for p in leftovers(token) if Path(f"/proc/{p}/exe").exists()]
            pids = [p for p in pids if _comm(p) == "attack"]
            time.sleep(0.05)
        assert pids, "the sandboxed program did not start"
        uid_map = Path(f"/proc/{pids[0]}/uid_map").read_text().split()
        host_uid = _status_ids(pids[0], "Uid:")
    finally:
        for pid in leftovers(token):
            if _comm(pid) == "attack":
                os.kill(pid, 9)
        proc.communicate(timeout=60)
    outside = [int(uid_map[i]) for i in range(1, len(uid_map), 3)]
    assert 0 not in outside, uid_map
    assert 0 not in host_uid
    if sandbox.user is None:
        assert [int(x) for x in uid_map[:1]] == [0] and outside[0] >= 65536
    else:
        assert pwd.getpwnam(sandbox.user).pw_uid in host_uid or outside[0] >= 65536


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _status_ids(pid: int, field: str) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return [int(x) for x in line.split()[1:]]
    return []


def test_in_memory_overlay_is_bounded(sandbox: Sandbox, token: str) -> None:
    result = sandbox.cli(*sandbox.attack_args("run", "fill", token, extra=("--tmpfs-size", "8m")))
    assert result.code == 0, result.stderr
    report = _report(result.stderr, "fill")
    assert report["errno"] == 28  # ENOSPC
    assert report["written"] <= 8 << 20
    assert "size limit" in result.stderr


def _terminal_session() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_terminal_cannot_be_taken_over(sandbox: Sandbox, token: str) -> None:
    """The program gets the terminal as stdin but not as its controlling terminal.

    The terminal is the controlling terminal of the session ocislim runs in, as a
    user's shell's would be: the program (its own session) cannot take it, so
    TIOCSTI cannot push input into it.
    """
    master, slave = pty.openpty()
    try:
        if sandbox.user is not None:
            os.chown(os.ttyname(slave), pwd.getpwnam(sandbox.user).pw_uid, -1)
        proc = subprocess.run(
            sandbox.argv(*sandbox.attack_args("run", "tty", token, extra=("-q",))),
            stdin=slave, capture_output=True, text=True, cwd="/",
            timeout=300, check=False, preexec_fn=_terminal_session,
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    report = _report(proc.stderr, "tty")
    assert report["isatty"] == 1
    assert report == {"isatty": 1, "sti": 0, "ctty": 0}
