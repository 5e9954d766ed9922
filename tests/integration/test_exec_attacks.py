"""The exec channel stays the starter's: nothing inside reaches it, no other uid gets in,
and a command let in holds nothing of the host but the descriptors it was given.

Run as root and as the plain user ``tester`` where the attack is the sandboxed
program's; the other-uid attacks need both users.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ocislim.sandbox.launcher import DEFAULT_CAPABILITIES
from tests.clirun import (
    PLAIN_USER,
    REPO,
    chown_tree,
    plain_user_dir,
    plain_user_python,
    run_cli,
)
from tests.images import fixture_image
from tests.integration.exec_support import (
    WAIT,
    as_user,
    background,
    ocislim_argv,
    wait_for_sandbox,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

# Waits for /attack/go (written by the test once the sandbox is registered), then tries
# every host path named in it: the socket, the runtime directory, /proc/<ocislim>/fd.
PROGRAM = (
    "while [ ! -s /attack/go ]; do sleep 0.1; done; "
    "for p in $(cat /attack/go); do "
    '  [ -e "$p" ] && echo REACHED $p; '
    '  ls "$p" >/dev/null 2>&1 && echo LISTED $p; '
    "done; "
    "find / -path /proc -prune -o -type s -print 2>/dev/null | sed 's/^/SOCKET /'; "
    "echo END"
)


def _users() -> list[str | None]:
    return [None, PLAIN_USER]


@pytest.mark.parametrize("user", _users(), ids=["root", "plain"])
@pytest.mark.parametrize("network", ["none", "host"])
def test_the_program_cannot_reach_the_exec_socket(user: str | None, network: str) -> None:
    python, pythonpath = plain_user_python() if user else (None, REPO)
    kw = {"python": python, "pythonpath": pythonpath} if user else {}
    work = plain_user_dir("ocislim-exec-attack-")
    try:
        shutil.copy(fixture_image("curl"), work / "src.tar")
        (work / "attack").mkdir()
        chown_tree(work)
        argv = ocislim_argv(
            "run", str(work / "src.tar"), "--network", network,
            "--mount", f"{work / 'attack'}:/attack:ro", "--", "/bin/sh", "-c", PROGRAM, **kw,
        )  # fmt: skip
        with background(as_user(argv, user)) as proc:
            entry = wait_for_sandbox("run", user, **kw)
            sock = Path(str(entry["socket"]))
            targets = [sock, sock.parent, Path(f"/proc/{entry['pid']}/fd")]
            go = work / "attack" / "go"
            go.write_text(" ".join(map(str, targets)) + "\n")
            stdout, stderr = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, stderr
        assert "END" in stdout, stdout
        assert "REACHED" not in stdout and "LISTED" not in stdout, stdout
        assert sock.name not in stdout, stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _default_bounding_set() -> int:
    return sum(1 << cap for cap in DEFAULT_CAPABILITIES)


def test_an_exec_command_holds_only_its_descriptors_and_the_default_capabilities() -> None:
    source = fixture_image("curl")
    argv = ocislim_argv("run", str(source), "--", "/bin/sleep", "600")
    with background(argv):
        entry = wait_for_sandbox("run")
        sid = str(entry["id"])
        fds = run_cli("exec", sid, "--", "/bin/ls", "/proc/self/fd", timeout=WAIT)
        assert fds.code == 0, fds.stderr
        assert fds.stdout.split() == ["0", "1", "2", "3"]  # 3: the directory ls reads
        status = run_cli("exec", sid, "--", "/bin/cat", "/proc/self/status", timeout=WAIT)
        caps = dict(
            line.split(":\t", 1) for line in status.stdout.splitlines() if line.startswith("Cap")
        )
        assert int(caps["CapBnd"], 16) == _default_bounding_set()  # as the program's
        init = run_cli("exec", sid, "--", "/bin/ls", "/proc/1/fd", timeout=WAIT)
        assert init.code != 0 and init.stdout == ""  # the init is not dumpable


def test_another_uid_cannot_reach_roots_sandbox() -> None:
    python, pythonpath = plain_user_python()
    argv = ocislim_argv("run", str(fixture_image("curl")), "--", "/bin/sleep", "600")
    with background(argv):
        entry = wait_for_sandbox("run")
        sid = str(entry["id"])
        kw = {"python": python, "pythonpath": pythonpath}
        # Not listed for the other user, and exec by id finds nothing.
        listed = run_cli("ps", "--json", user=PLAIN_USER, **kw)
        assert sid not in listed.stdout
        refused = run_cli("exec", sid, "--", "/bin/true", user=PLAIN_USER, **kw)
        assert refused.code == 3 and "no running sandbox" in refused.error
        # Connecting straight to the socket fails: the runtime directory is root's, 0700.
        connect = (
            "import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); "
            f"s.connect({str(entry['socket'])!r})"
        )
        tried = subprocess.run(
            ["su", PLAIN_USER, "-s", "/bin/sh", "-c", f'{python} -c "{connect}"'],
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
        )
        assert tried.returncode != 0 and "PermissionError" in tried.stderr, tried.stderr
