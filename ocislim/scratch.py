"""Scratch files and directories that a crash cannot leave behind for good.

Every scratch path ocislim creates on disk comes from here.  Its name says
whose it is, ``PREFIX`` + ``BOOT-PID-RANDOM`` (``PREFIX`` ends in
``ocislim-KIND-``; ``BOOT`` is the start of this boot's id), and the creating
process holds an ``flock`` on it for as long as it lives.  The kernel drops
the lock when the process dies, however it dies (kill -9 included), so
:func:`sweep` can tell the scratch of a dead owner (lock free, and the owner
pid gone or from another boot) from that of a live one, and removes it.
Creators sweep the directory they create in; :func:`sweep_at_start` (called
by the CLI before every command) sweeps ``$TMPDIR`` and the directories of
the command's outputs.  Only the caller's own entries (same uid) are touched.

Errors that a full disk causes while a :func:`directory` is in use are
reported naming that directory (:class:`OutputError`), since ``write(2)``
errors name no file.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import re
import secrets
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ocislim.errors import OutputError

_NAME = re.compile(r"(?:^|\.)ocislim-[a-z]+-(?P<boot>[0-9a-f]{8})-(?P<pid>[0-9]+)-[0-9a-f]{8}$")
_PREFIX = re.compile(r"(?:^|.*\.)ocislim-[a-z]+-")
# A scratch path younger than this whose lock is free may still be between its
# creation and its locking (or the owner's pid may be reused): left alone.
_GRACE = 60.0
_FULL = (errno.ENOSPC, errno.EDQUOT)
_held: dict[str, int] = {}


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip().replace("-", "")[:8] or "0" * 8
    except OSError:
        return "0" * 8


BOOT = _boot_id()


def _name(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"scratch prefix {prefix!r} must end in 'ocislim-KIND-'")
    return f"{prefix}{BOOT}-{os.getpid()}-{secrets.token_hex(4)}"


def _lock(path: Path, directory: bool) -> None:
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    _held[os.fspath(path)] = fd


def make_dir(parent: str | os.PathLike[str], prefix: str, mode: int = 0o700) -> Path:
    """Create and lock a new scratch directory in ``parent``, after sweeping ``parent``.

    The caller removes it with :func:`remove` (or renames it into place and
    calls :func:`release`).  Raises :class:`OutputError` naming the path when
    it cannot be created.
    """
    return _create(parent, prefix, lambda p: os.mkdir(p, mode), os.rmdir, directory=True)


def make_file(parent: str | os.PathLike[str], prefix: str) -> Path:
    """Create (empty, mode 0600) and lock a new scratch file in ``parent``, after sweeping it."""

    def create(path: Path) -> None:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))

    return _create(parent, prefix, create, os.unlink, directory=False)


def _create(
    parent: str | os.PathLike[str],
    prefix: str,
    create: Callable[[Path], None],
    undo: Callable[[Path], None],
    *,
    directory: bool,
) -> Path:
    """Sweep ``parent``, then ``create`` a new owner-named path there and lock it;
    on failure ``undo`` what was made and raise :class:`OutputError` naming it."""
    parent = Path(parent)
    sweep(parent)
    path = parent / _name(prefix)
    try:
        create(path)
        _lock(path, directory=directory)
    except OSError as exc:
        with suppress(OSError):
            undo(path)
        # The user's directory is at fault, not the scratch name they never chose.
        raise OutputError(f"cannot write to {parent}: {exc.strerror}") from None
    return path


def release(path: str | os.PathLike[str]) -> None:
    """Drop the lock on ``path`` (it was removed, or renamed into place). Idempotent."""
    fd = _held.pop(os.fspath(path), None)
    if fd is not None:
        os.close(fd)


def remove(path: str | os.PathLike[str]) -> None:
    """Remove a scratch path (file or tree) and release it. Idempotent.

    Background removals below ``path`` (:func:`remove_in_background`) are waited for first.
    """
    try:
        wait_removals(path)
        remove_tree(path)
    finally:
        release(path)


@contextmanager
def directory(parent: str | os.PathLike[str], prefix: str) -> Iterator[Path]:
    """A scratch directory for the ``with`` block, removed afterwards whatever happens.

    An ENOSPC/EDQUOT error inside the block that names no file becomes an
    :class:`OutputError` naming this directory.
    """
    path = make_dir(parent, prefix)
    try:
        yield path
    except OSError as exc:
        if exc.errno in _FULL and not exc.filename:
            raise OutputError(f"{path}: {exc.strerror} (scratch files)") from None
        raise
    finally:
        remove(path)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a file or a directory tree ocislim created, even where modes deny the owner
    access.

    Idempotent: a missing ``path`` (or any part of it vanishing meanwhile) is not an
    error.  One pass: each directory is listed once through a descriptor and its
    entries are unlinked relative to it (no ``stat`` per file); a directory whose
    mode keeps its owner out is opened up first (root is never kept out).  Symlinks
    are removed, never followed.  Raises :class:`OutputError` naming ``path``.
    """
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
        top = os.fspath(path)
        parent_fd = os.open(os.path.dirname(os.path.abspath(top)) or "/", _DIR_FLAGS)
        try:
            _remove_dir(parent_fd, os.path.basename(os.path.abspath(top)))
        finally:
            os.close(parent_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{path}: cannot remove ({exc.strerror})") from None


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _remove_dir(base_fd: int, top: str) -> None:
    """Remove directory ``top`` (a name relative to ``base_fd``) and all below it.

    Directories are visited by paths relative to ``base_fd``, so at most two
    descriptors are open however deep the tree is.
    """
    root = os.geteuid() == 0
    stack: list[tuple[str, bool]] = [(top, False)]
    while stack:
        rel, listed = stack.pop()
        if listed:
            _ignore_missing(os.rmdir, rel, base_fd)
            continue
        if not root:
            _open_up(rel, base_fd)
        try:
            fd = os.open(rel, _DIR_FLAGS, dir_fd=base_fd)
        except FileNotFoundError:
            continue
        try:
            stack.append((rel, True))
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((f"{rel}/{entry.name}", False))
                    else:
                        _ignore_missing(os.unlink, entry.name, fd)
        finally:
            os.close(fd)


def _open_up(rel: str, base_fd: int) -> None:
    """Give the owner rwx on directory ``rel`` when its mode lacks them (a plain user)."""
    try:
        mode = os.stat(rel, dir_fd=base_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode) and mode & 0o700 != 0o700:
        os.chmod(rel, 0o700, dir_fd=base_fd)  # a directory, so nothing is followed


def _ignore_missing(remove: Callable[..., None], name: str, dir_fd: int) -> None:
    with suppress(FileNotFoundError):
        remove(name, dir_fd=dir_fd)


# -- removal in the background ------------------------------------------------------------

# Trees being removed by a child process: path -> the process.
_removing: dict[str, subprocess.Popen[bytes]] = {}
_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from ocislim.scratch import remove_tree; remove_tree(sys.argv[2])"
)


def remove_in_background(path: str | os.PathLike[str]) -> None:
    """Start removing the tree ``path`` in a child process, and return at once.

    For a tree nobody needs any more, whose removal is slow (the disk, not the
    CPU: a child process does not contend with this one's work).  The caller
    must not touch ``path`` afterwards.  :func:`wait_removals` waits for it;
    :func:`remove` of ``path`` or of a directory holding it calls that first,
    and so does exit.  Where no child can be started, it is removed here and now.
    """
    key = os.path.abspath(os.fspath(path))
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        # Its own session: a terminal's Ctrl-C stops this process, which then
        # decides (see wait_removals), not the remover.
        child = subprocess.Popen(
            [sys.executable, "-I", "-c", _CHILD, package_parent, key],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        remove_tree(key)
        return
    _removing[key] = child


def wait_removals(under: str | os.PathLike[str] | None = None) -> None:
    """Wait for the background removals of paths at or below ``under`` (None: all).

    Whatever a child left (it failed, or this wait was interrupted and the child
    killed) is then removed here, so on return (or on any exception) those paths
    are gone or an :class:`OutputError` says why not.
    """
    top = os.path.abspath(os.fspath(under)) if under is not None else None
    for key in list(_removing):
        if top is not None and key != top and not key.startswith(top.rstrip("/") + "/"):
            continue
        child = _removing.pop(key)
        try:
            child.wait()
        except BaseException:
            child.kill()
            child.wait()
            remove_tree(key)
            raise
        remove_tree(key)


atexit.register(wait_removals)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def _owner_gone(name: str, st: os.stat_result) -> bool:
    found = _NAME.search(name)
    if found is None:
        return False
    pid = int(found["pid"])
    if found["boot"] == BOOT and pid == os.getpid():
        return False
    return found["boot"] != BOOT or not _alive(pid) or time.time() - st.st_mtime > _GRACE


def sweep(parent: str | os.PathLike[str]) -> list[Path]:
    """Remove the scratch of dead owners directly in ``parent``; return what was removed.

    A path counts as ocislim scratch only by its name; it is removed only when
    it belongs to this user, nobody holds its lock, and its owner is gone.
    Never raises: what cannot be examined or removed is left alone.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    uid = os.geteuid()
    for entry in entries:
        if "ocislim-" not in entry.name:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if st.st_uid != uid or not (is_dir or stat.S_ISREG(st.st_mode)):
            continue
        if not _owner_gone(entry.name, st) or os.fspath(entry.path) in _held:
            continue
        with suppress(OSError):
            _remove_unlocked(Path(entry.path), is_dir)
            removed.append(Path(entry.path))
    return removed


def _remove_unlocked(path: Path, is_dir: bool) -> None:
    """Remove ``path`` if its lock can be taken (its owner is dead); raise OSError otherwise."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_DIRECTORY if is_dir else 0)
    fd = os.open(path, flags | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: still owned
        try:
            remove_tree(path)
        except OutputError as exc:
            raise OSError(errno.EACCES, str(exc)) from None
    finally:
        os.close(fd)


def sweep_at_start(outputs: Iterable[object] = ()) -> None:
    """What every command does first: sweep ``$TMPDIR`` and the directory of each output.

    ``outputs`` are path arguments of the command (strings or paths; others
    are ignored).  Never raises.
    """
    places = {tempfile.gettempdir()}
    for value in outputs:
        if isinstance(value, (str, os.PathLike)) and os.fspath(value):
            places.add(os.path.dirname(os.path.abspath(os.fspath(value))))
    for place in sorted(places):
        sweep(place)
