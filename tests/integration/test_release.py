"""The air-gapped release: scripts/release.sh builds a wheelhouse and a single-file
zipapp; both install and run in a network namespace that has no network at all.

Building needs the package index; everything after it runs under ``unshare --net``
(as root), where the only interface is loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.images import DEMO_IMAGE
from tests.integration.conftest import BASE_PYTHON
from tests.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.sandbox]


OFFLINE = r"""
set -eu
cd "$WORK"
"$PY" -c 'import socket, sys; names = [n for _, n in socket.if_nameindex()]
sys.exit(0 if names == ["lo"] else f"network interfaces: {names}")'
mkdir unpacked && tar -C unpacked -xzf "$WHEELHOUSE_TAR"
"$PY" -m venv venv
venv/bin/pip install --quiet --no-index --find-links unpacked/wheelhouse ocislim
venv/bin/ocislim --version >version-wheel.txt
venv/bin/ocislim build -q "$DEMO" -o slim-wheel.tar >/dev/null
SHIV_ROOT=$WORK/shiv "$PYZ" --version >version-pyz.txt
SHIV_ROOT=$WORK/shiv "$PYZ" build -q "$DEMO" -o slim-pyz.tar >/dev/null
venv/bin/ocislim inspect --json slim-pyz.tar >slim-pyz.json
"""


def test_the_wheelhouse_holds_ocislim_and_every_runtime_dependency(
    release: dict[str, Path],
) -> None:
    with tarfile.open(release["tar"]) as tar:
        names = {Path(n).name.split("-")[0].lower() for n in tar.getnames() if n.endswith(".whl")}
    assert {"ocislim", "click", "jsonschema", "pyelftools", "zstandard"} <= names
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert tag in release["pyz"].name and tag in release["tar"].name
    sums = (release["out"] / "SHA256SUMS").read_text()
    assert release["pyz"].name in sums and release["tar"].name in sums


def test_both_install_and_slim_the_demo_with_no_network(
    release: dict[str, Path], tmp_path: Path
) -> None:
    unshare = require_tool("unshare")
    if os.geteuid() != 0:
        # A plain user gets a network namespace only inside a user namespace of its own,
        # where newuidmap (used when the user has subordinate ids) is not permitted.
        pytest.skip("a network namespace with no network needs root here")
    work = tmp_path / "offline"
    work.mkdir()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "WORK": str(work),
        "PY": BASE_PYTHON,
        "DEMO": str(DEMO_IMAGE),
        "WHEELHOUSE_TAR": str(release["tar"]),
        "PYZ": str(release["pyz"]),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    ran = subprocess.run(
        [unshare, "--net", "sh", "-c", OFFLINE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for kind in ("wheel", "pyz"):
        assert (work / f"version-{kind}.txt").read_text().startswith("ocislim, version ")
        assert (work / f"slim-{kind}.tar").stat().st_size > 0
    slim = json.loads((work / "slim-pyz.json").read_text())
    assert len(slim["layers"]) == 1
    assert (work / "shiv").is_dir()  # the zipapp extracted itself where SHIV_ROOT says
