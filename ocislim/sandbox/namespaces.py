"""The container filesystem (id maps are :mod:`ocislim.sandbox.idmaps`).

Run by the namespace's init, before the program starts:
:func:`build_root` mounts the image tree as an overlay with a tmpfs upper layer
(so the tree itself is never written), pivots into it, and mounts what a
container runtime provides: /proc, /sys, /dev (device nodes bound from the host,
devpts, shm), /etc/hosts, /etc/hostname, /etc/resolv.conf, the user's bind
mounts and probe files, then masks and makes read-only the /proc and /sys paths
OCI runtimes protect by default.  Mount points are created only after the pivot,
so a symlink in the image can never make us create or mount anything on the host.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from ocislim.errors import SandboxError
from ocislim.sandbox import libc

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
RUNTIME_ETC_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
PROBE_DIR = "/.ocislim"
DEFAULT_TMPFS_SIZE = 1 << 30  # the in-memory overlay's upper layer, in bytes
_DEV_SIZE = 1 << 20
_SHM_SIZE = 64 << 20  # as OCI runtimes give /dev/shm
# OCI runtimes' defaults (runc, containerd, podman): masked, and read-only, paths.
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)
READ_ONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


# --- inside the sandbox -------------------------------------------------------------


@dataclass(frozen=True)
class BindMount:
    """A host path (as seen from the host) bound at ``target`` inside the sandbox."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class RootPlan:
    """Everything :func:`build_root` needs; made on the host before forking."""

    image_root: str
    scratch: str  # empty host directory owned by the caller
    binds: tuple[BindMount, ...]  # user mounts, runtime /etc files, probe files
    private_network: bool
    hostname: str
    workdir: str
    tmpfs_size: int = DEFAULT_TMPFS_SIZE


@dataclass(frozen=True)
class RootLayout:
    """What :func:`build_root` did: runtime mount points and whether the tree is protected."""

    mount_points: tuple[str, ...]
    overlay: bool


_OLD_ROOT = "/.ocislim-oldroot"
# Replacing image entries by mount points is only allowed when writes land in an overlay.
_REPLACE_ALLOWED = False


def build_root(plan: RootPlan, detached: dict[str, int], *, userns: bool) -> RootLayout:
    """Make the image tree this process's root, with runtime mounts. Sandbox side.

    Must run in fresh mount, pid (as a member) and, for loopback, net namespaces
    with CAP_SYS_ADMIN there.  ``detached``: host paths (the image root, bind
    sources) the host opened as detached mounts (root's idmapped image tree), used
    instead of resolving the path.  ``userns``: the namespaces belong to our own
    user namespace (so its sysctls are ours to set).  On failure raises
    OSError/SandboxError; the namespaces are then discarded by the caller,
    nothing on the host changed.
    """
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    scratch = plan.scratch
    libc.mount(
        "tmpfs", scratch, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
        f"mode=0755,size={plan.tmpfs_size}",
    )  # fmt: skip
    lower, upper, work, new_root = (f"{scratch}/{n}" for n in ("lower", "upper", "work", "root"))
    for d in (lower, upper, work, new_root):
        os.mkdir(d, 0o755)
    _attach(plan.image_root, lower, detached)
    overlay = _mount_overlay(lower, upper, work, new_root)
    if not overlay:
        libc.mount(lower, new_root, None, libc.MS_BIND | libc.MS_REC)
    global _REPLACE_ALLOWED
    _REPLACE_ALLOWED = overlay
    old = _OLD_ROOT + "-" + os.urandom(6).hex()
    os.mkdir(new_root + old, 0o700)
    os.chdir(new_root)
    libc.pivot_root(".", "." + old)
    os.chdir("/")
    points: list[str] = []
    points.append(
        _mount_fs("/proc", "proc", "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
    )
    points.append(_mount_sys(old, plan.private_network))
    points.append(_mount_dev(old))
    for bind in plan.binds:
        points.append(_bind(old, bind, detached))
    libc.umount2(old, libc.MNT_DETACH)
    os.rmdir(old)
    _prepare(plan.workdir, directory=True)
    libc.sethostname(plan.hostname)
    if plan.private_network:
        loopback_up()
    if userns:
        # No nested user namespaces: they would give back the capabilities the
        # program lacks (mounting over the protections below, unbounded tmpfs).
        with open("/proc/sys/user/max_user_namespaces", "w") as fh:
            fh.write("0")
    protect_proc_and_sys()
    return RootLayout(tuple(p for p in points if p), overlay)


def _attach(source: str, target: str, detached: dict[str, int]) -> None:
    fd = detached.get(source)
    if fd is not None:
        libc.move_mount(fd, target)
    else:
        libc.mount(source, target, None, libc.MS_BIND | libc.MS_REC)


def protect_proc_and_sys() -> None:
    """Mask and make read-only what OCI runtimes do by default (inside the new root).

    Masks: /dev/null over files, an empty read-only tmpfs over directories.  The
    program lacks CAP_SYS_ADMIN, so it can neither unmount nor remount them.
    """
    for path in MASKED_PATHS:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            libc.mount("tmpfs", path, "tmpfs", libc.MS_RDONLY, "mode=0555")
        else:
            libc.mount("/dev/null", path, None, libc.MS_BIND)
    for path in READ_ONLY_PATHS:
        if not os.path.exists(path):
            continue
        libc.mount(path, path, None, libc.MS_BIND | libc.MS_REC)
        libc.mount_setattr_path(path, libc.MOUNT_ATTR_RDONLY)


def _mount_overlay(lower: str, upper: str, work: str, target: str) -> bool:
    base = f"lowerdir={lower},upperdir={upper},workdir={work}"
    for extra in (",userxattr", ""):
        try:
            libc.mount("overlay", target, "overlay", 0, base + extra)
            return True
        except OSError:
            continue
    return False


def _inside(path: str) -> str:
    """``path`` resolved in the new root; refuses anything reaching the old root."""
    real = os.path.realpath(path)
    if real.startswith(_OLD_ROOT):
        raise SandboxError(f"image path {path} points outside the image")
    return real


def _prepare(path: str, *, directory: bool) -> str:
    """Create a mount point at ``path`` (resolved inside the new root) and return it.

    A final symlink or an entry of the wrong type is replaced: the change lands in
    the overlay's upper layer, never in the image tree.
    """
    parent = _inside(os.path.dirname(path) or "/")
    os.makedirs(parent, exist_ok=True)
    target = os.path.join(parent, os.path.basename(path)) if os.path.basename(path) else parent
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        ok = stat.S_ISDIR(st.st_mode) if directory else not stat.S_ISDIR(st.st_mode)
        if ok and not stat.S_ISLNK(st.st_mode):
            return target
        if not _REPLACE_ALLOWED:
            raise SandboxError(f"cannot mount on {path}: the image has another kind of entry there")
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    if directory:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    return target


def _mount_fs(path: str, source: str, fstype: str, flags: int, data: str | None = None) -> str:
    target = _prepare(path, directory=True)
    libc.mount(source, target, fstype, flags, data)
    return target


def _mount_sys(old: str, private_network: bool) -> str:
    flags = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC | libc.MS_RDONLY
    target = _prepare("/sys", directory=True)
    try:
        # sysfs needs the network namespace to be ours.
        libc.mount("sysfs", target, "sysfs", flags)
        return target
    except OSError:
        pass
    # The host's /sys, with every mount below it (cgroup files) read-only; or none.
    try:
        libc.mount(old + "/sys", target, None, libc.MS_BIND | libc.MS_REC)
    except OSError:
        return target
    try:
        libc.mount_setattr_path(target, libc.MOUNT_ATTR_RDONLY)
    except OSError:
        libc.umount2(target, libc.MNT_DETACH)
    return target


def _mount_dev(old: str) -> str:
    dev = _prepare("/dev", directory=True)
    libc.mount(
        "tmpfs", dev, "tmpfs", libc.MS_NOSUID | libc.MS_STRICTATIME, f"mode=0755,size={_DEV_SIZE}"
    )
    for name in DEVICES:
        node = f"{dev}/{name}"
        os.close(os.open(node, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        try:
            libc.mount(f"{old}/dev/{name}", node, None, libc.MS_BIND)
        except OSError:
            os.unlink(node)  # e.g. no /dev/tty on the host without a terminal
    os.mkdir(f"{dev}/pts", 0o755)
    try:
        libc.mount(
            "devpts",
            f"{dev}/pts",
            "devpts",
            libc.MS_NOSUID | libc.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )
        os.symlink("pts/ptmx", f"{dev}/ptmx")
    except OSError:
        pass
    os.mkdir(f"{dev}/shm", 0o1777)
    libc.mount(
        "shm", f"{dev}/shm", "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, f"mode=1777,size={_SHM_SIZE}"
    )
    os.mkdir(f"{dev}/mqueue", 0o755)
    try:
        libc.mount("mqueue", f"{dev}/mqueue", "mqueue", libc.MS_NOSUID | libc.MS_NODEV)
    except OSError:
        os.rmdir(f"{dev}/mqueue")
    for link, to in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(to, f"{dev}/{link}")
    return dev


def _bind(old: str, bind: BindMount, detached: dict[str, int]) -> str:
    fd = detached.get(bind.source)
    if fd is not None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    else:
        is_dir = os.path.isdir(old + bind.source)
    target = _prepare(bind.target, directory=is_dir)
    _attach(old + bind.source if fd is None else bind.source, target, detached)
    if bind.read_only:
        libc.mount_setattr_path(target, libc.MOUNT_ATTR_RDONLY)
    return target


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    """Bring ``lo`` up in the current network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def runtime_etc_files(hostname: str, host_network: bool) -> dict[str, str]:
    """Contents of the runtime-provided /etc/hosts, /etc/hostname and /etc/resolv.conf."""
    hosts = (
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    )
    resolv = "# provided by ocislim: private network, no name servers\n"
    if host_network:
        try:
            resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv = ""
    return {"/etc/hosts": hosts, "/etc/hostname": hostname + "\n", "/etc/resolv.conf": resolv}
