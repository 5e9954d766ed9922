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

import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
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
    """Remove a scratch path (file or tree) and release it. Idempotent."""
    try:
        remove_tree(Path(path))
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


def remove_tree(path: Path) -> None:
    """Remove a directory tree ocislim created, even where modes deny the owner access.

    Idempotent: a missing ``path`` is not an error.
    """
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        try:
            os.chmod(path, 0o700)
            for dirpath, dirnames, _ in os.walk(path):
                for name in dirnames:
                    child = os.path.join(dirpath, name)
                    if not os.path.islink(child):
                        os.chmod(child, 0o700)
            shutil.rmtree(path)
        except OSError as exc:
            raise OutputError(f"{path}: cannot remove ({exc.strerror})") from None
    else:
        os.unlink(path)


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
