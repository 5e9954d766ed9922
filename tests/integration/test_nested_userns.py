"""ocislim inside a user namespace of its own (a rootless container, ``unshare --user``).

There only one id exists, so root cannot chown unpacked files to the image's owners
and neither root nor a plain user can map a subordinate range into the sandbox: both
fall back to the single id and the build still works.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import PLAIN_USER, REPO, plain_user_dir, plain_user_python
from tests.tools import require_tool

DEMO = REPO / "fixtures" / "demo.oci.tar"


def _build(
    prefix: list[str], python: str, pythonpath: Path, out: Path, user: str | None = None
) -> dict[str, object]:
    inner = [python, "-m", "ocislim", "build", "--json", str(DEMO), "-o", str(out)]
    argv = [*prefix, "env", f"PYTHONPATH={pythonpath}", *inner]
    if user is not None:
        argv = ["su", user, "-s", "/bin/sh", "-c", shlex.join(argv)]
    proc = subprocess.run(
        argv,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, object] = json.loads(proc.stdout)
    return report


def test_root_in_a_single_id_namespace_builds_the_demo(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the plain-user case is the next test)")
    unshare = require_tool("unshare")
    report = _build(
        [unshare, "--user", "--map-root-user"], sys.executable, REPO, tmp_path / "o.tar"
    )
    assert report["verification"] == {"passed": True, "rounds": 1}, report


def test_plain_user_with_subordinate_ids_in_its_own_namespace_builds_the_demo() -> None:
    unshare = require_tool("unshare")
    require_tool("newuidmap")
    python, source = plain_user_python()
    work = plain_user_dir("ocislim-nested-")
    try:
        prefix = [unshare, "--user", "--map-current-user"]
        report = _build(prefix, python, source, work / "o.tar", PLAIN_USER)
        assert report["verification"] == {"passed": True, "rounds": 1}, report
    finally:
        shutil.rmtree(work)
