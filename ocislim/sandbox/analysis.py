"""Turn trace events into the list of image files a run touched.

Pure: the result depends only on the events, the image tree (read through a
:class:`TreeView`, never written) and the runtime mount points.  Each path
argument is joined to the cwd or dirfd path recorded with it, then resolved
component by component inside the image: ``..`` stops at the image root,
absolute symlink targets restart at the image root, and every symlink passed on
the way is itself a file the run needed.  The final path is classified:

- ``files``: it exists in the image tree;
- ``runtime``: it lies on a mount the sandbox provides (/proc, /dev, /sys,
  /etc/hosts, /etc/hostname, /etc/resolv.conf, bind mounts, probe files) and so
  is not an image file;
- ``created``: absent from the image but the call succeeded (made at run time);
- ``misses``: absent and the call failed: the program looked for it.

Calls that create or remove no name are recorded without their result; for them,
success on a path absent from the image is derived from the calls before them (the
path exists when the run made it and has not removed it since).

Every access is also labelled with the program its process was running when it
made the call (:func:`process_label` of that argv), so one analysis serves both
the merged lists and per-program reasons such as ``python3 /app/app.py read``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from ocislim.layers.pathwalk import DiskTree, PathResolver
from ocislim.layers.pathwalk import TreeView as TreeView  # re-exported: the view analyse reads
from ocislim.layers.pathwalk import resolve as resolve  # re-exported for run-time file lookups
from ocislim.sandbox.syscalls import (
    AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
    OPEN_FLAGS,
    PATH_SYSCALLS,
    Access,
    OpenFlags,
    PathArg,
    native_arch,
)
from ocislim.sandbox.tracer import Event, ExecEvent, ExitEvent, SpawnEvent, SyscallEvent

MAX_PROCESS_LABEL = 200
_UNKNOWN_NS_PID = 1 << 62  # sorts after every real pid
BEFORE_EXEC = "(sandbox, before exec)"


# An unpacked rootfs on disk as a TreeView (ocislim keeps its record outside the tree).
DirTree = DiskTree


@dataclass(frozen=True)
class FileAccess:
    """A path with the kinds of access the run made (sorted) and, for image files, the
    entry kind ("file", "dir", "symlink", "other"); "" for paths not in the image."""

    path: str
    access: tuple[str, ...]
    kind: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "access": list(self.access)}
        if self.kind:
            out["kind"] = self.kind
        return out


Category = Literal["files", "runtime", "created", "misses"]


class ProgramAccess(NamedTuple):
    """One program's access to one path: ``program`` is the :func:`process_label` of
    what the process ran, ``category`` the :class:`FileReport` list the path is in."""

    program: str
    category: Category
    access: FileAccess


@dataclass(frozen=True)
class FileReport:
    """Paths by class, every program merged; each list sorted by path, one entry per path.

    ``by_program``: the same accesses, one entry per (category, path, program), sorted
    so; each path's kind is the same as in the merged lists.
    """

    files: tuple[FileAccess, ...]
    runtime: tuple[FileAccess, ...]
    created: tuple[FileAccess, ...]
    misses: tuple[FileAccess, ...]
    by_program: tuple[ProgramAccess, ...]

    def files_by_program(self) -> dict[str, list[tuple[str, FileAccess]]]:
        """In-image path -> [(program label, access)], labels sorted, for every image file."""
        out: dict[str, list[tuple[str, FileAccess]]] = {}
        for program, category, access in self.by_program:
            if category == "files":
                out.setdefault(access.path, []).append((program, access))
        return out


@dataclass(frozen=True)
class Process:
    """A process of the program: ids as seen inside the sandbox (parent 1 is the
    sandbox's init), the argv of its last exec, and how it ended."""

    pid: int
    parent: int
    argv: tuple[str, ...]
    exit_code: int | None
    signal: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "parent": self.parent,
            "argv": list(self.argv),
            "exit_code": self.exit_code,
            "signal": self.signal,
        }


def _under(path: str, mounts: Sequence[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def _open_access(flags: int, of: OpenFlags) -> tuple[set[Access], bool]:
    access: set[Access] = set()
    if flags & of.path:
        access.add("stat")
    elif flags & of.directory:
        access.add("list")
    else:
        mode = flags & of.accmode
        if mode in (0, 2):
            access.add("read")
        if mode in (1, 2):
            access.add("write")
    if flags & of.creat:
        access.add("create")
    if flags & of.trunc:
        access.add("write")
    follow = not (flags & of.nofollow) and not (flags & of.creat and flags & of.excl)
    return access, follow


def _interpret(arg: PathArg, flags: int | None, of: OpenFlags) -> tuple[set[Access], bool]:
    """(access kinds, whether a final symlink is followed)."""
    flags = flags or 0
    if arg.access == "open":
        return _open_access(flags, of)
    access = {arg.access}
    if arg.follow == "nofollow":
        return access, False
    if arg.follow == "at_flags":
        return access, not flags & AT_SYMLINK_NOFOLLOW
    if arg.follow == "at_follow_flag":
        return access, bool(flags & AT_SYMLINK_FOLLOW)
    return access, True


def _absolute(raw: str, base: str | None) -> str | None:
    if raw.startswith("/"):
        return raw
    if base is None or not base.startswith("/") or base.endswith(" (deleted)"):
        return None
    if raw == "":
        return None  # acts on an fd opened (and recorded) before
    return base.rstrip("/") + "/" + raw


class _Collector:
    """Accesses of one category by (path, program); a path's kind is shared by programs."""

    def __init__(self, category: Category) -> None:
        self._category: Category = category
        self._access: dict[tuple[str, str], set[str]] = {}
        self._kind: dict[str, str] = {}

    def add(self, program: str, path: str, access: Iterable[str], kind: str = "") -> None:
        self._access.setdefault((path, program), set()).update(access)
        if kind or path not in self._kind:  # a later "" never hides a known kind
            self._kind[path] = kind

    def merged(self) -> tuple[FileAccess, ...]:
        by_path: dict[str, set[str]] = {}
        for (path, _), access in self._access.items():
            by_path.setdefault(path, set()).update(access)
        return tuple(
            FileAccess(path, tuple(sorted(access)), self._kind[path])
            for path, access in sorted(by_path.items())
        )

    def by_program(self) -> list[ProgramAccess]:
        return [
            ProgramAccess(
                program, self._category, FileAccess(path, tuple(sorted(a)), self._kind[path])
            )
            for (path, program), a in sorted(self._access.items())
        ]


def process_label(argv: Sequence[str]) -> str:
    """How a program is named in labels: its argv joined, cut to MAX_PROCESS_LABEL."""
    if not argv:
        return BEFORE_EXEC
    label = " ".join(argv)
    return label if len(label) <= MAX_PROCESS_LABEL else label[: MAX_PROCESS_LABEL - 3] + "..."


class _Argv(dict[int, tuple[str, ...]]):
    """Each process's argv of its last exec, inherited from its parent at fork.

    The tracer may handle a child's exec before its parent's fork event (both stop at
    once; a vfork parent even waits for it): a fork event then does not undo the exec
    already seen."""

    def __init__(self) -> None:
        super().__init__()
        self._forked: set[int] = set()  # processes whose fork was seen
        self._early: set[int] = set()  # exec seen before the fork that made the process

    def spawned(self, event: SpawnEvent) -> None:
        if event.thread:
            return
        self._forked.add(event.child_pid)
        if event.child_pid in self._early:
            self._early.discard(event.child_pid)
        else:
            self[event.child_pid] = self.get(event.parent_pid, ())

    def execed(self, event: ExecEvent) -> None:
        self[event.pid] = event.argv
        if event.pid not in self._forked:
            self._early.add(event.pid)


def split_by_program(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Syscall and exec events grouped by the label of the program their process ran when
    they happened (an exec event belongs to the program it starts); in order. Pure."""
    argv = _Argv()
    groups: dict[str, list[Event]] = {}
    for event in events:
        if isinstance(event, SpawnEvent):
            argv.spawned(event)
            continue
        if isinstance(event, ExecEvent):
            argv.execed(event)
            groups.setdefault(process_label(event.argv), []).append(event)
        elif isinstance(event, SyscallEvent):
            groups.setdefault(process_label(argv.get(event.pid, ())), []).append(event)
    return groups


def analyse(
    events: Iterable[Event],
    tree: TreeView,
    runtime_paths: Sequence[str] = (),
    arch: str | None = None,
) -> FileReport:
    """Classify every path the events name, each access labelled with its program.

    Pure; see the module docstring.  Events are read in order: a call whose result was
    not read (None) succeeded on a path absent from the image exactly when the run had
    made that path before the call and not removed it since (only calls that create or
    remove no name are recorded without their result).  The merged lists are the union
    of the programs' lists.
    """
    of = OPEN_FLAGS[arch or native_arch()]
    runtime = tuple(runtime_paths)
    files, runtime_out = _Collector("files"), _Collector("runtime")
    created, misses = _Collector("created"), _Collector("misses")

    resolver = PathResolver(tree, runtime)
    made = _MadePaths()

    def record(
        program: str, path: str, access: set[Access], follow: bool, succeeded: bool | None
    ) -> None:
        res = resolver.resolve(path, follow)
        for link in res.symlinks:
            if _under(link, runtime):
                runtime_out.add(program, link, {"read"})
            else:
                files.add(program, link, {"read"}, "symlink")
        if res.status == "found":
            files.add(program, res.path, access, res.kind or "")
        elif res.status == "runtime":
            runtime_out.add(program, res.path, access)
        elif res.status == "missing":
            if succeeded is None:
                succeeded = res.path in made
            elif succeeded:
                made.update(res.path, access)
            (created if succeeded else misses).add(program, res.path, access)

    argv = _Argv()
    for event in events:
        if isinstance(event, SpawnEvent):
            argv.spawned(event)
        elif isinstance(event, SyscallEvent):
            spec = PATH_SYSCALLS.get(event.name)
            if spec is None:
                continue
            program = process_label(argv.get(event.pid, ()))
            succeeded = None if event.result is None else event.result >= 0
            if spec.cwd and event.paths and succeeded is not False:
                path = _absolute(".", event.paths[0].base)
                if path is not None:
                    record(program, path, {"stat"}, True, succeeded)
                continue
            made.start_call()
            for arg, fact in zip(spec.paths, event.paths, strict=False):
                access, follow = _interpret(arg, event.flags, of)
                path = _absolute(fact.raw, fact.base)
                if path is not None:
                    record(program, path, access, follow, succeeded)
        elif isinstance(event, ExecEvent):
            argv.execed(event)
            program = process_label(event.argv)
            for path in (event.exe, *event.mapped):
                if path and path.startswith("/") and not path.endswith(" (deleted)"):
                    record(program, path, {"exec"}, True, True)
    collectors = (files, runtime_out, created, misses)
    return FileReport(
        files.merged(),
        runtime_out.merged(),
        created.merged(),
        misses.merged(),
        tuple(a for c in collectors for a in c.by_program()),
    )


class _MadePaths:
    """Paths absent from the image that the run has made and not removed, as far as the
    calls with a known result say: a successful create adds its path, a successful
    delete removes it and what lies below; a rename's target takes what lay below its
    source.  (A directory of the image renamed at run time is not followed: what
    lay below it is looked up under its old name only.)"""

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._moved: list[str] = []  # what lay below the last removed path, this call

    def __contains__(self, path: str) -> bool:
        return path in self._paths

    def start_call(self) -> None:
        self._moved = []

    def update(self, path: str, access: set[Access]) -> None:
        """``path`` (absent from the image) was the target of a successful ``access``."""
        if "delete" in access:
            prefix = path + "/"
            below = [p for p in self._paths if p.startswith(prefix)]
            self._moved = [p[len(path) :] for p in below]
            self._paths.difference_update(below)
            self._paths.discard(path)
        if "create" in access:
            self._paths.add(path)
            self._paths.update(path + rest for rest in self._moved)
            self._moved = []


def processes(events: Iterable[Event], init_pid: int) -> tuple[Process, ...]:
    """The program's processes (threads folded in), in the order they were created. Pure.

    Creation order is the namespace pid's: the tracer may handle a child's fork before
    its parent's when both stop at once, so the order of spawn events is not it; nor
    does a fork event seen after the child's exec undo that exec's argv.
    """
    ns_pid: dict[int, int] = {init_pid: 1}
    parent: dict[int, int] = {}
    argv = _Argv()
    argv[init_pid] = ()
    ended: dict[int, tuple[int | None, int | None]] = {}
    order: list[int] = []
    for event in events:
        if isinstance(event, SpawnEvent):
            if event.thread or event.child_pid in ns_pid:
                continue
            ns_pid[event.child_pid] = event.ns_pid
            parent[event.child_pid] = event.parent_pid
            argv.spawned(event)
            order.append(event.child_pid)
        elif isinstance(event, ExecEvent):
            argv.execed(event)
        elif isinstance(event, ExitEvent) and event.tid == event.pid:
            ended[event.pid] = (event.exit_code, event.signal)
    order.sort(key=lambda pid: ns_pid[pid] or _UNKNOWN_NS_PID)  # stable: unknowns keep theirs
    out = []
    for pid in order:
        code, sig = ended.get(pid, (None, None))
        out.append(Process(ns_pid[pid], ns_pid.get(parent[pid], 0), argv[pid], code, sig))
    return tuple(out)
