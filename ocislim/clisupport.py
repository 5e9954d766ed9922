"""What the sandbox commands do besides printing, and the text they show (never prints).

:func:`sandboxed` opens the image, prepares its rootfs and runs or traces the program
``run``/``trace`` flags describe; :func:`trace_text` and :func:`ps_text` are the text
forms of their results (each line ends in a newline).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocislim.cliflags import run_spec_from_flags
from ocislim.humanize import plural
from ocislim.image import open_image
from ocislim.progress import Progress
from ocislim.sandbox import SandboxEntry, TraceResult


def sandboxed(
    image: str, opts: dict[str, Any], traced: bool, progress: Progress
) -> tuple[Any, str | None]:
    """The run (or, with ``traced``, the trace) of ``image`` the flags ``opts`` ask for:
    a :class:`~ocislim.sandbox.RunResult` or :class:`~ocislim.sandbox.TraceResult`, and
    the one line to show when the program itself could not start (see
    :func:`start_error`).  The rootfs is temporary unless ``--rootfs`` names one."""
    from ocislim.layers.rootfs import prepared_rootfs
    from ocislim.sandbox import run, trace

    rootfs = Path(opts["rootfs"]) if opts["rootfs"] else None
    with (
        open_image(image, ref=opts["ref"], platform=opts["platform"]) as img,
        prepared_rootfs(img, rootfs, progress) as root,
    ):
        spec = run_spec_from_flags(img.config, root, {**opts, "label": (image, traced)})
        if traced:
            result: Any = trace(root, spec, progress, count_syscalls=opts["syscalls"])
            notes = result.run.notes
        else:
            result = run(root, spec, progress)
            notes = result.notes
        return result, start_error(result.exit_code, notes, spec.argv[0], _is_file(root, spec))


def _is_file(root: Path, spec: Any) -> bool:
    """Whether the program names a regular file of the image (not following symlinks)."""
    program = str(spec.argv[0])
    if not program.startswith("/"):
        return False
    try:
        return stat.S_ISREG(os.lstat(root / program.lstrip("/")).st_mode)
    except OSError:
        return False


def start_error(
    exit_code: int, notes: Sequence[str], program: str, is_file: bool = False
) -> str | None:
    """``/nope: not found in the image`` (127) or ``/etc: cannot be executed (...)`` (126)
    when the sandbox reported that ``program`` itself could not be started; None when it
    ran (its own exit code 126 or 127 is then its business).  ``is_file``: the program is
    a regular file of the image, so "not found" is about its interpreter or loader."""
    if exit_code not in (126, 127):
        return None
    for note in notes:
        if note == f"executable not found in the image: {program}":
            return f"{program}: not found in the image (exit code 127)"
        prefix = f"cannot execute {program}: "
        if note.startswith(prefix):
            why = note[len(prefix) :]
            if exit_code == 127 and is_file:
                return f"{program}: its interpreter or loader is not in the image ({why})"
            if exit_code == 127:
                return f"{program}: not found in the image (exit code 127)"
            return f"{program}: cannot be executed ({why}; exit code 126)"
    return None


# A scratch name (ocislim/scratch.py: PREFIX ending in "ocislim-KIND-", then BOOT-PID-RANDOM)
# and anything below it: the user never chose it, so messages name its directory instead.
_SCRATCH = re.compile(r"/[^/\s]*ocislim-[a-z]+-[0-9a-f]{8}-[0-9]+-[0-9a-f]{8}(?:/[^\s:]*)?")


def check_output_dirs(outputs: Sequence[tuple[str, str | None]]) -> None:
    """Raise :class:`~ocislim.errors.OutputError` when the directory of an output file
    (``(flag, path)``; None: not asked for) is missing or not writable, before long work."""
    from ocislim.errors import OutputError
    from ocislim.slim.options import check_writable_dir

    for flag, path in outputs:
        if path is None:
            continue
        parent = Path(os.path.abspath(path)).parent
        if not parent.is_dir():
            raise OutputError(f"{flag} {path}: directory {parent} does not exist")
        check_writable_dir(parent, f"{flag} {path}")


def error_text(exc: BaseException) -> str:
    """The one line an error becomes (after ``ocislim: error: ``), naming the user's
    files and directories: a path inside ocislim's scratch space becomes the directory
    that holds the scratch (``cannot write to /out: Permission denied``)."""
    if isinstance(exc, OSError):
        name = str(exc.filename) if exc.filename else ""
        reason = exc.strerror or str(exc)
        if name and _SCRATCH.search(name):
            return f"cannot write to {_SCRATCH.sub('', name) or '/'}: {reason}"
        return f"{name}: {reason}" if name else reason
    return _SCRATCH.sub("", str(exc))


def trace_text(result: TraceResult, syscalls: bool) -> str:
    """``ocislim trace``'s text: each image file with its accesses, then a summary."""
    report = result.report
    lines = [f"{','.join(f.access):<20} {f.path}" for f in report.files]
    # "paths" as the README's glossary has it: image entries of every kind the run reached.
    lines.append(
        f"exit code {result.exit_code}; {plural(len(report.files), 'image path')}, "
        f"{len(report.runtime)} runtime-provided, {len(report.created)} created, "
        f"{len(report.misses)} looked up but absent; "
        f"{plural(len(result.processes), 'process', 'processes')}"
    )
    if syscalls and result.syscalls is not None:
        lines.append(
            f"{plural(sum(result.syscalls.values()), 'system call')} of "
            f"{plural(len(result.syscalls), 'kind')}"
        )
    return "".join(line + "\n" for line in lines)


def ps_text(entries: Sequence[SandboxEntry]) -> str:
    """``ocislim ps``'s table: one running sandbox a line."""
    lines = [f"{'ID':<12}  {'MODE':<5}  {'PID':>7}  {'STARTED':<20}  IMAGE  COMMAND"]
    for e in entries:
        command = " ".join(e.command)[:60]
        lines.append(f"{e.id:<12}  {e.mode:<5}  {e.pid:>7}  {e.started:<20}  {e.image}  {command}")
    return "".join(line + "\n" for line in lines)
