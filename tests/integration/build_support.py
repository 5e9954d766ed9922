"""Helpers for the ``ocislim build`` integration tests: running builds, reading reports,
and a podman with private storage for running slim images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ocislim.image import open_image
from ocislim.layers.merge import merge
from ocislim.slim.options import default_report_path
from tests.clirun import CliResult, run_cli
from tests.tools import require_tool

STAGES = ("unpack", "trace", "analyse", "verify", "write")


@dataclass(frozen=True)
class Built:
    """A finished build: the slim image, its report, and what the CLI printed."""

    image: Path
    report_path: Path
    result: CliResult

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.report_path.read_text())
        return data

    def kept(self) -> dict[str, dict[str, Any]]:
        return {k["path"]: k for k in self.report["kept"]}


def build(source: Path, out_dir: Path, *args: str, name: str = "slim.tar", **kw: Any) -> Built:
    """Run ``ocislim build SOURCE -o OUT_DIR/NAME ARGS`` and require success."""
    out = out_dir / name
    result = run_cli("build", str(source), "-o", str(out), *args, **kw)
    assert result.code == 0, result.stderr
    report = default_report_path(out)
    for i, arg in enumerate(args):
        if arg == "--report":
            report = Path(args[i + 1])
    return Built(out, report, result)


def reason_sources(kept: dict[str, Any]) -> set[str]:
    return {r["source"] for r in kept["reasons"]}


def tree_paths(image: Path) -> dict[str, tuple[str, int, int, int, int]]:
    """path -> (kind, mode, uid, gid, size) of an image's merged tree."""
    with open_image(image) as img:
        tree = merge(img)
    return {
        e.path: (e.kind, e.info.mode, e.info.uid, e.info.gid, e.size)
        for e in tree.walk()
        if e.path != "/"
    }


class Podman:
    """podman with private storage (root only), running with runc."""

    def __init__(self, exe: str, store: Path) -> None:
        self.cmd = [exe, "--root", str(store / "root"), "--runroot", str(store / "run")]

    def load(self, image: Path, tag: str | None = None) -> str:
        """Load an archive or layout directory; returns the name podman gave it.

        podman names a loaded layout directory after its path, so ``tag`` (when
        given) is added as a name.
        """
        out = subprocess.run(
            [*self.cmd, "load", "-q", "-i", str(image)], check=True, capture_output=True, text=True
        ).stdout
        loaded = out.strip().rsplit("Loaded image: ", 1)[-1].split(",")[0].strip()
        if tag is not None and loaded != tag:
            subprocess.run([*self.cmd, "tag", loaded, tag], check=True, capture_output=True)
        return loaded

    def run(
        self, tag: str, *args: str, entrypoint: str | None = None, options: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*self.cmd, "run", "--rm", "--runtime", "runc", "--network", "none", *options]
        if entrypoint is not None:
            cmd += ["--entrypoint", entrypoint]
        return subprocess.run(
            [*cmd, tag, *args], capture_output=True, text=True, check=False, timeout=300
        )

    def images(self) -> list[str]:
        out = subprocess.run(
            [*self.cmd, "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()


@pytest.fixture(scope="module", name="podman")
def podman_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    exe = require_tool("podman")
    require_tool("runc")
    if os.geteuid() != 0:
        pytest.skip("these podman runs use root's storage")
    store = tmp_path_factory.mktemp("podman")
    tool = Podman(exe, store)
    yield tool
    subprocess.run([*tool.cmd, "rmi", "--all", "--force"], capture_output=True, check=False)
    shutil.rmtree(store, ignore_errors=True)
