"""ctypes bindings to the few libc calls the sandbox needs that ``os`` lacks.

Every wrapper raises :class:`OSError` with the C ``errno`` on failure, like the
``os`` module does, so callers handle both the same way.  Nothing here keeps
state beyond the loaded library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from ocislim.sandbox.syscalls import native_arch

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# clone/unshare flags (include/uapi/linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount flags (include/uapi/linux/mount.h)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2

# new mount API (include/uapi/linux/mount.h, fcntl.h)
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x00100000

# prctl
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

# ptrace requests and options (include/uapi/linux/ptrace.h)
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_SYSCALL = 24
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEVFORKDONE = 0x20
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_VFORK_DONE = 5
PTRACE_EVENT_EXIT = 6
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

PTRACE_SYSCALL_INFO_NONE = 0
PTRACE_SYSCALL_INFO_ENTRY = 1
PTRACE_SYSCALL_INFO_EXIT = 2
PTRACE_SYSCALL_INFO_SECCOMP = 3

WALL = 0x40000000  # __WALL: wait for threads and non-SIGCHLD children too


class SyscallInfoEntry(ctypes.Structure):
    _fields_ = [("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6)]


class SyscallInfoExit(ctypes.Structure):
    _fields_ = [("rval", ctypes.c_int64), ("is_error", ctypes.c_uint8)]


class SyscallInfoSeccomp(ctypes.Structure):
    _fields_ = [
        ("nr", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
        ("ret_data", ctypes.c_uint32),
    ]


class SyscallInfoUnion(ctypes.Union):
    _fields_ = [
        ("entry", SyscallInfoEntry),
        ("exit", SyscallInfoExit),
        ("seccomp", SyscallInfoSeccomp),
    ]


class PtraceSyscallInfo(ctypes.Structure):
    """``struct ptrace_syscall_info`` (Linux >= 5.3); architecture independent."""

    _fields_ = [
        ("op", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("stack_pointer", ctypes.c_uint64),
        ("u", SyscallInfoUnion),
    ]


class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def _check(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
_libc.process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.syscall.restype = ctypes.c_long


def _b(path: str | bytes | None) -> bytes | None:
    if path is None:
        return None
    return os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags))


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)))


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags))


def pivot_root(new_root: str, put_old: str) -> None:
    nr = {"x86_64": 155, "aarch64": 41}[native_arch()]
    _check(_libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)))


# Same numbers on x86_64 and aarch64 (new system calls share one table).
_NR_OPEN_TREE = 428
_NR_MOVE_MOUNT = 429
_NR_MOUNT_SETATTR = 442


class MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def open_tree(path: str, flags: int) -> int:
    """A file descriptor for the mount at ``path`` (a detached copy with OPEN_TREE_CLONE)."""
    return _check(
        _libc.syscall(ctypes.c_long(_NR_OPEN_TREE), ctypes.c_int(-100), _b(path),
                      ctypes.c_uint(flags))
    )  # fmt: skip


def mount_setattr(fd: int, attr_set: int, userns_fd: int = 0, *, recursive: bool = True) -> None:
    """Set ``attr_set`` (MOUNT_ATTR_*) on the mount ``fd`` refers to (and below it)."""
    attr = MountAttr(attr_set, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(
        _libc.syscall(ctypes.c_long(_NR_MOUNT_SETATTR), ctypes.c_int(fd), b"",
                      ctypes.c_uint(flags), ctypes.byref(attr),
                      ctypes.c_size_t(ctypes.sizeof(attr)))
    )  # fmt: skip


def mount_setattr_path(path: str, attr_set: int) -> None:
    """Set ``attr_set`` on the mount at ``path`` and every mount below it."""
    attr = MountAttr(attr_set, 0, 0, 0)
    _check(
        _libc.syscall(ctypes.c_long(_NR_MOUNT_SETATTR), ctypes.c_int(-100), _b(path),
                      ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr),
                      ctypes.c_size_t(ctypes.sizeof(attr)))
    )  # fmt: skip


def move_mount(fd: int, target: str) -> None:
    """Attach the detached mount ``fd`` at ``target``."""
    _check(
        _libc.syscall(ctypes.c_long(_NR_MOVE_MOUNT), ctypes.c_int(fd), b"", ctypes.c_int(-100),
                      _b(target), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
    )  # fmt: skip


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype))


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5))


def install_seccomp_filter(program: list[tuple[int, int, int, int]]) -> None:
    """Load a classic-BPF seccomp filter into the calling thread.

    Needs either no_new_privs or CAP_SYS_ADMIN in the caller's user namespace.
    """
    array = (SockFilter * len(program))(*[SockFilter(*ins) for ins in program])
    prog = SockFprog(len(program), ctypes.cast(array, ctypes.POINTER(SockFilter)))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0))


def ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    ctypes.set_errno(0)
    result = _libc.ptrace(request, pid, addr, data)
    if result == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, os.strerror(err))
    return int(result)


def ptrace_nocheck(request: int, pid: int, addr: int, data: int) -> int:
    """Like :func:`ptrace` but returns ``-errno`` instead of raising (hot path)."""
    result = _libc.ptrace(request, pid, addr, data)
    if result == -1:
        return -ctypes.get_errno()
    return int(result)


ptrace_raw = _libc.ptrace
"""The bare ctypes function (returns -1 and sets errno on failure); for hot loops."""


class RemoteReader:
    """Reads another process's memory with ``process_vm_readv`` into a reused buffer."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        # One byte more than is ever read: the NUL that ends a string read whole.
        self._buf = ctypes.create_string_buffer(size + 1)
        self._buf_p = ctypes.addressof(self._buf)
        self._local = IoVec(ctypes.cast(self._buf, ctypes.c_void_p), size)
        self._remote = IoVec(None, 0)
        self._local_p = ctypes.byref(self._local)
        self._remote_p = ctypes.byref(self._remote)
        self._read = _libc.process_vm_readv

    def read(self, pid: int, address: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``address`` (fewer at an unmapped page; b"" on error)."""
        length = min(length, self._size)
        # The local vector stays the whole buffer: the kernel copies what the remote one holds.
        self._remote.iov_base = address
        self._remote.iov_len = length
        got = self._read(pid, self._local_p, 1, self._remote_p, 1, 0)
        if got <= 0:
            return b""
        return ctypes.string_at(self._buf_p, got)

    def read_string(self, pid: int, address: int, limit: int = 65536) -> bytes | None:
        """The NUL-terminated string at ``address``, at most ``limit`` bytes; None if
        unreadable."""
        if address == 0:
            return None
        # Fast path: one read up to the end of the page usually holds the whole string.
        chunk = min(self._size, 4096 - (address & 4095), limit)
        remote = self._remote
        remote.iov_base = address
        remote.iov_len = chunk
        got = self._read(pid, self._local_p, 1, self._remote_p, 1, 0)
        if got > 0:
            self._buf[got] = b"\0"  # bytes after ``got`` are stale: stop there at the latest
            text = ctypes.string_at(self._buf_p)
            if len(text) < got:
                return text
        parts: list[bytes] = []
        total = 0
        while total < limit:
            # Never cross a page boundary in one read: the next page may be unmapped.
            chunk = min(self._size, 4096 - (address % 4096), limit - total)
            data = self.read(pid, address, chunk)
            if not data:
                return b"".join(parts) if parts else None
            end = data.find(b"\0")
            if end >= 0:
                parts.append(data[:end])
                return b"".join(parts)
            parts.append(data)
            total += len(data)
            address += len(data)
        return b"".join(parts)


class ProcMemReader:
    """Reads traced processes' strings through ``/proc/<tid>/mem``: one ``pread`` per
    page, several times cheaper than ``process_vm_readv`` from Python.

    One descriptor per process image, keyed by the caller's process id and opened on
    first use; the caller must :meth:`forget` the key when the process execs or ends
    (the descriptor stays bound to the old image).  At most ``max_open`` are kept;
    beyond that, or when the file cannot be opened, reads go through
    :class:`RemoteReader`.
    """

    def __init__(self, max_open: int = 256) -> None:
        self._fds: dict[int, int] = {}
        self._max_open = max_open
        self.fallback = RemoteReader()

    def read_string(self, key: int, tid: int, address: int, limit: int = 65536) -> bytes | None:
        """The NUL-terminated string at ``address`` in task ``tid`` (of process ``key``),
        at most ``limit`` bytes; None if unreadable."""
        fd = self._fds.get(key)
        if fd is None:
            if len(self._fds) >= self._max_open:
                return self.fallback.read_string(tid, address, limit)
            try:
                fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return self.fallback.read_string(tid, address, limit)
            self._fds[key] = fd
        parts: list[bytes] = []
        total = 0
        # Most paths are short: the first read stops at 256 bytes, the later ones at a page
        # boundary each (the next page may be unmapped).
        size = min(256, 4096 - (address & 4095), limit)
        while total < limit:
            try:
                data = os.pread(fd, size, address)
            except (OSError, OverflowError):  # unmapped, or an address no off_t can hold
                data = b""
            if not data:
                return b"".join(parts) if parts else None
            end = data.find(b"\0")
            if end >= 0:
                if not parts:
                    return data[:end]
                parts.append(data[:end])
                return b"".join(parts)
            parts.append(data)
            total += len(data)
            address += len(data)
            size = min(4096 - (address & 4095), limit - total)
        return b"".join(parts)

    def forget(self, key: int) -> None:
        """Close process ``key``'s descriptor, if one is open."""
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for key in list(self._fds):
            self.forget(key)


def machine() -> str:
    return platform.machine()
