"""A Docker/OCI seccomp profile from the system calls a traced run made.

The profile denies by default (``SCMP_ACT_ERRNO``, ``EPERM``) and allows the
calls observed in the build's runs plus :data:`RUNTIME_SYSCALLS`, the calls an
OCI runtime (runc, crun) makes in the container's process between loading the
filter and the program's first instruction.  Docker and podman read it with
``--security-opt seccomp=FILE``.  Pure; the writer is atomic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# runc/crun load the filter late in their init and still call these before exec.
RUNTIME_SYSCALLS = (
    "arch_prctl",
    "brk",
    "capget",
    "capset",
    "chdir",
    "close",
    "close_range",
    "epoll_ctl",
    "epoll_pwait",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fchdir",
    "fchown",
    "fcntl",
    "fstat",
    "fstatfs",
    "futex",
    "getdents64",
    "getpid",
    "getppid",
    "gettid",
    "mmap",
    "mprotect",
    "munmap",
    "nanosleep",
    "newfstatat",
    "openat",
    "prctl",
    "read",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_yield",
    "setgid",
    "setgroups",
    "setuid",
    "statx",
    "tgkill",
    "write",
)

ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}
EPERM = 1


def profile(observed: Iterable[str], arch: str) -> dict[str, Any]:
    """The profile for calls ``observed`` (names) on ``arch`` ("x86_64", "aarch64")."""
    names = {n for n in observed if n and not n.startswith(("unknown_", "foreign_"))}
    names.update(RUNTIME_SYSCALLS)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ARCHITECTURES.get(arch, []),
        "syscalls": [{"names": sorted(names), "action": "SCMP_ACT_ALLOW"}],
    }
