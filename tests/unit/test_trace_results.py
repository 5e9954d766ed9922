"""Calls recorded without their result: which ones, and how the analysis derives it."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ocislim.sandbox.analysis import analyse
from ocislim.sandbox.syscalls import OPEN_FLAGS, PATH_SYSCALLS
from ocislim.sandbox.tracer import (
    ExecEvent,
    PathFact,
    SpawnEvent,
    SyscallEvent,
    TracerStats,
    exit_rule,
    reads_result,
)

X86 = OPEN_FLAGS["x86_64"]
UNKNOWN = None


class _Tree:
    """A tiny image tree: /tmp, /lib -> usr/lib, and two files in /usr/lib."""

    entries: ClassVar[dict[str, str]] = {
        "/": "dir",
        "/tmp": "dir",
        "/usr": "dir",
        "/usr/lib": "dir",
        "/lib": "symlink",
        "/usr/lib/libz.so.1": "symlink",
        "/usr/lib/libz.so.1.2.13": "file",
    }
    links: ClassVar[dict[str, str]] = {"/lib": "usr/lib", "/usr/lib/libz.so.1": "libz.so.1.2.13"}

    def kind(self, path: str) -> str | None:
        return self.entries.get(path)

    def readlink(self, path: str) -> str:
        return self.links[path]


TREE = _Tree()


class _Events:
    def __init__(self) -> None:
        self.seq = 0
        self.items: list[object] = []

    def call(self, name: str, *paths: str, flags: int | None = 0, result: int | None = 0,
             pid: int = 10) -> None:  # fmt: skip
        self.seq += 1
        facts = tuple(PathFact(p, None) for p in paths)
        self.items.append(SyscallEvent(self.seq, pid, pid, name, facts, flags, result))


def _lists(events: _Events) -> tuple[set[str], set[str]]:
    report = analyse(events.items, TREE, (), "x86_64")  # type: ignore[arg-type]
    return {f.path for f in report.created}, {f.path for f in report.misses}


def test_only_calls_that_create_or_remove_names_or_exec_need_their_result() -> None:
    needed = {name: spec.result_needed for name, spec in PATH_SYSCALLS.items()}
    assert needed["openat"] == needed["open"] == needed["openat2"] == "if_creat"
    always = "mkdir mkdirat creat unlink unlinkat rmdir rename renameat2 link linkat symlink mknod"
    for name in (*always.split(), "execve", "execveat"):
        assert needed[name] == "always", name
    never = "stat newfstatat statx access readlink chdir getcwd chmod truncate getxattr utimensat"
    for name in never.split():
        assert needed[name] == "never", name


def test_an_unknown_result_on_an_absent_path_is_a_miss_until_the_run_makes_it() -> None:
    events = _Events()
    events.call("newfstatat", "/tmp/new", result=UNKNOWN)
    created, misses = _lists(events)
    assert (created, misses) == (set(), {"/tmp/new"})
    events.call("openat", "/tmp/new", flags=0o1 | X86.creat, result=3)
    events.call("newfstatat", "/tmp/later", result=UNKNOWN)
    events.call("openat", "/tmp/new", flags=0, result=UNKNOWN)
    created, misses = _lists(events)
    assert created == {"/tmp/new"}
    assert misses == {"/tmp/new", "/tmp/later"}  # the first stat came before the create
    report = analyse(events.items, TREE, (), "x86_64")  # type: ignore[arg-type]
    assert {f.path: f.access for f in report.created}["/tmp/new"] == ("create", "read", "write")


def test_a_failed_create_makes_nothing_and_a_removed_path_is_gone() -> None:
    events = _Events()
    events.call("mkdir", "/tmp/d", result=-13)
    events.call("access", "/tmp/d", result=UNKNOWN)
    assert _lists(events) == (set(), {"/tmp/d"})
    events = _Events()
    events.call("mkdir", "/tmp/d")
    events.call("unlink", "/tmp/d")
    events.call("access", "/tmp/d", result=UNKNOWN)
    created, misses = _lists(events)
    assert created == {"/tmp/d"} and misses == {"/tmp/d"}
    report = analyse(events.items, TREE, (), "x86_64")  # type: ignore[arg-type]
    assert [c.access.access for c in report.by_program if c.category == "misses"] == [("stat",)]


def test_a_rename_moves_what_lay_below_its_source() -> None:
    events = _Events()
    events.call("mkdir", "/tmp/a")
    events.call("openat", "/tmp/a/f", flags=0o1 | X86.creat, result=3)
    events.call("rename", "/tmp/a", "/tmp/b")
    events.call("newfstatat", "/tmp/b/f", result=UNKNOWN)
    events.call("newfstatat", "/tmp/a/f", result=UNKNOWN)
    created, misses = _lists(events)
    assert created == {"/tmp/a", "/tmp/a/f", "/tmp/b", "/tmp/b/f"}
    assert misses == {"/tmp/a/f"}


def test_derivation_follows_time_not_programs() -> None:
    # The shell creates the file after python started; python's later stat sees it.
    events = _Events()
    events.items.append(ExecEvent(1, 10, 10, ("sh",), "/bin/sh", ()))
    events.items.append(SpawnEvent(2, 10, 10, 11, 11, 2, "fork", False))
    events.items.append(ExecEvent(3, 11, 11, ("python3",), "/usr/bin/python3", ()))
    events.seq = 3
    events.call("newfstatat", "/tmp/x", result=UNKNOWN, pid=11)
    events.call("openat", "/tmp/x", flags=0o1 | X86.creat, result=3, pid=10)
    events.call("newfstatat", "/tmp/x", result=UNKNOWN, pid=11)
    report = analyse(events.items, TREE, (), "x86_64")  # type: ignore[arg-type]
    labels = {(a.program, a.category) for a in report.by_program if a.access.path == "/tmp/x"}
    assert labels == {("python3", "misses"), ("python3", "created"), ("sh", "created")}


def test_an_unknown_result_on_an_image_file_is_an_image_file() -> None:
    events = _Events()
    events.call("openat", "/lib/libz.so.1", flags=0, result=UNKNOWN)
    report = analyse(events.items, TREE, (), "x86_64")  # type: ignore[arg-type]
    assert [f.path for f in report.files] == [
        "/lib",
        "/usr/lib/libz.so.1",
        "/usr/lib/libz.so.1.2.13",
    ]
    assert report.misses == ()


@pytest.mark.parametrize(("cpu", "calls", "expected"), [(0.5, 10_000, 50.0), (0.1, 0, 0.0)])
def test_tracer_stats_per_call(cpu: float, calls: int, expected: float) -> None:
    assert TracerStats(stops=calls, calls=calls, cpu=cpu).us_per_call == pytest.approx(expected)


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_the_tracer_reads_the_result_of_exactly_the_calls_that_need_it(arch: str) -> None:
    creat = OPEN_FLAGS[arch].creat
    for name, spec in PATH_SYSCALLS.items():
        rule = exit_rule(spec, arch)
        for flags in (None, 0, 0x1000, creat, creat | 0o1):
            reads = reads_result(rule, flags)
            if spec.result_needed == "always":
                assert reads, (name, flags)
            elif spec.result_needed == "never":
                assert not reads, (name, flags)
            else:  # open: only O_CREAT makes a name; unknown flags are read at the exit
                assert reads == (flags is None or bool(flags & creat)), (name, flags)


def test_proc_mem_reader_reads_strings_of_a_live_process() -> None:
    import ctypes
    import mmap
    import os

    from ocislim.sandbox.libc import ProcMemReader

    pid = os.getpid()
    reader = ProcMemReader()
    # A string that crosses a page boundary, followed by an unmapped page.
    area = mmap.mmap(-1, 2 * 4096)
    base = ctypes.addressof(ctypes.c_char.from_buffer(area))
    area[4096 - 5 : 4096 + 4] = b"/usr/lib\0"
    assert reader.read_string(pid, pid, base + 4096 - 5) == b"/usr/lib"
    area[:] = b"x" * (2 * 4096)
    assert reader.read_string(pid, pid, base, limit=6000) == b"x" * 6000  # at most the limit
    assert reader.read_string(pid, pid, 8) is None  # unmapped
    assert reader.read_string(pid, pid, 1 << 63) is None  # beyond any off_t
    reader.forget(pid)
    full = ProcMemReader(max_open=0)  # every read through process_vm_readv
    area[:9] = b"/usr/lib\0"
    assert full.read_string(pid, pid, base) == b"/usr/lib"
    assert full.read_string(pid, pid, base + 16, limit=100) == b"x" * 100
    reader.close()


def test_an_exec_seen_before_its_fork_keeps_its_argv() -> None:
    # A vfork child's exec handled before the parent's vfork event.
    from ocislim.sandbox.analysis import processes

    events = [
        SpawnEvent(1, 1, 1, 10, 10, 2, "fork", False),
        ExecEvent(2, 10, 10, ("/bin/vfork",), "/bin/vfork", ()),
        ExecEvent(3, 11, 11, ("hello",), "/bin/hello", ()),
        SpawnEvent(4, 10, 10, 11, 11, 3, "vfork", False),
        SyscallEvent(5, 11, 11, "openat", (PathFact("/tmp/x", None),), 0, None),
    ]
    assert [p.argv for p in processes(events, 1)] == [("/bin/vfork",), ("hello",)]
    report = analyse(events, TREE, (), "x86_64")
    assert {a.program for a in report.by_program if a.access.path == "/tmp/x"} == {"hello"}
