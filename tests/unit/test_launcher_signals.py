"""A stop that reaches a program process before it has exec'd kills it (143).

The creator carries ocislim's Python handlers (SIGTERM raises KeyboardInterrupt);
a child that ran one of them before resetting it reported "cannot start" and 127,
so an early stop looked like a program that could not start.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os, signal
from ocislim.sandbox.idmaps import IdMap, IdMapPlan
from ocislim.sandbox.launcher import Command, Launcher, exit_code

def interrupted(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, interrupted)
uid, gid = os.getuid(), os.getgid()
plan = IdMapPlan((IdMap(uid, uid, 1),), (IdMap(gid, gid, 1),), helper=False, setgroups=False)
launcher = Launcher(None, plan, [], None, 0)
codes = []
for _ in range(40):
    command = Command(["/bin/sleep", "5"], ["PATH=/usr/bin:/bin"], "/", uid, gid, (), (None, 1, 2))
    pid = launcher.start_command(command)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    launcher.ended(pid)
    codes.append(exit_code(status))
print(" ".join(map(str, codes)))
"""


def test_a_stop_before_exec_kills_the_child_with_its_signal() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    codes = proc.stdout.split()
    assert len(codes) == 40
    assert set(codes) == {"143"}, codes
