"""Helpers for the ``ocislim exec`` / ``ps`` / ``--continue-after enter|signal`` tests:
a tmux server of the test's own (a real terminal), background ocislim processes,
waiting for ``ps`` to list a sandbox."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clirun import REPO, _descendants, run_cli
from tests.tools import require_tool

WAIT = 180.0  # seconds a step may take on a loaded machine (unpacking, tracing)


def ocislim_argv(*args: str, python: str = sys.executable, pythonpath: Path = REPO) -> list[str]:
    return ["env", f"PYTHONPATH={pythonpath}", python, "-m", "ocislim", *args]


def as_user(argv: list[str], user: str | None) -> list[str]:
    if user is None:
        return argv
    return ["su", user, "-s", "/bin/sh", "-c", shlex.join(argv)]


def sandboxes(user: str | None = None, **kw: object) -> list[dict[str, object]]:
    """``ocislim ps --json`` (as ``user``)."""
    result = run_cli("ps", "--json", user=user, timeout=60, **kw)  # type: ignore[arg-type]
    assert result.code == 0, result.stderr
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


def wait_for_sandbox(
    mode: str, user: str | None = None, known: frozenset[str] = frozenset(), **kw: object
) -> dict[str, object]:
    """The first sandbox of ``mode`` that ``ps`` lists and that is not in ``known``."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for entry in sandboxes(user, **kw):
            if entry["mode"] == mode and entry["id"] not in known:
                return entry
        time.sleep(0.5)
    pytest.fail(f"no {mode} sandbox appeared in 'ocislim ps'")


class Tmux:
    """A tmux server of this test only (its own socket), 200x50 windows."""

    def __init__(self, name: str) -> None:
        self.exe = require_tool("tmux")
        self.name = name

    def cmd(self, *args: str) -> str:
        out = subprocess.run(
            [self.exe, "-L", self.name, *args], capture_output=True, text=True, check=True
        )
        return out.stdout

    def window(self, name: str, argv: list[str]) -> None:
        """A new window running ``argv`` (then an idle shell, so the pane stays readable)."""
        line = shlex.join(argv) + f"; echo {name.upper()}-EXIT=$?; sleep 3600"
        if not self._started:
            self.cmd("new-session", "-d", "-s", "t", "-n", name, "-x", "200", "-y", "50", line)
            self._started = True
        else:
            self.cmd("new-window", "-t", "t", "-n", name, line)

    _started = False

    def keys(self, window: str, *keys: str) -> None:
        self.cmd("send-keys", "-t", f"t:{window}", *keys)

    def screen(self, window: str) -> str:
        return self.cmd("capture-pane", "-p", "-J", "-S", "-200", "-t", f"t:{window}")

    def wait_for(self, window: str, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.screen(window))
            if match:
                return match
            time.sleep(0.3)
        pytest.fail(f"{pattern!r} did not appear in window {window}:\n{self.screen(window)}")

    def kill(self) -> None:
        subprocess.run([self.exe, "-L", self.name, "kill-server"], capture_output=True, check=False)


@contextlib.contextmanager
def tmux(name: str) -> Iterator[Tmux]:
    server = Tmux(name)
    try:
        yield server
    finally:
        server.kill()


@contextlib.contextmanager
def background(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """``argv`` running in its own session; stopped with everything below it at the end."""
    proc = subprocess.Popen(
        argv,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        # SIGTERM first: ocislim cleans up (sandbox, scratch, registry entry) as on Ctrl-C.
        # Every process below it too: su starts its command in a session of its own.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in [*_descendants(proc.pid), proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
                if not _descendants(proc.pid):
                    break
        proc.communicate()
