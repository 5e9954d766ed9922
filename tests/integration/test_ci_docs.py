"""docs/ci.md: its ```` ```sh ci ```` steps run as written, as a plain user, and every
recipe (GitLab CI, GitHub Actions, Tekton) runs exactly those steps.

The steps run twice in one directory: the first unpacks and saves the rootfs cache,
the second restores it and ocislim reuses the tree (``--rootfs``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.clirun import PLAIN_USER, plain_user_dir
from tests.images import DEMO_IMAGE, REPO

pytestmark = [pytest.mark.integration, pytest.mark.sandbox]

DOC = REPO / "docs" / "ci.md"
FENCE = re.compile(r"(?ms)^```([^\n]*)\n(.*?)^```$")


def _blocks(info: str) -> list[str]:
    return [body for kind, body in FENCE.findall(DOC.read_text()) if kind.strip() == info]


def _lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip()]


STEPS = "".join(_blocks("sh ci"))


def test_every_recipe_runs_exactly_the_documented_steps() -> None:
    yaml = pytest.importorskip("yaml")
    assert len(_blocks("sh ci")) == 3 and "ocislim build" in STEPS
    (gitlab,) = (yaml.safe_load(b) for b in _blocks("yaml gitlab-ci"))
    (github,) = (yaml.safe_load(b) for b in _blocks("yaml github-actions"))
    (tekton,) = (yaml.safe_load(b) for b in _blocks("yaml tekton"))
    scripts: dict[str, Any] = {
        "gitlab": gitlab["slim-image"]["script"][0],
        "github": next(
            s["run"] for s in github["jobs"]["slim"]["steps"] if s.get("name") == "Slim the image"
        ),
        "tekton": tekton["spec"]["steps"][0]["script"].split("\n", 1)[1],  # after the #! line
    }
    for name, script in scripts.items():
        assert _lines(script) == _lines(STEPS), name
    assert gitlab["slim-image"]["cache"]["paths"] == [".ocislim-cache/"]
    assert github["jobs"]["slim"]["runs-on"] == "ubuntu-24.04"
    assert tekton["kind"] == "Task"


@pytest.fixture
def wheelhouse(release: dict[str, Path]) -> Path:
    """The wheelhouse directory scripts/release.sh builds (shared with test_release)."""
    return release["out"] / "wheelhouse"


def _run_steps(work: Path, wheelhouse: Path, as_user: bool) -> subprocess.CompletedProcess[str]:
    script = work / "steps.sh"
    script.write_text(STEPS)
    env = f"IMAGE=image.tar OCISLIM_WHEELHOUSE={wheelhouse} PIP_DISABLE_PIP_VERSION_CHECK=1"
    command = f"cd {work} && env {env} bash steps.sh"
    argv = ["su", PLAIN_USER, "-s", "/bin/sh", "-c", command] if as_user else ["sh", "-c", command]
    return subprocess.run(argv, cwd="/", capture_output=True, text=True, check=False, timeout=1200)


def test_the_steps_slim_the_demo_and_the_second_run_reuses_the_cached_rootfs(
    wheelhouse: Path, tmp_path: Path
) -> None:
    as_user = os.geteuid() == 0
    work = plain_user_dir("ocislim-ci-") if as_user else tmp_path
    try:
        shutil.copyfile(DEMO_IMAGE, work / "image.tar")
        os.chmod(work / "image.tar", 0o644)
        first = _run_steps(work, wheelhouse, as_user)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "ocislim: unpack: layer 1/2 sha256:" in first.stderr
        assert "reusing" not in first.stderr
        (cached,) = (work / ".ocislim-cache").glob("rootfs-*.tar")
        assert not (work / "rootfs").exists()  # removed at the end, cache kept
        report = json.loads((work / "slim.report.json").read_text())
        assert report["verification"]["passed"] is True
        second = _run_steps(work, wheelhouse, as_user)
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"ocislim: unpack: reusing {work / 'rootfs'}" in second.stderr, second.stderr
        assert "ocislim: unpack: layer" not in second.stderr
        assert [p.name for p in (work / ".ocislim-cache").iterdir()] == [cached.name]
        assert (work / "slim.tar").stat().st_size > 0
    finally:
        if as_user:
            subprocess.run(["rm", "-rf", str(work)], check=False)
