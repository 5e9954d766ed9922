"""What the sandbox commands do besides printing, and the text they show (never prints).

:func:`sandboxed` opens the image, prepares its rootfs and runs or traces the program
``run``/``trace`` flags describe; :func:`trace_text` and :func:`ps_text` are the text
forms of their results (each line ends in a newline).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocislim.cliflags import run_spec_from_flags
from ocislim.image import open_image
from ocislim.progress import Progress
from ocislim.sandbox import SandboxEntry, TraceResult


def sandboxed(image: str, opts: dict[str, Any], traced: bool, progress: Progress) -> Any:
    """The run (or, with ``traced``, the trace) of ``image`` the flags ``opts`` ask for:
    a :class:`~ocislim.sandbox.RunResult` or :class:`~ocislim.sandbox.TraceResult`.
    The rootfs is temporary unless ``--rootfs`` names one."""
    from ocislim.layers.rootfs import prepared_rootfs
    from ocislim.sandbox import run, trace

    rootfs = Path(opts["rootfs"]) if opts["rootfs"] else None
    with (
        open_image(image, ref=opts["ref"], platform=opts["platform"]) as img,
        prepared_rootfs(img, rootfs, progress) as root,
    ):
        spec = run_spec_from_flags(img.config, root, {**opts, "label": (image, traced)})
        if traced:
            return trace(root, spec, progress, count_syscalls=opts["syscalls"])
        return run(root, spec, progress)


# A scratch name (ocislim/scratch.py: PREFIX ending in "ocislim-KIND-", then BOOT-PID-RANDOM)
# and anything below it: the user never chose it, so messages name its directory instead.
_SCRATCH = re.compile(r"/[^/\s]*ocislim-[a-z]+-[0-9a-f]{8}-[0-9]+-[0-9a-f]{8}(?:/[^\s:]*)?")


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
    lines.append(
        f"exit code {result.exit_code}; {len(report.files)} image files, "
        f"{len(report.runtime)} runtime-provided, {len(report.created)} created, "
        f"{len(report.misses)} looked up but absent; {len(result.processes)} processes"
    )
    if syscalls and result.syscalls is not None:
        lines.append(
            f"{sum(result.syscalls.values())} system calls of {len(result.syscalls)} kinds"
        )
    return "".join(line + "\n" for line in lines)


def ps_text(entries: Sequence[SandboxEntry]) -> str:
    """``ocislim ps``'s table: one running sandbox a line."""
    lines = [f"{'ID':<12}  {'MODE':<5}  {'PID':>7}  {'STARTED':<20}  IMAGE  COMMAND"]
    for e in entries:
        command = " ".join(e.command)[:60]
        lines.append(f"{e.id:<12}  {e.mode:<5}  {e.pid:>7}  {e.started:<20}  {e.image}  {command}")
    return "".join(line + "\n" for line in lines)
