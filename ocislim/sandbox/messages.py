"""What the creator's reports mean: a :class:`~ocislim.sandbox.spec.RunResult`, or
the error to raise.

The reports reach the host on the creator's socket (see
:mod:`ocislim.sandbox.supervisor`); only the creator, a process the program cannot
see, writes them, and the exit codes in them are wait statuses from the kernel.
"""

from __future__ import annotations

import os

from ocislim.errors import SandboxError, UserNamespaceUnavailableError
from ocislim.progress import Progress
from ocislim.sandbox.idmaps import userns_unavailable_message
from ocislim.sandbox.spec import ExecRecord, RunResult
from ocislim.sandbox.wire import Message


def creator_error(message: Message | None) -> SandboxError:
    """The error to raise for a creator that refused or failed to make the sandbox."""
    if message is None:
        return SandboxError("the sandbox could not be created")
    if message.get("error") == "userns":
        err = OSError(int(message.get("errno", 1)), os.strerror(int(message.get("errno", 1))))
        return UserNamespaceUnavailableError(userns_unavailable_message(err))
    return SandboxError(str(message.get("message", "the sandbox could not be created")))


def run_result(
    messages: list[Message], status: int, progress: Progress, tmpfs_size: int, notes: list[str]
) -> RunResult:
    """The run's result from the creator's reports (``ready``, ``exec-error``,
    ``tmpfs-full``, ``done``) and its wait ``status``; ``notes`` already shown are
    kept but not shown again.  Raises :class:`SandboxError` when setup failed."""
    ready = next((m for m in messages if m.get("event") == "ready"), None)
    errors = [m for m in messages if m.get("event") == "error" or m.get("error")]
    if ready is None:
        detail = errors[0]["message"] if errors else f"init ended with status {status}"
        raise SandboxError(f"sandbox setup failed: {detail}")
    done = next((m for m in messages if m.get("event") == "done"), None)
    reported = len(notes)  # already shown by _start
    notes = list(notes)
    if not ready.get("overlay"):
        notes.append("overlay mount refused: the program could write to the rootfs directory")
    for m in messages:
        if m.get("event") == "exec-error":
            notes.append(str(m["message"]))
    if done is None:
        raise SandboxError(f"sandbox init ended early (status {status})")
    if done.get("timed_out"):
        notes.append("timeout reached: the program was sent SIGTERM")
    if any(m.get("event") == "tmpfs-full" for m in messages):
        notes.append(
            f"the in-memory overlay reached its size limit ({tmpfs_size >> 20} MiB): writes "
            "failed with ENOSPC (raise it with --tmpfs-size)"
        )
    for note in notes[reported:]:
        progress.note(note)
    return RunResult(
        exit_code=int(done["exit_code"]),
        timed_out=bool(done.get("timed_out")),
        probe_exit_codes=tuple(int(c) for c in done.get("probes", [])),
        runtime_paths=tuple(str(p) for p in ready.get("mount_points", [])),
        overlay=bool(ready.get("overlay")),
        notes=tuple(notes),
        exec_commands=tuple(
            ExecRecord(
                int(e["pid"]),
                tuple(str(a) for a in e["argv"]),
                bool(e["tty"]),
                None if e.get("exit_code") is None else int(e["exit_code"]),
            )
            for e in done.get("execs", [])
        ),
    )
