"""The running sandboxes of this user: where ``ocislim exec`` finds them, what ``ps`` lists.

Each sandbox that accepts ``exec`` has two entries in a private runtime directory
(:func:`runtime_dir`: ``$XDG_RUNTIME_DIR/ocislim`` when that is this user's, else
``/tmp/ocislim-UID``; a
directory of this user, mode 0700, refused otherwise): ``ID.sock``, the listening
socket of its exec channel, and ``ID.json``, what ``ps`` shows.  The entry names
the ocislim process that serves the socket and that process's start time, so an
entry whose owner died (kill -9) is recognised and removed by the next listing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocislim.errors import InputNotFoundError, SandboxError
from ocislim.sandbox.spec import SandboxLabel

ID_BYTES = 6


def new_sandbox_id() -> str:
    """A fresh sandbox id (12 hex digits)."""
    return secrets.token_hex(ID_BYTES)


def runtime_dir(create: bool = True) -> Path:
    """This user's private directory for sandbox sockets (see the module docstring).

    Raises :class:`SandboxError` when it exists but is not a directory of this user
    with mode 0700 (a directory another user made in /tmp must not be used)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    base = Path(f"/tmp/ocislim-{os.geteuid()}")
    with contextlib.suppress(OSError):
        st = os.stat(xdg) if os.path.isabs(xdg) else None
        if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            base = Path(xdg) / "ocislim"  # su keeps the caller's: only one of ours counts
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(base, 0o700)
    try:
        st = os.lstat(base)
    except FileNotFoundError:
        return base
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SandboxError(
            f"{base} is not a private directory of this user (mode 0700): refusing to use it"
        )
    return base


@dataclass(frozen=True)
class Entry:
    """A running sandbox as ``ps`` lists it; ``pid``: the ocislim process serving it."""

    id: str
    image: str
    command: tuple[str, ...]
    pid: int
    started: str
    mode: str
    socket: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "image": self.image,
            "command": list(self.command),
            "pid": self.pid,
            "started": self.started,
            "mode": self.mode,
            "socket": str(self.socket),
        }


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def registered(label: SandboxLabel, argv: tuple[str, ...]) -> Iterator[socket.socket]:
    """Register the sandbox ``label`` runs (``argv``: its program) for ``exec`` and ``ps``.

    Yields the listening socket (SOCK_SEQPACKET, the file mode 0600 in the private
    directory); both entries are removed on exit."""
    directory = runtime_dir()
    sock_path = directory / f"{label.id}.sock"
    info_path = directory / f"{label.id}.json"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        listener.bind(str(sock_path))
        os.chmod(sock_path, 0o600)
        listener.listen(8)
        info = {
            "id": label.id,
            "image": label.image,
            "command": list(argv),
            "pid": os.getpid(),
            "start_time": _start_time(os.getpid()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mode": label.mode,
        }
        scratch = directory / f".{label.id}.json.tmp"
        scratch.write_text(json.dumps(info))
        os.replace(scratch, info_path)
        yield listener
    finally:
        listener.close()
        for path in (info_path, sock_path):
            with contextlib.suppress(OSError):
                path.unlink()


def entries() -> list[Entry]:
    """The running sandboxes of this user, by start; entries of dead owners are removed."""
    try:
        directory = runtime_dir(create=False)
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = directory / name
        try:
            info = json.loads(path.read_text())
            pid = int(info["pid"])
            entry = Entry(
                str(info["id"]),
                str(info["image"]),
                tuple(str(a) for a in info["command"]),
                pid,
                str(info["started"]),
                str(info["mode"]),
                directory / f"{info['id']}.sock",
            )
            alive = info.get("start_time") is not None and _start_time(pid) == info["start_time"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not alive:
            for stale in (path, entry.socket):
                with contextlib.suppress(OSError):
                    stale.unlink()
            continue
        out.append(entry)
    return sorted(out, key=lambda e: (e.started, e.id))


def find(name: str) -> Entry:
    """The running sandbox whose id is ``name`` or starts with it (unique)."""
    matches = [e for e in entries() if e.id == name] or [
        e for e in entries() if e.id.startswith(name)
    ]
    if not matches:
        raise InputNotFoundError(f"no running sandbox {name!r} (see 'ocislim ps')")
    if len(matches) > 1:
        raise SandboxError(f"sandbox id {name!r} is ambiguous: {', '.join(e.id for e in matches)}")
    return matches[0]
