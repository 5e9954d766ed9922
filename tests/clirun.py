"""Run the real ``ocislim`` CLI in a subprocess, and take snapshots of directories.

``run_cli`` runs ``python -m ocislim`` with this checkout first on ``PYTHONPATH``,
optionally as another user through ``su``.  ``snapshot`` records everything about a
directory tree that a hostile archive could change (types, modes, owners, sizes,
times, inode numbers, contents, link targets), so a test can prove it untouched.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLAIN_USER = "tester"
PLAIN_USER_VENV = Path("/var/tmp/ocislim-venv-tester")


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The one ``ocislim: error: ...`` line; fails the test unless there is exactly one."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ocislim: error: ")]
        assert len(errors) == 1, f"expected one error line, got stderr:\n{self.stderr}"
        assert "Traceback" not in self.stderr, self.stderr
        return errors[0]


def run_cli(
    *args: str,
    python: str = sys.executable,
    user: str | None = None,
    env: dict[str, str] | None = None,
    pythonpath: Path = REPO,
    timeout: float = 600,
) -> CliResult:
    """Run ``ocislim ARGS``; as ``user`` (via ``su``) when given.

    On timeout the command and every process below it are killed (a hung run
    as another user leaves nothing behind) and the test fails.
    """
    extra = {"PYTHONPATH": str(pythonpath), **(env or {})}
    cmd = [python, "-m", "ocislim", *args]
    if user is not None:
        inner = shlex.join(["env", *(f"{k}={v}" for k, v in extra.items()), *cmd])
        cmd = ["su", user, "-s", "/bin/sh", "-c", inner]
    with subprocess.Popen(
        cmd,
        env={**os.environ, **extra},
        cwd="/" if user is not None else None,  # the user may not be able to enter ours
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in [*_descendants(proc.pid), proc.pid]:  # su puts its child in a new session
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"ocislim {shlex.join(args)} did not finish in {timeout} s")
    return CliResult(proc.returncode, stdout, stderr)


def default_sigint() -> None:
    """A ``preexec_fn`` giving the child the default SIGINT action.

    A shell without job control starts background commands with SIGINT ignored, and
    the ignoring is inherited through exec; Python then installs no KeyboardInterrupt
    handler, so a test of Ctrl-C run that way would see the signal do nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children before their parents' siblings (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat_line.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        children = parents.get(pending.pop(), [])
        found.extend(children)
        pending.extend(children)
    return found


Snapshot = dict[str, tuple[object, ...]]


def snapshot(root: Path, exclude: tuple[Path, ...] = ()) -> Snapshot:
    """Every path below ``root`` (and ``root`` itself) with its metadata and content digest.

    Symlinks are recorded, never followed.  Paths in ``exclude`` (and below them)
    are left out.
    """
    skipped = {os.fspath(p) for p in exclude}
    out: Snapshot = {}

    def record(path: str) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            content: object = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as fh:
                content = hashlib.sha256(fh.read()).hexdigest()
        else:
            content = None
        out[os.path.relpath(path, root)] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
            st.st_nlink,
            content,
        )

    record(os.fspath(root))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if full not in skipped:
                record(full)
    return out


def inodes(root: Path) -> set[tuple[int, int]]:
    """``(st_dev, st_ino)`` of every non-directory below ``root``."""
    found = set()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            found.add((st.st_dev, st.st_ino))
    return found


def _as_plain_user(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["su", PLAIN_USER, "-s", "/bin/sh", "-c", command],
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )


@functools.cache
def plain_user_python() -> tuple[str, Path]:
    """A Python the plain user can run, and a ``PYTHONPATH`` holding this checkout.

    Skips unless running as root with the user ``tester`` present.  The virtual
    environment (from ``/usr/bin/python3``, in a directory the user can read) is
    created with the project's dependencies when it is missing.  If the user cannot
    read this checkout, the package is copied to a readable temporary directory
    (removed at exit).
    """
    if os.geteuid() != 0:
        pytest.skip("plain-user tests switch users and need root")
    try:
        pwd.getpwnam(PLAIN_USER)
    except KeyError:
        pytest.skip(f"user {PLAIN_USER!r} does not exist")
    if sys.version_info < (3, 11):
        pytest.skip("reading pyproject.toml needs tomllib (Python >= 3.11)")
    import tomllib

    probe = "import click, jsonschema, zstandard, elftools"
    # scripts/test.sh exports a Python the user can run; otherwise make our own venv.
    given = os.environ.get("OCISLIM_TESTER_PYTHON")
    python = Path(given) if given else PLAIN_USER_VENV / "bin" / "python"
    if not python.exists() or _as_plain_user(f"cd / && '{python}' -c '{probe}'").returncode:
        python = PLAIN_USER_VENV / "bin" / "python"
        deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if (
            not python.exists()
            or subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode
        ):
            subprocess.run(["/usr/bin/python3", "-m", "venv", PLAIN_USER_VENV], check=True)
            subprocess.run([python, "-m", "pip", "install", "-q", *deps], check=True)
            subprocess.run(["chmod", "-R", "a+rX", PLAIN_USER_VENV], check=True)
    source = REPO
    check = f"cd / && PYTHONPATH={shlex.quote(str(source))} {python} -c 'import ocislim.cli'"
    if _as_plain_user(check).returncode:
        source = Path(tempfile.mkdtemp(prefix="ocislim-src-", dir="/var/tmp"))
        atexit.register(shutil.rmtree, source, True)
        shutil.copytree(REPO / "ocislim", source / "ocislim")
        subprocess.run(["chmod", "-R", "a+rX", source], check=True)
    return str(python), source


def plain_user_dir(prefix: str) -> Path:
    """A fresh directory owned by the plain user, in a place that user can reach.

    The caller removes it (root can, whatever the modes inside).
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    entry = pwd.getpwnam(PLAIN_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, 0o755)
    return path


def chown_tree(root: Path, user: str = PLAIN_USER) -> None:
    """Give ``root`` and everything below it (symlinks themselves) to ``user``."""
    entry = pwd.getpwnam(user)
    os.chown(root, entry.pw_uid, entry.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)
