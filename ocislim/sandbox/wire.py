"""Messages between the host, the creator and the init, and what a process that
enters the image does first: load no module from it, keep only chosen descriptors.

Messages are JSON objects: one per packet on the creator's SOCK_SEQPACKET socket
(optionally carrying descriptors), one per line on the init's report pipe.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import socket
import sys
from typing import Any

_MESSAGE_SIZE = 1 << 16
_MAX_FD = 0x7FFFFFFF


# A decoded message: JSON, so its values are whatever the sender put there.
Message = dict[str, Any]


def send(sock: socket.socket, obj: dict[str, object], fds: list[int] | None = None) -> None:
    """One message on a SOCK_SEQPACKET socket (optionally carrying descriptors)."""
    data = json.dumps(obj).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def receive(sock: socket.socket, max_fds: int = 0) -> tuple[Message | None, list[int]]:
    """The next message and the descriptors it carried; (None, []) at end of stream."""
    data, fds, _, _ = socket.recv_fds(sock, _MESSAGE_SIZE, max_fds)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message: Message = json.loads(data)
    return message, list(fds)


def write_line(fd: int, obj: dict[str, object]) -> None:
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def read_lines(fd: int) -> list[Message]:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return [json.loads(line) for line in b"".join(chunks).splitlines() if line.strip()]


def no_imports() -> None:
    """After this, an import can only load built-in or frozen modules.

    Called in processes that enter the image's filesystem: the host's sys.path names
    directories the image could provide, and a module found there would run as ocislim.
    """
    sys.meta_path[:] = [importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter]


def close_fds_except(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _MAX_FD)
