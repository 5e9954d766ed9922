"""Shared helpers for the bench scripts: timing, fixture lookup, ratio printing."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fixture(name: str, fmt: str) -> Path:
    """A fixture image from the shared cache (built on first use)."""
    from tests.images import fixture_image

    return fixture_image(name, fmt)


def ocislim() -> list[str]:
    return [sys.executable, "-m", "ocislim"]


def run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]


def best_of(n: int, setup: Callable[[], None], action: Callable[[], None]) -> float:
    """Median wall time of ``action`` over ``n`` runs, ``setup`` untimed before each."""
    times = []
    for _ in range(n):
        setup()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="ocislim-bench-"))


def clean(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", str(path)], check=True)


def report(title: str, ours: tuple[str, float], others: list[tuple[str, float]]) -> None:
    print(title)
    print(f"  {ours[0]:<40} {ours[1]:8.3f} s")
    for name, seconds in others:
        print(f"  {name:<40} {seconds:8.3f} s   ratio ocislim/{name.split()[0]} = "
              f"{ours[1] / seconds:.2f}x")


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        sys.exit(f"bench: {tool} is not installed")


def layer_blobs(layout: Path) -> list[Path]:
    """Layer blob paths of the single image in an OCI layout, base first."""
    import json

    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].replace(":", "/")
    manifest = json.loads((layout / "blobs" / digest).read_text())
    return [layout / "blobs" / layer["digest"].replace(":", "/") for layer in manifest["layers"]]


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
