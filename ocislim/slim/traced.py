"""Traced files as seeds, each reason naming the process that touched the file and how.

The sandbox's analysis merges all processes; here the events are split by the
program each process was running (its argv at the time of the call) and each
part is analysed on its own (same resolution rules, same tree), so a reason
can say ``trace: python3 /app/app.py read,stat``.  Pure apart from reading the
tree through the sandbox's :class:`~ocislim.sandbox.analysis.TreeView`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ocislim.sandbox.analysis import FileAccess, TreeView, analyse
from ocislim.sandbox.tracer import Event, ExecEvent, SpawnEvent, SyscallEvent
from ocislim.slim.plan import Reason, Seed

MAX_PROCESS_LABEL = 200
BEFORE_EXEC = "(sandbox, before exec)"


def process_label(argv: Sequence[str]) -> str:
    if not argv:
        return BEFORE_EXEC
    label = " ".join(argv)
    return label if len(label) <= MAX_PROCESS_LABEL else label[: MAX_PROCESS_LABEL - 3] + "..."


def split_by_program(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events grouped by the label of the program their process ran when they happened."""
    argv: dict[int, tuple[str, ...]] = {}
    groups: dict[str, list[Event]] = {}
    for event in events:
        if isinstance(event, SpawnEvent):
            if not event.thread:
                argv[event.child_pid] = argv.get(event.parent_pid, ())
            continue
        if isinstance(event, ExecEvent):
            argv[event.pid] = event.argv
            groups.setdefault(process_label(event.argv), []).append(event)
        elif isinstance(event, SyscallEvent):
            groups.setdefault(process_label(argv.get(event.pid, ())), []).append(event)
    return groups


def traced_files(
    events: Sequence[Event], tree: TreeView, runtime: Sequence[str]
) -> dict[str, list[tuple[str, FileAccess]]]:
    """In-image path -> [(program label, access)] for every image file the events touch."""
    out: dict[str, list[tuple[str, FileAccess]]] = {}
    for label, group in sorted(split_by_program(events).items()):
        report = analyse(group, tree, runtime)
        for access in report.files:
            out.setdefault(access.path, []).append((label, access))
    return out


def trace_seeds(files: dict[str, list[tuple[str, FileAccess]]]) -> list[Seed]:
    """One seed per (path, program); a final symlink is kept as the link (and its target
    through the plan's symlink rule)."""
    seeds = []
    for path in sorted(files):
        for label, access in files[path]:
            reason = Reason("trace", process=label, access=access.access)
            seeds.append(Seed(path, reason, follow=False))
    return seeds
