"""Seccomp-BPF program that makes path system calls stop under the tracer.

The program returns ``SECCOMP_RET_TRACE`` for the selected call numbers and
``SECCOMP_RET_ALLOW`` for the rest, so everything else runs at full speed.  Calls
from a foreign ABI (i386 ``int 0x80`` on x86_64, the x32 range) are traced too:
their numbers differ and could otherwise name files unseen.  Pure: builds a list
of ``(code, jt, jf, k)`` tuples; :func:`ocislim.sandbox.libc.install_seccomp_filter`
loads it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ocislim.sandbox.syscalls import AUDIT_ARCH, SYSCALL_NUMBERS, path_syscalls_by_number

Instruction = tuple[int, int, int, int]

BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06

SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_ALLOW = 0x7FFF0000

_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARGS = 16  # u64 args; the low 32 bits come first on little-endian machines
AT_EMPTY_PATH = 0x1000
# Calls that act on their fd alone when AT_EMPTY_PATH is set (glibc, musl and Rust
# implement fstat this way); they name no file and run untraced. Value: flags argument.
FD_ONLY_WITH_EMPTY_PATH = {"newfstatat": 3, "statx": 2}
_X32_SYSCALL_BIT = 0x40000000


def trace_filter(arch: str, *, trace_all: bool = False) -> list[Instruction]:
    """The filter for ``arch``: trace path calls (or every call with ``trace_all``)."""
    if trace_all:
        return [(BPF_RET_K, 0, 0, SECCOMP_RET_TRACE)]
    numbers = SYSCALL_NUMBERS[arch]
    fd_only = {numbers[n]: i for n, i in FD_ONLY_WITH_EMPTY_PATH.items() if n in numbers}
    return build_filter(AUDIT_ARCH[arch], sorted(path_syscalls_by_number(arch)), fd_only)


def build_filter(
    audit_arch: int, traced: Iterable[int], fd_only: dict[int, int] | None = None
) -> list[Instruction]:
    """A program tracing the sorted call numbers ``traced`` by binary search.

    ``fd_only``: call number -> index of its flags argument; such a call is allowed
    when AT_EMPTY_PATH is set.  Layout: arch check, x32 check, search tree, one
    flag check per ``fd_only`` call, then ``RET ALLOW`` and ``RET TRACE``.
    """
    numbers = sorted(set(traced))
    fd_only = fd_only or {}
    body: list[tuple[int, object, object, int]] = []

    # Jump targets: a relative int, "allow", "trace", or ("at", absolute index).
    def emit(code: int, jt: object, jf: object, k: int) -> int:
        body.append((code, jt, jf, k))
        return len(body) - 1

    emit(BPF_LD_W_ABS, 0, 0, _OFFSET_ARCH)
    emit(BPF_JEQ_K, 0, "trace", audit_arch)
    emit(BPF_LD_W_ABS, 0, 0, _OFFSET_NR)
    if audit_arch == AUDIT_ARCH["x86_64"]:
        emit(BPF_JGE_K, "trace", 0, _X32_SYSCALL_BIT)

    def tree(lo: int, hi: int) -> None:
        # Emits the search for numbers[lo:hi]; falls through never (always jumps).
        if hi - lo <= 3:
            for i in range(lo, hi):
                last = i == hi - 1
                hit = ("flags", numbers[i]) if numbers[i] in fd_only else "trace"
                emit(BPF_JEQ_K, hit, "allow" if last else 0, numbers[i])
            if hi == lo:
                emit(BPF_JEQ_K, "allow", "allow", 0)
            return
        mid = (lo + hi) // 2
        jump_at = emit(BPF_JGE_K, None, 0, numbers[mid])
        tree(lo, mid)
        target = len(body)
        tree(mid, hi)
        code, _, jf, k = body[jump_at]
        body[jump_at] = (code, ("at", target), jf, k)

    tree(0, len(numbers))
    checks: dict[int, int] = {}
    for nr, arg in sorted(fd_only.items()):
        checks[nr] = emit(BPF_LD_W_ABS, 0, 0, _OFFSET_ARGS + 8 * arg)
        emit(BPF_JSET_K, "allow", "trace", AT_EMPTY_PATH)
    body[:] = [
        (c, ("at", checks[jt[1]]) if isinstance(jt, tuple) and jt[0] == "flags" else jt, jf, k)
        for c, jt, jf, k in body
    ]
    allow_at = len(body)
    trace_at = allow_at + 1
    program: list[Instruction] = []
    for index, (code, jt, jf, k) in enumerate(body):
        program.append(
            (
                code,
                _resolve(jt, index, allow_at, trace_at),
                _resolve(jf, index, allow_at, trace_at),
                k,
            )
        )
    program.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    program.append((BPF_RET_K, 0, 0, SECCOMP_RET_TRACE))
    return program


def _resolve(target: object, index: int, allow_at: int, trace_at: int) -> int:
    # Plain ints are relative offsets already; the rest name an absolute instruction.
    if isinstance(target, int):
        return target
    if target == "allow":
        absolute = allow_at
    elif target == "trace":
        absolute = trace_at
    elif isinstance(target, tuple) and target[0] == "at":
        absolute = target[1]
    else:
        raise ValueError(f"bad jump target {target!r}")
    offset = absolute - index - 1
    if not 0 <= offset <= 255:
        raise ValueError("seccomp program too large for 8-bit jump offsets")
    return offset


def evaluate(program: list[Instruction], arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """Run ``program`` on a syscall (for tests): returns the SECCOMP_RET_* value."""
    acc = 0
    pc = 0
    data = {_OFFSET_NR: nr, _OFFSET_ARCH: arch}
    for i, value in enumerate((*args, 0, 0, 0, 0, 0, 0)[:6]):
        data[_OFFSET_ARGS + 8 * i] = value & 0xFFFFFFFF
        data[_OFFSET_ARGS + 8 * i + 4] = value >> 32
    while True:
        code, jt, jf, k = program[pc]
        if code == BPF_LD_W_ABS:
            acc = data[k]
            pc += 1
        elif code == BPF_RET_K:
            return k
        else:
            if code == BPF_JEQ_K:
                taken = acc == k
            elif code == BPF_JGT_K:
                taken = acc > k
            elif code == BPF_JGE_K:
                taken = acc >= k
            elif code == BPF_JSET_K:
                taken = bool(acc & k)
            else:
                raise ValueError(f"unknown BPF code {code:#x}")
            pc += 1 + (jt if taken else jf)
