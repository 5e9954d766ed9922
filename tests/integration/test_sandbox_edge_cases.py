"""The sandbox and tracer on tiny C programs, one per tracing edge case.

Runs as whoever runs pytest (root in CI); ``test_as_plain_user`` repeats the key
cases as the plain user ``tester``.  Every test checks that no process it
started is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocislim.sandbox import Probe, RunSpec, TraceResult, run, trace
from tests.clirun import plain_user_python
from tests.integration.sandbox_support import leftovers, new_token, tiny_tree
from tests.tools import require_tool

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_tree(tmp_path_factory.mktemp("sandbox") / "root")


@pytest.fixture
def token() -> Iterator[str]:
    value = new_token()
    yield value
    assert leftovers(value) == [], "a sandboxed process outlived its run"


def spec(*argv: str, out: int = 2, **kw: object) -> RunSpec:
    return RunSpec(argv=argv, env=("PATH=/bin",), stdout=out, **kw)  # type: ignore[arg-type]


def files(result: TraceResult) -> dict[str, tuple[str, ...]]:
    return {f.path: f.access for f in result.report.files}


def test_fork_is_followed_and_exit_code_is_the_programs(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/fork", token))
    assert result.exit_code == 5
    seen = files(result)
    assert seen["/data/fork-child.txt"] == ("read",)
    assert seen["/data/fork-parent.txt"] == ("read",)
    assert [p.exit_code for p in result.processes] == [5, 5]
    parent, child = result.processes
    assert child.parent == parent.pid


def test_vfork_then_exec(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/vfork", token))
    assert result.exit_code == 0
    seen = files(result)
    assert "exec" in seen["/bin/hello"]
    assert "/data/hello.txt" in seen
    assert [p.argv for p in result.processes] == [("/bin/vfork", token), ("hello",)]


def test_threads_are_followed(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/threads", token))
    assert result.exit_code == 0
    assert {f"/data/thread-{i}.txt" for i in range(4)} <= set(files(result))
    assert len(result.processes) == 1  # threads are not processes


def test_exec_from_a_non_leader_thread(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/exec_thread", token, timeout=20))
    assert result.exit_code == 0
    assert not result.run.timed_out
    assert "/data/hello.txt" in files(result)
    assert result.processes[0].argv == ("hello",)


def test_openat_with_a_dirfd(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/dirfd", token))
    assert result.exit_code == 0
    seen = files(result)
    assert seen["/data/dir"] == ("list",)
    assert seen["/data/dir/inner.txt"] == ("read",)
    assert seen["/data/dir/sub/x.txt"] == ("stat",)


def test_relative_paths_after_chdir(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/chdir", token))
    assert result.exit_code == 0
    seen = files(result)
    assert {"/data/dir/inner.txt", "/data/dir/sub/x.txt", "/data/a.txt"} <= set(seen)
    assert seen["/data/dir/sub"] == ("stat",)


def test_symlinks_are_resolved_inside_the_image(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/symlinks", token))
    assert result.exit_code == 0
    seen = files(result)
    for link in ("/data/link-to-file", "/data/dirlink", "/data/abslink"):
        assert seen[link] == ("read",), link
    assert "/data/target.txt" in seen and "/data/dir/inner.txt" in seen
    assert seen["/data/chain"] == ("stat",)  # lstat: the link itself, not its target


def test_dlopen_and_the_dynamic_loader(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/dlopen", token))
    assert result.exit_code == 0
    seen = files(result)
    assert "/plugin/libplugin.so" in seen
    # The loader is mapped by the kernel, not opened: it comes from the exec mappings.
    assert any("exec" in a and "ld-linux" in p for p, a in seen.items())
    assert any(p.endswith("/libc.so.6") for p in seen)


def test_misses_and_runtime_files_are_not_image_files(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/hello", token))
    report = result.report
    # hello looks up only /data/hello.txt, which exists; the loader's probes are misses.
    assert any(m.path == "/etc/ld.so.preload" for m in report.misses)
    assert not any(f.path.startswith(("/proc", "/dev")) for f in report.files)


def test_signals_and_group_stops_behave_as_untraced(tree: Path, token: str) -> None:
    untraced = run(tree, spec("/bin/signals", token))
    traced = trace(tree, spec("/bin/signals", token, timeout=20))
    assert untraced.exit_code == traced.exit_code == 0


def test_program_ignoring_sigterm_is_killed_after_grace(tree: Path, token: str) -> None:
    result = run(tree, spec("/bin/ignore_term", token, timeout=0.5, grace=0.5))
    assert result.timed_out
    assert result.exit_code == 128 + 9


def test_daemon_left_behind_is_killed(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/daemon", token))
    assert result.exit_code == 0
    assert len(result.processes) == 3
    assert result.processes[-1].signal == 9  # the daemon died with the sandbox


@pytest.mark.parametrize("code", [0, 3, 77])
def test_exit_code_passes_through(tree: Path, token: str, code: int) -> None:
    assert run(tree, spec("/bin/exit_code", str(code), token)).exit_code == code
    assert trace(tree, spec("/bin/exit_code", str(code), token)).exit_code == code


def test_missing_executable_is_127(tree: Path, token: str) -> None:
    result = run(tree, spec("no-such-program", token))
    assert result.exit_code == 127
    assert any("no-such-program" in note for note in result.notes)


def test_no_descriptor_leaks_into_the_sandbox(tree: Path, token: str, tmp_path: Path) -> None:
    leak = os.open(tmp_path, os.O_RDONLY)  # inheritable on purpose
    os.set_inheritable(leak, True)
    out = tmp_path / "out"
    try:
        with out.open("w") as fh:
            run(tree, spec("/bin/fds", token, out=fh.fileno()))
    finally:
        os.close(leak)
    # 0, 1, 2 and the directory being listed.
    assert out.read_text().strip() == "4"


def test_probe_file_runs_inside_and_is_not_an_image_file(
    tree: Path, token: str, tmp_path: Path
) -> None:
    probe = tmp_path / "probe"
    probe.write_text("#!/bin/hello\n")
    result = trace(tree, spec("/bin/ignore_term", token, probes=(Probe(script=probe),), grace=0.5))
    assert result.run.probe_exit_codes == (0,)
    # SIGTERM after the probes: killed by it if sent before the program ignores it.
    assert result.exit_code in (128 + 9, 128 + 15)
    assert "/data/hello.txt" in files(result)
    assert not any(p.startswith("/.ocislim") for p in files(result))
    assert any(f.path.startswith("/.ocislim/") for f in result.report.runtime)


def test_image_tree_is_not_written(tree: Path, token: str) -> None:
    before = sorted(p.name for p in (tree / "tmp").iterdir())
    result = run(tree, spec("/bin/exit_code", "0", token))
    assert result.overlay
    assert sorted(p.name for p in (tree / "tmp").iterdir()) == before
    assert not (tree / "etc" / "hosts").exists()


def test_syscall_counts_in_full_mode(tree: Path, token: str) -> None:
    result = trace(tree, spec("/bin/threads", token), count_syscalls=True)
    assert result.syscalls is not None
    assert result.syscalls["clone3"] + result.syscalls.get("clone", 0) >= 4
    assert result.syscalls["openat"] >= 4


PLAIN_USER_SCRIPT = """
import json, sys
from pathlib import Path
from ocislim.sandbox import RunSpec, run, trace
root = Path(sys.argv[1]); token = sys.argv[2]
def spec(*argv, **kw):
    return RunSpec(argv=argv, env=("PATH=/bin",), stdout=2, **kw)
out = {
    "fork": trace(root, spec("/bin/fork", token)).exit_code,
    "threads": sorted(f.path for f in trace(root, spec("/bin/threads", token)).report.files),
    "exec_thread": trace(root, spec("/bin/exec_thread", token, timeout=20)).exit_code,
    "signals": trace(root, spec("/bin/signals", token, timeout=20)).exit_code,
    "timeout": run(root, spec("/bin/ignore_term", token, timeout=0.5, grace=0.5)).exit_code,
    "daemon": run(root, spec("/bin/daemon", token)).exit_code,
}
print(json.dumps(out))
"""


def test_as_plain_user(tree: Path, token: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("run by root: switches to the plain user 'tester'")
    tester_python, source = plain_user_python()
    runuser = require_tool("runuser")
    # A rootless unpack leaves the tree owned by the user: mimic that in a readable place.
    base = Path(tempfile.mkdtemp(prefix="ocislim-tester-", dir="/var/tmp"))
    try:
        os.chmod(base, 0o755)
        shutil.copytree(tree, base / "root", symlinks=True)
        subprocess.run(["chown", "-R", "tester:", str(base)], check=True)
        proc = subprocess.run(
            [runuser, "-u", "tester", "--", tester_python, "-c", PLAIN_USER_SCRIPT,
             str(base / "root"), token],
            capture_output=True, text=True, cwd="/", env={"PYTHONPATH": str(source)},
            timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out = __import__("json").loads(proc.stdout)
        assert out["fork"] == 5
        assert {f"/data/thread-{i}.txt" for i in range(4)} <= set(out["threads"])
        assert out["exec_thread"] == 0
        assert out["signals"] == 0
        assert out["timeout"] == 137
        assert out["daemon"] == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert sys.executable  # the root run continues in this interpreter


def _deny_user_namespaces() -> None:
    """Make unshare(CLONE_NEWUSER) fail with EPERM in this process, as a kernel would."""
    from ocislim.sandbox import libc, seccomp
    from ocislim.sandbox.syscalls import AUDIT_ARCH, SYSCALL_NUMBERS, native_arch

    arch = native_arch()
    deny = 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
    program = [
        (seccomp.BPF_LD_W_ABS, 0, 0, 4),
        (seccomp.BPF_JEQ_K, 0, 4, AUDIT_ARCH[arch]),
        (seccomp.BPF_LD_W_ABS, 0, 0, 0),
        (seccomp.BPF_JEQ_K, 0, 2, SYSCALL_NUMBERS[arch]["unshare"]),
        (seccomp.BPF_LD_W_ABS, 0, 0, 16),
        (seccomp.BPF_JSET_K, 1, 0, libc.CLONE_NEWUSER),
        (seccomp.BPF_RET_K, 0, 0, seccomp.SECCOMP_RET_ALLOW),
        (seccomp.BPF_RET_K, 0, 0, deny),
    ]
    libc.install_seccomp_filter(program)


def _in_child(body: object) -> str:
    """Run ``body()`` in a forked child; return what it printed to the pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, str(body()).encode())  # type: ignore[operator]
        except BaseException as exc:
            os.write(w, f"{type(exc).__name__}: {exc}".encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        out = fh.read()
    os.waitpid(pid, 0)
    return out


def test_without_user_namespaces(tree: Path, token: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("root fakes a kernel without user namespaces for itself and 'tester'")
    import pwd

    def as_root() -> object:
        _deny_user_namespaces()
        return run(tree, spec("/bin/fork", token)).exit_code

    readable = Path(tempfile.mkdtemp(prefix="ocislim-nouserns-", dir="/var/tmp"))
    readable.chmod(0o755)

    def as_plain_user() -> object:
        _deny_user_namespaces()
        user = pwd.getpwnam("tester")
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        return run(readable, spec("/bin/true", token))

    # Root falls back to the namespaces it can create without a user namespace.
    assert _in_child(as_root) == "5"
    try:
        message = _in_child(as_plain_user)
    finally:
        readable.rmdir()
    assert message.startswith("UserNamespaceUnavailableError: user namespaces are not available")
    assert "kernel.unprivileged_userns_clone" in message or "max_user_namespaces" in message


def test_a_flooding_program_cannot_exhaust_the_tracers_memory(tree: Path, token: str) -> None:
    from ocislim.errors import SandboxError
    from ocislim.sandbox.tracer import ExecEvent, SyscallEvent

    result = trace(tree, spec("/bin/flood", "200", token))
    stats = [
        e
        for e in result.events
        if isinstance(e, SyscallEvent) and e.paths and e.paths[0].raw.startswith("/aaaa")
    ]
    assert len(stats) == 200
    assert all(len(p.raw) <= 4096 for e in stats for p in e.paths)  # PATH_MAX, not 100 kB
    execs = [e for e in result.events if isinstance(e, ExecEvent)]
    assert execs and sum(map(len, execs[-1].argv)) <= 2 << 20  # not 5,000 x 100 kB
    # Past its budget the tracer records nothing more, and the trace is refused.
    with pytest.raises(SandboxError, match="more system calls than ocislim keeps records of"):
        trace(tree, spec("/bin/flood", "5000", token), record_limit=1 << 20)
