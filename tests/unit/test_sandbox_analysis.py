"""Trace analysis from fabricated events, the seccomp program and the run-spec rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocislim.errors import SandboxError, UsageError
from ocislim.sandbox.analysis import (
    BEFORE_EXEC,
    DirTree,
    analyse,
    process_label,
    processes,
    resolve,
)
from ocislim.sandbox.config import parse_mount, resolve_user, run_spec
from ocislim.sandbox.idmaps import userns_unavailable_message
from ocislim.sandbox.seccomp import SECCOMP_RET_ALLOW, SECCOMP_RET_TRACE, evaluate, trace_filter
from ocislim.sandbox.syscalls import (
    AUDIT_ARCH,
    OPEN_FLAGS,
    PATH_SYSCALLS,
    SYSCALL_NUMBERS,
    path_syscalls_by_number,
)
from ocislim.sandbox.tracer import ExecEvent, ExitEvent, PathFact, SpawnEvent, SyscallEvent
from tests.synth import LEGACY_MARKER

X86 = OPEN_FLAGS["x86_64"]
ENOENT = -2


class FakeTree:
    """An in-memory image tree: path -> "file" | "dir" | ("symlink", target)."""

    def __init__(self, entries: dict[str, object]) -> None:
        self.entries = {"/": "dir", **entries}

    def kind(self, path: str) -> str | None:
        entry = self.entries.get(path)
        if entry is None:
            return None
        return "symlink" if isinstance(entry, tuple) else str(entry)

    def readlink(self, path: str) -> str:
        entry = self.entries[path]
        assert isinstance(entry, tuple)
        return str(entry[1])


TREE = FakeTree(
    {
        "/usr": "dir",
        "/usr/lib": "dir",
        "/usr/lib/libc.so.6": "file",
        "/usr/lib/libz.so.1": ("symlink", "libz.so.1.2.13"),
        "/usr/lib/libz.so.1.2.13": "file",
        "/lib": ("symlink", "usr/lib"),
        "/etc": "dir",
        "/etc/alt": ("symlink", "/usr/lib/../lib/libc.so.6"),
        "/etc/loop": ("symlink", "/etc/loop"),
        "/etc/mtab": ("symlink", "../proc/self/mounts"),
        "/app": "dir",
        "/app/data": "dir",
        "/app/data/a.txt": "file",
        "/app/up": ("symlink", "../../../usr"),
    }
)


def ev(name: str, *paths: tuple[str, str | None], flags: int | None = None, result: int = 0):
    seq = ev.counter = getattr(ev, "counter", 0) + 1
    facts = tuple(PathFact(raw, base) for raw, base in paths)
    return SyscallEvent(seq, 10, 10, name, facts, flags, result)


def by_path(entries):
    return {e.path: e for e in entries}


def test_resolve_follows_relative_and_absolute_links_inside_the_root() -> None:
    res = resolve(TREE, "/lib/libz.so.1")
    assert (res.path, res.status) == ("/usr/lib/libz.so.1.2.13", "found")
    assert res.symlinks == ("/lib", "/usr/lib/libz.so.1")
    assert resolve(TREE, "/etc/alt").path == "/usr/lib/libc.so.6"
    # ".." above the root stays at the root, like in a chroot.
    assert resolve(TREE, "/app/up/lib/libc.so.6").path == "/usr/lib/libc.so.6"
    assert resolve(TREE, "/../../usr/./lib//libc.so.6").path == "/usr/lib/libc.so.6"


def test_resolve_nofollow_keeps_final_symlink_and_reports_loops_and_misses() -> None:
    res = resolve(TREE, "/lib/libz.so.1", follow=False)
    assert (res.path, res.kind) == ("/usr/lib/libz.so.1", "symlink")
    assert resolve(TREE, "/etc/loop").status == "loop"
    missing = resolve(TREE, "/lib/nope/x/../y.so")
    assert (missing.path, missing.status) == ("/usr/lib/nope/y.so", "missing")
    # A file used as a directory is a miss (ENOTDIR).
    assert resolve(TREE, "/usr/lib/libc.so.6/x").status == "missing"


def test_resolve_stops_at_runtime_mounts() -> None:
    res = resolve(TREE, "/etc/mtab", runtime=("/proc",))
    assert (res.path, res.status) == ("/proc/self/mounts", "runtime")
    assert res.symlinks == ("/etc/mtab",)


def test_analyse_classifies_files_runtime_created_and_misses() -> None:
    events = [
        ev("openat", ("/lib/libz.so.1", None), flags=0o2000000),
        ev("openat", ("a.txt", "/app/data"), flags=0),
        ev("newfstatat", ("data", "/app"), flags=0),
        ev("openat", ("/app/data", None), flags=X86.directory),
        ev("openat", ("/usr/lib/missing.so", None), flags=0, result=ENOENT),
        ev("openat", ("/tmp/new.txt", None), flags=0o1 | X86.creat, result=3),
        ev("openat", ("/etc/hosts", None), flags=0),
        ev("openat", ("/proc/self/maps", None), flags=0),
        ev("unlinkat", ("data/a.txt", "/app"), flags=0),
        ev("newfstatat", ("", None), flags=0x1000),
        ev("readlinkat", ("/lib", None)),
    ]
    report = analyse(events, TREE, ("/proc", "/etc/hosts"), "x86_64")
    files = by_path(report.files)
    assert files["/usr/lib/libz.so.1.2.13"].access == ("read",)
    assert files["/usr/lib/libz.so.1"].kind == "symlink"
    assert files["/lib"].access == ("read",)
    assert files["/app/data/a.txt"].access == ("delete", "read")
    assert files["/app/data"].access == ("list", "stat")
    assert set(by_path(report.runtime)) == {"/etc/hosts", "/proc/self/maps"}
    assert by_path(report.created)["/tmp/new.txt"].access == ("create", "write")
    assert set(by_path(report.misses)) == {"/usr/lib/missing.so"}
    # An empty path acts on an fd: it names no new file.
    assert "" not in files and all(p.startswith("/") for p in files)


def test_analyse_open_flags_decide_access_and_symlink_following() -> None:
    nofollow = ev("openat", ("/lib/libz.so.1", None), flags=X86.nofollow, result=-40)
    report = analyse([nofollow], TREE, (), "x86_64")
    files = by_path(report.files)
    assert "/usr/lib/libz.so.1.2.13" not in files
    assert files["/usr/lib/libz.so.1"].access == ("read",)
    rdwr = analyse([ev("open", ("/usr/lib/libc.so.6", None), flags=2 | X86.trunc)], TREE)
    assert by_path(rdwr.files)["/usr/lib/libc.so.6"].access == ("read", "write")
    opath = analyse([ev("openat", ("/usr/lib", None), flags=X86.path)], TREE, (), "x86_64")
    assert by_path(opath.files)["/usr/lib"].access == ("stat",)


def test_analyse_two_path_calls_and_exec_mappings() -> None:
    rename = ev("renameat2", ("a.txt", "/app/data"), ("b.txt", "/app/data"))
    execve = ExecEvent(5, 10, 10, ("app",), "/usr/lib/libz.so.1.2.13", ("/usr/lib/libc.so.6",))
    report = analyse([rename, execve], TREE, (), "x86_64")
    files = by_path(report.files)
    assert files["/app/data/a.txt"].access == ("delete",)
    assert files["/usr/lib/libc.so.6"].access == ("exec",)
    assert by_path(report.created)["/app/data/b.txt"].access == ("create",)


def test_relative_path_without_known_base_is_skipped() -> None:
    report = analyse([ev("openat", ("x.txt", None), flags=0)], TREE)
    assert report.files == report.misses == report.created == ()


def test_every_access_is_labelled_with_its_program_and_the_lists_are_their_union() -> None:
    spawn = SpawnEvent(1, 5, 5, 10, 10, 2, "fork", False)
    before = ev("openat", ("/usr/lib/libc.so.6", None), flags=0)
    execve = ExecEvent(3, 10, 10, ("app", "-v"), "/usr/lib/libz.so.1.2.13", ())
    events = [
        spawn,
        before,
        execve,
        ev("openat", ("/usr/lib/libc.so.6", None), flags=1),
        ev("openat", ("/usr/lib/missing.so", None), flags=0, result=ENOENT),
        ev("openat", ("/proc/self/maps", None), flags=0),
    ]
    report = analyse(events, TREE, ("/proc",), "x86_64")
    labelled = [(p, c, a.path, a.access) for p, c, a in report.by_program]
    assert labelled == [
        (BEFORE_EXEC, "files", "/usr/lib/libc.so.6", ("read",)),
        ("app -v", "files", "/usr/lib/libc.so.6", ("write",)),
        ("app -v", "files", "/usr/lib/libz.so.1.2.13", ("exec",)),
        ("app -v", "runtime", "/proc/self/maps", ("read",)),
        ("app -v", "misses", "/usr/lib/missing.so", ("read",)),
    ]
    # The merged lists are the union over programs.
    assert by_path(report.files)["/usr/lib/libc.so.6"].access == ("read", "write")
    assert {a.path for _, c, a in report.by_program if c == "misses"} == {
        a.path for a in report.misses
    }
    assert report.files_by_program()["/usr/lib/libc.so.6"][1][0] == "app -v"
    assert process_label(["x" * 300]) == "x" * 197 + "..."


def test_processes_from_spawn_exec_and_exit_events() -> None:
    init = 100
    events = [
        SpawnEvent(1, init, init, 200, 200, 2, "fork", False),
        ExecEvent(2, 200, 200, ("sh", "-c", "x"), "/bin/sh", ()),
        SpawnEvent(3, 200, 200, 201, 200, 3, "thread", True),
        SpawnEvent(4, 200, 200, 300, 300, 4, "vfork", False),
        ExitEvent(5, 300, 300, None, 9),
        ExitEvent(6, 201, 200, 0, None),
        ExitEvent(7, 200, 200, 3, None),
    ]
    procs = processes(events, init)
    assert [(p.pid, p.parent, p.argv, p.exit_code, p.signal) for p in procs] == [
        (2, 1, ("sh", "-c", "x"), 3, None),
        (4, 2, ("sh", "-c", "x"), None, 9),
    ]


def test_processes_are_in_creation_order_when_a_childs_fork_is_seen_first() -> None:
    # Parent and child both stop at a fork; the tracer may handle the child's first.
    init = 100
    events = [
        SpawnEvent(1, init, init, 200, 200, 2, "fork", False),
        SpawnEvent(2, 300, 300, 400, 400, 4, "fork", False),
        SpawnEvent(3, 200, 200, 300, 300, 3, "fork", False),
        ExitEvent(4, 300, 300, 0, None),
        ExitEvent(5, 400, 400, None, 9),
    ]
    procs = processes(events, init)
    assert [(p.pid, p.parent, p.exit_code, p.signal) for p in procs] == [
        (2, 1, None, None),
        (3, 2, 0, None),
        (4, 3, None, 9),
    ]


def test_dir_tree_reads_a_real_directory_without_leaving_it(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tmp_path / "etc" / "escape").symlink_to("/../../../../etc/shadow")
    (tmp_path / LEGACY_MARKER).write_text("{}")
    tree = DirTree(tmp_path)
    assert tree.kind("/etc/passwd") == "file"
    assert tree.kind("/" + LEGACY_MARKER) == "file"  # the image's own file, not ocislim's
    res = resolve(tree, "/etc/escape")
    assert (res.path, res.status) == ("/etc/shadow", "missing")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_seccomp_filter_traces_exactly_the_path_calls(arch: str) -> None:
    program = trace_filter(arch)
    traced = set(path_syscalls_by_number(arch))
    audit = AUDIT_ARCH[arch]
    for nr in range(0, 480):
        expected = SECCOMP_RET_TRACE if nr in traced else SECCOMP_RET_ALLOW
        assert evaluate(program, audit, nr, (0, 0, 0, 0, 0, 0)) == expected, nr
    # Another ABI's numbers mean other calls: always traced.
    assert evaluate(program, 0x40000003, SYSCALL_NUMBERS[arch]["read"]) == SECCOMP_RET_TRACE
    assert evaluate(trace_filter(arch, trace_all=True), audit, 0) == SECCOMP_RET_TRACE
    # fstat as fstatat(fd, "", AT_EMPTY_PATH) names no file and is not stopped.
    fstatat = SYSCALL_NUMBERS[arch]["newfstatat"]
    assert evaluate(program, audit, fstatat, (3, 0, 0, 0x1000)) == SECCOMP_RET_ALLOW
    assert evaluate(program, audit, fstatat, (-100, 0, 0, 0x100)) == SECCOMP_RET_TRACE


def test_syscall_table_covers_the_calls_the_issue_names() -> None:
    named = {
        "open", "openat", "openat2", "creat", "execve", "execveat", "newfstatat", "statx",
        "access", "faccessat", "faccessat2", "readlink", "readlinkat", "chdir", "mkdir",
        "mkdirat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "link", "linkat",
        "symlink", "symlinkat", "truncate", "utimensat", "getxattr", "setxattr", "lgetxattr",
    }  # fmt: skip
    assert named <= set(PATH_SYSCALLS)
    x86 = SYSCALL_NUMBERS["x86_64"]
    assert (x86["openat"], x86["execve"], x86["newfstatat"], x86["statx"]) == (257, 59, 262, 332)
    arm = SYSCALL_NUMBERS["aarch64"]
    assert (arm["openat"], arm["execve"], arm["newfstatat"], arm["faccessat2"]) == (
        56,
        221,
        79,
        439,
    )


class Config:
    def __init__(self) -> None:
        self.entrypoint: list[str] | None = ["/entry"]
        self.cmd: list[str] | None = ["--flag"]
        self.env = ["A=1", "PATH=/bin"]
        self.working_dir = ""
        self.user = "app"


def _image_root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:50:app\n")
    return tmp_path


def test_run_spec_follows_container_runtime_rules(tmp_path: Path) -> None:
    root = _image_root(tmp_path)
    spec = run_spec(Config(), root, env=["A=2", "B=3"])
    assert spec.argv == ("/entry", "--flag")
    assert (spec.uid, spec.gid, spec.groups) == (1000, 1000, (50, 1000))
    env = dict(e.split("=", 1) for e in spec.env)
    assert env == {"A": "2", "B": "3", "PATH": "/bin", "HOSTNAME": "ocislim", "HOME": "/home/app"}
    assert spec.workdir == "/"
    assert run_spec(Config(), root, entrypoint="sh -c 'x y'").argv == ("sh", "-c", "x y")
    assert run_spec(Config(), root, command=["ls", "-l"], user="0:50").argv == ("ls", "-l")
    assert resolve_user(root, "0:50")[:2] == (0, 50)
    assert resolve_user(root, "4242")[:2] == (4242, 0)


def test_run_spec_rejects_bad_input(tmp_path: Path) -> None:
    root = _image_root(tmp_path)
    with pytest.raises(SandboxError, match="nobody"):
        run_spec(Config(), root, user="nobody")
    with pytest.raises(UsageError, match="absolute"):
        run_spec(Config(), root, workdir="rel")
    with pytest.raises(UsageError, match="HOST:PATH"):
        parse_mount("/src:relative")
    mount = parse_mount("/src:/dst:ro")
    assert (mount.source, mount.target, mount.read_only) == ("/src", "/dst", True)


@pytest.mark.parametrize(
    ("sysctls", "named"),
    [
        ({"/proc/sys/kernel/unprivileged_userns_clone": "0"}, "kernel.unprivileged_userns_clone"),
        ({"/proc/sys/user/max_user_namespaces": "0"}, "user.max_user_namespaces"),
        (
            {"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1"},
            "kernel.apparmor_restrict_unprivileged_userns=1",
        ),
    ],
)
def test_userns_error_names_the_setting(sysctls: dict[str, str], named: str) -> None:
    message = userns_unavailable_message(OSError(1, "Operation not permitted"), sysctls.get)
    assert named in message
    assert "\n" not in message
