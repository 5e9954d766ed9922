"""The JSON-line messages between host, creator and init, and what they mean.

Each message is one JSON object on one line.  The init reports ``ready`` (mount
points, overlay), ``exec-error``, ``error`` and ``done`` (exit codes, timeout) on
its status pipe; :func:`run_result` turns those into a
:class:`~ocislim.sandbox.spec.RunResult`, :func:`creator_error` a creator's
refusal into the error to raise.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ocislim.errors import SandboxError, UserNamespaceUnavailableError
from ocislim.progress import Progress
from ocislim.sandbox.namespaces import userns_unavailable_message
from ocislim.sandbox.spec import RunResult


@dataclass
class Channel:
    """Pipes between host, creator and init. Messages are JSON lines."""

    fds: list[int] = field(default_factory=list)

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.fds += [r, w]
        return r, w

    def close_all(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


def send(fd: int, obj: dict[str, object]) -> None:
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


# A decoded pipe message: JSON, so its values are whatever the sender put there.
Message = dict[str, Any]


def recv(fd: int) -> Message | None:
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            return None
        line += chunk
    result: Message = json.loads(line)
    return result


def read_all(fd: int) -> list[Message]:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return [json.loads(line) for line in b"".join(chunks).splitlines() if line.strip()]


def creator_error(message: Message | None) -> SandboxError:
    if message is None:
        return SandboxError("the sandbox could not be created")
    if message.get("error") == "userns":
        err = OSError(int(message.get("errno", 1)), os.strerror(int(message.get("errno", 1))))
        return UserNamespaceUnavailableError(userns_unavailable_message(err))
    return SandboxError(str(message.get("message", "the sandbox could not be created")))


def run_result(messages: list[Message], status: int, progress: Progress) -> RunResult:
    ready = next((m for m in messages if m.get("event") == "ready"), None)
    errors = [m for m in messages if m.get("event") == "error"]
    if ready is None:
        detail = errors[0]["message"] if errors else f"init ended with status {status}"
        raise SandboxError(f"sandbox setup failed: {detail}")
    done = next((m for m in messages if m.get("event") == "done"), None)
    notes: list[str] = []
    if not ready.get("overlay"):
        notes.append("overlay mount refused: the program could write to the rootfs directory")
    for m in messages:
        if m.get("event") == "exec-error":
            notes.append(str(m["message"]))
    if done is None:
        raise SandboxError(f"sandbox init ended early (status {status})")
    if done.get("timed_out"):
        notes.append("timeout reached: the program was sent SIGTERM")
    for note in notes:
        progress.note(note)
    return RunResult(
        exit_code=int(done["exit_code"]),
        timed_out=bool(done.get("timed_out")),
        probe_exit_codes=tuple(int(c) for c in done.get("probes", [])),
        runtime_paths=tuple(str(p) for p in ready.get("mount_points", [])),
        overlay=bool(ready.get("overlay")),
        notes=tuple(notes),
    )
