"""Shared helpers for the bench scripts: timing, fixture lookup, ratio printing."""

from __future__ import annotations

import os
import resource
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


def reference(name: str) -> str:
    """The tag a fixture image's layout carries."""
    from tests.images import image_reference

    return image_reference(name)


def ocislim() -> list[str]:
    return [sys.executable, "-m", "ocislim"]


def run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_of(n: int, setup: Callable[[], None], action: Callable[[], None]) -> tuple[float, float]:
    """Median wall time and mean CPU time of ``action`` over ``n`` runs.

    ``setup`` runs untimed before each.  CPU time counts child processes only,
    so ``action`` must do its work in subprocesses; it is steadier than wall
    time on a busy machine.
    """
    times = []
    cpu = 0.0
    for _ in range(n):
        setup()
        before = children_cpu()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
        cpu += children_cpu() - before
    return statistics.median(times), cpu / n


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="ocislim-bench-"))


def clean(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", str(path)], check=True)


def report(
    title: str, ours: tuple[str, tuple[float, float]], others: list[tuple[str, tuple[float, float]]]
) -> None:
    """Print wall and CPU seconds of each contender and ocislim's ratio to each."""
    name, (wall, cpu) = ours
    print(title)
    print(f"  {name:<34} wall {wall:8.3f} s   cpu {cpu:8.3f} s")
    for other, (o_wall, o_cpu) in others:
        print(
            f"  {other:<34} wall {o_wall:8.3f} s   cpu {o_cpu:8.3f} s   "
            f"ratio wall {wall / o_wall:.2f}x, cpu {cpu / o_cpu:.2f}x"
        )


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
