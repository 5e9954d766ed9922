"""Fixtures several integration modules share."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.images import REPO

BASE_PYTHON = os.environ.get("OCISLIM_BASE_PYTHON", "/usr/bin/python3")


@pytest.fixture(scope="session")
def release() -> Iterator[dict[str, Path]]:
    """scripts/release.sh's output, built once (it downloads from the package index), in a
    directory every user can read: ``out``, the wheelhouse ``tar``, the zipapp ``pyz``."""
    out = Path(tempfile.mkdtemp(prefix="ocislim-release-", dir="/var/tmp"))
    try:
        built = subprocess.run(
            ["bash", str(REPO / "scripts" / "release.sh"), "--python", BASE_PYTHON, "--out", out],
            capture_output=True,
            text=True,
            check=False,
            timeout=1200,
        )
        assert built.returncode == 0, built.stderr
        subprocess.run(["chmod", "-R", "a+rX", str(out)], check=True)
        (tar,) = out.glob("ocislim-*-wheelhouse-cp*.tar.gz")
        (pyz,) = out.glob("ocislim-*-cp*.pyz")
        yield {"out": out, "tar": tar, "pyz": pyz}
    finally:
        shutil.rmtree(out, ignore_errors=True)
