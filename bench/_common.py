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
from typing import Any

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
    """The command that runs this checkout's ocislim, its bytecode compiled first.

    An installed ocislim has its bytecode (pip compiles it); a checkout run with
    PYTHONDONTWRITEBYTECODE=1 would compile every module at every start instead.
    """
    import compileall

    compileall.compile_dir(REPO / "ocislim", quiet=1)
    return [sys.executable, "-m", "ocislim"]


def run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_of(
    n: int, setup: Callable[[], None], action: Callable[[], None] | list[Callable[[], None]]
) -> Any:
    """Median wall time and mean CPU time of ``action`` over ``n`` runs.

    ``setup`` runs untimed before each.  CPU time counts child processes only,
    so ``action`` must do its work in subprocesses; it is steadier than wall
    time on a busy machine.  Given a list of actions, they run interleaved (one
    of each per round, so a change in the machine's load hits all alike) and a
    list of ``(wall, cpu)`` comes back, one per action.
    """
    actions = action if isinstance(action, list) else [action]
    times: list[list[float]] = [[] for _ in actions]
    cpu = [0.0 for _ in actions]
    for _ in range(n):
        for i, act in enumerate(actions):
            setup()
            before = children_cpu()
            start = time.perf_counter()
            act()
            times[i].append(time.perf_counter() - start)
            cpu[i] += children_cpu() - before
    results = [(statistics.median(t), c / n) for t, c in zip(times, cpu, strict=True)]
    return results if isinstance(action, list) else results[0]


def goal(what: str, value: float, limit: float) -> None:
    """Print one goal line: ``value`` against its upper ``limit``."""
    print(f"  goal: {what} <= {limit:g}: {value:.2f}, {'met' if value <= limit else 'NOT met'}")


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


# --- a generated layer of many small files (issue 15) --------------------------------

SMALL_FILES = 200_000
_BENCH_CACHE = Path(os.environ.get("OCISLIM_BENCH_CACHE", "/var/tmp/ocislim-bench"))
_SMALL_VERSION = 1  # bump when the generator below changes what it writes


def small_files_image(count: int = SMALL_FILES) -> tuple[Path, Path]:
    """An image of one gzip layer holding ``count`` small files: (oci-archive, oci-dir).

    Generated deterministically (fixed seed, fixed times and owners) on first use
    and cached in ``$OCISLIM_BENCH_CACHE`` (default ``/var/tmp/ocislim-bench``),
    outside the clone.  Files are 0-2047 bytes of text, 100 to a directory, two
    directory levels under ``/srv/small``; the layer is what GNU tar and Go's
    archive/tar write for such names (ustar headers).
    """
    import fcntl

    root = _BENCH_CACHE / f"small-files-v{_SMALL_VERSION}-{count}"
    archive, layout = root / "image.oci.tar", root / "oci"
    if archive.exists() and layout.exists():
        return archive, layout
    _BENCH_CACHE.mkdir(parents=True, exist_ok=True)
    with open(_BENCH_CACHE / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (archive.exists() and layout.exists()):
            print(f"bench: generating {count} small files in {root} ...", file=sys.stderr)
            clean(root)
            work = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=_BENCH_CACHE))
            try:
                _write_small_files_image(work, count)
                work.rename(root)
            except BaseException:
                clean(work)
                raise
    return archive, layout


def _small_files_tar(out: object, count: int) -> None:
    import io
    import random
    import tarfile

    rng = random.Random(15)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    pool = " ".join(rng.choice(words) for _ in range(20000)).encode()
    mtime = 1700000000
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) as tar:  # type: ignore[call-overload]

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)

        for name in ("srv", "srv/small"):
            add_dir(name)
        for i in range(count):
            top, sub = divmod(i // 100, 10)
            if i % 1000 == 0:
                add_dir(f"srv/small/{top:04d}")
            if i % 100 == 0:
                add_dir(f"srv/small/{top:04d}/{sub}")
            size = rng.randrange(2048)
            start = rng.randrange(len(pool) - size)
            info = tarfile.TarInfo(f"srv/small/{top:04d}/{sub}/file-{i:06d}.txt")
            info.size, info.mode, info.mtime = size, 0o644, mtime
            tar.addfile(info, io.BytesIO(pool[start : start + size]))


def _write_small_files_image(work: Path, count: int) -> None:
    """The layout (``oci/``) and its tar (``image.oci.tar``), streamed, in ``work``."""
    import gzip
    import hashlib
    import json
    import tarfile

    blobs = work / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    class Hashing:
        def __init__(self, out: object) -> None:
            self.out, self.hash, self.size = out, hashlib.sha256(), 0

        def write(self, data: bytes) -> int:
            self.hash.update(data)
            self.size += len(data)
            return self.out.write(data)  # type: ignore[attr-defined,no-any-return]

    tmp = blobs / "layer.tmp"
    with open(tmp, "wb") as raw:
        blob = Hashing(raw)
        with gzip.GzipFile(fileobj=blob, mode="wb", compresslevel=6, mtime=0) as gz:  # type: ignore[arg-type]
            diff = Hashing(gz)
            _small_files_tar(diff, count)
    layer_digest = blob.hash.hexdigest()
    tmp.rename(blobs / layer_digest)

    def put(obj: object) -> dict[str, object]:
        data = json.dumps(obj, sort_keys=True).encode()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = put({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff.hash.hexdigest()}"]},
        "history": [{"created_by": f"bench: {count} small files"}],
    })  # fmt: skip
    manifest = put({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{layer_digest}", "size": blob.size}],
    })  # fmt: skip
    (work / "oci" / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (work / "oci" / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
                       "annotations": {"org.opencontainers.image.ref.name": "small-files"}}],
    }, sort_keys=True))  # fmt: skip
    with tarfile.open(work / "image.oci.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted((work / "oci").rglob("*")):
            if path.is_file():
                tar.add(path, path.relative_to(work / "oci").as_posix(), recursive=False,
                        filter=_plain)  # fmt: skip


def _plain(info: object) -> object:
    info.uid = info.gid = 0  # type: ignore[attr-defined]
    info.uname = info.gname = ""  # type: ignore[attr-defined]
    info.mtime = 0  # type: ignore[attr-defined]
    return info


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak resident memory (MB) of ``cmd`` run alone, measured with /usr/bin/time -v or
    wait4's rusage."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return usage.ru_maxrss / 1024
