"""Scratch paths survive no crash for long, and full disks are reported by name.

- kill -9 at a few moments of ``unpack``, ``convert`` (archive and layout
  output, flattened or not) and ``deps`` (a root filesystem under ``$TMPDIR``)
  leaves scratch behind; the next command (any, for ``$TMPDIR``; one writing
  into the same directory, for scratch beside an output) removes it.
- :func:`ocislim.scratch.sweep` removes only dead owners' scratch: a path a
  live process holds, or a name that is not ocislim's, is left alone.
- ENOSPC on a small tmpfs (mounted here, as root) is one error line naming the
  file or directory at fault.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocislim import scratch
from tests.clirun import (
    PLAIN_USER,
    REPO,
    _descendants,
    chown_tree,
    plain_user_dir,
    plain_user_python,
    run_cli,
)
from tests.oci_build import Draft, oci
from tests.synth import SLOW_ZEROS, M, layer, zero_layer

SCRATCH = re.compile(r"ocislim-[a-z]+-[0-9a-f]{8}-[0-9]+-[0-9a-f]{8}$")


def _scratch_in(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if SCRATCH.search(n))


@pytest.fixture(scope="module")
def slow_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image whose unpack or convert takes many seconds: 2 GiB of zeros, a few KB of zstd."""
    blob, diff_id = zero_layer(SLOW_ZEROS, "zstd")
    draft = Draft([b""], "zstd", blobs=[blob])
    draft.config["rootfs"]["diff_ids"] = [diff_id]
    return oci(tmp_path_factory.mktemp("slow") / "image.tar", draft)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return oci(tmp_path_factory.mktemp("small") / "small.tar", Draft([layer([M("f", data=b"x")])]))


def _killed(args: list[str], watch: Path, delay: float, env: dict[str, str]) -> None:
    """Start ``ocislim ARGS``, SIGKILL it ``delay`` s after scratch appears in ``watch``."""
    with subprocess.Popen(
        [sys.executable, "-m", "ocislim", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 60
        while not _scratch_in(watch) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr}"
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


CRASHES = {
    # name: (args before IMAGE-dependent parts, where scratch is, the next command)
    "unpack": (["unpack", "-q", "{image}", "{work}/rootfs"], "work"),
    "convert-flatten": (["convert", "-q", "--flatten", "{image}", "{work}/out.tar"], "work"),
    "convert-oci-dir": (
        ["convert", "-q", "--compression", "gzip", "--format", "oci-dir", "{image}", "{work}/o"],
        "work",
    ),
    "deps-rootfs-in-tmpdir": (["deps", "-q", "{image}"], "tmp"),
}


@pytest.mark.parametrize("delay", [0.0, 0.4], ids=["at-once", "mid-way"])
@pytest.mark.parametrize("name", list(CRASHES))
def test_kill_9_scratch_is_removed_by_the_next_command(
    tmp_path: Path, slow_image: Path, small_image: Path, name: str, delay: float
) -> None:
    args, where = CRASHES[name]
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    filled = [a.format(image=slow_image, work=work) for a in args]
    watch = work if where == "work" else tmp
    _killed(filled, watch, delay, env)
    assert _scratch_in(watch), "the kill left nothing: the test proves nothing"
    if where == "work":  # a command writing beside the killed one's output
        result = run_cli("convert", "-q", str(small_image), str(work / "next.tar"), env=env)
        assert result.code == 0, result.stderr
        assert sorted(os.listdir(work)) == ["next.tar"]
    else:  # any command at all
        result = run_cli("inspect", str(small_image), env=env)
        assert result.code == 0, result.stderr
        assert os.listdir(tmp) == []


@contextlib.contextmanager
def _holder(parent: Path) -> Iterator[Path]:
    """A live process holding a scratch directory it made in ``parent``."""
    code = (
        "import sys; from ocislim import scratch; "
        "print(scratch.make_dir(sys.argv[1], 'ocislim-held-'), flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(parent)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        path = Path(proc.stdout.readline().strip())
        try:
            yield path
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)


def test_sweep_removes_only_dead_owners_scratch(tmp_path: Path) -> None:
    with _holder(tmp_path) as held:
        mine = scratch.make_dir(tmp_path, "ocislim-mine-")  # (sweeps too: before the others)
        dead_pid = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dead = tmp_path / f".x.ocislim-out-{scratch.BOOT}-{dead_pid}-0123abcd"
        (dead / "sub").mkdir(parents=True)
        os.chmod(dead / "sub", 0o000)  # removed whatever its modes
        other_boot = tmp_path / f"ocislim-run-ffffffff-{os.getpid()}-0123abcd"
        other_boot.write_bytes(b"x")
        not_ours = tmp_path / "ocislim-notes"
        not_ours.mkdir()
        removed = scratch.sweep(tmp_path)
        assert sorted(removed) == sorted([dead, other_boot])
        assert held.is_dir() and mine.is_dir() and not_ours.is_dir()
        scratch.remove(mine)
    # Its owner gone, the held directory goes at the next sweep.
    assert scratch.sweep(tmp_path) == [held]
    assert os.listdir(tmp_path) == ["ocislim-notes"]


def test_scratch_name_says_whose_it_is(tmp_path: Path) -> None:
    path = scratch.make_file(tmp_path, ".out.tar.ocislim-out-")
    try:
        assert SCRATCH.search(path.name)
        assert f"-{scratch.BOOT}-{os.getpid()}-" in path.name
    finally:
        scratch.remove(path)
    with pytest.raises(ValueError):
        scratch.make_dir(tmp_path, "no-kind")


# -- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at ``tmp_path/disk`` (root only)."""
    if os.geteuid() != 0:
        if os.environ.get("OCISLIM_REQUIRE_TOOLS") == "1":
            pytest.fail("mounting a small tmpfs needs root")
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
        shutil.rmtree(disk, ignore_errors=True)


def _big_image(tmp_path: Path) -> Path:
    big = os.urandom(3 << 20)  # incompressible: does not fit in 1 MiB anywhere
    return oci(tmp_path / "big.tar", Draft([layer([M("dir", "dir"), M("dir/big", data=big)])]))


def test_full_disk_unpack_names_the_file(tmp_path: Path, small_disk: Path) -> None:
    result = run_cli("unpack", "-q", str(_big_image(tmp_path)), str(small_disk / "rootfs"))
    assert result.code == 8, result.stderr
    assert f"{small_disk}/rootfs/dir/big: cannot write (No space left on device)" in result.error
    assert os.listdir(small_disk) == []


@pytest.mark.parametrize("flatten", [False, True], ids=["recompress", "flatten"])
def test_full_disk_convert_names_the_place(tmp_path: Path, small_disk: Path, flatten: bool) -> None:
    extra = ["--flatten"] if flatten else ["--compression", "zstd"]
    out = small_disk / "out.tar"
    result = run_cli("convert", "-q", *extra, str(_big_image(tmp_path)), str(out))
    assert result.code == 8, result.stderr
    assert "No space left on device" in result.error
    assert str(small_disk) in result.error, result.error
    assert os.listdir(small_disk) == []


def test_kill_9_as_plain_user(slow_image: Path) -> None:
    """The plain user's killed unpack leaves scratch that the user's next command removes."""
    python, source = plain_user_python()
    base = plain_user_dir("ocislim-kill-")
    try:
        image = base / "image.tar"
        shutil.copy(slow_image, image)
        os.chmod(image, 0o644)
        work = base / "work"
        work.mkdir()
        chown_tree(work)
        inner = shlex.join(
            ["env", f"PYTHONPATH={source}", python, "-m", "ocislim", "unpack", "-q",
             str(image), str(work / "rootfs")]
        )  # fmt: skip
        with subprocess.Popen(
            ["su", PLAIN_USER, "-s", "/bin/sh", "-c", inner], cwd="/", stderr=subprocess.PIPE
        ) as proc:
            deadline = time.monotonic() + 60
            while not _scratch_in(work) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.3)
            assert proc.poll() is None, "finished before it could be killed"
            for pid in [*_descendants(proc.pid), proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.communicate(timeout=60)
        assert _scratch_in(work), "the kill left nothing: the test proves nothing"
        small = oci(base / "small.tar", Draft([layer([M("f", data=b"x")])]))
        os.chmod(small, 0o644)
        result = run_cli(
            "unpack", "-q", str(small), str(work / "next"),
            python=python, user=PLAIN_USER, pythonpath=source,
        )  # fmt: skip
        assert result.code == 0, result.stderr
        assert sorted(os.listdir(work)) == ["next"]
    finally:
        shutil.rmtree(base)
