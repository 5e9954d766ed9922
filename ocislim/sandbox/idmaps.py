"""Who the sandbox's ids are on the host, decided and applied from the host side.

:func:`plan_id_maps` decides how ids map into the new user namespace (root: an
unprivileged subordinate range; a plain user: the caller plus subordinate ids via
newuidmap/newgidmap when configured, otherwise the caller's single id),
:func:`write_id_maps` applies it, :func:`detach_trees` opens root's image tree as
an idmapped detached mount (files keep their owners inside), and
:func:`userns_unavailable_message` names the setting that forbids user namespaces.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocislim.errors import SandboxError
from ocislim.idrange import range_mapped, read_id_map
from ocislim.sandbox import libc

# Root's sandbox ids without an /etc/subuid entry for root: the last 65536-id block of
# the range systemd reserves for containers (524288-1879048191), owned by no host user.
ROOT_DEFAULT_RANGE = (1878982656, 65536)


@dataclass(frozen=True)
class IdMap:
    """One ``inside outside count`` line of a uid_map or gid_map."""

    inside: int
    outside: int
    count: int


@dataclass(frozen=True)
class IdMapPlan:
    """How ids map into the sandbox's user namespace.

    ``helper``: use newuidmap/newgidmap (subordinate ids) instead of writing the
    map files directly.  ``inside_uid``/``inside_gid``: the ids the caller's own
    id becomes.  ``mappable(uid)`` tells whether the program may switch to uid.
    """

    uids: tuple[IdMap, ...]
    gids: tuple[IdMap, ...]
    helper: bool
    setgroups: bool
    enter_as_root: bool = False  # the caller's id is not mapped: switch to 0 inside

    def mappable_uid(self, uid: int) -> bool:
        return any(m.inside <= uid < m.inside + m.count for m in self.uids)

    def mappable_gid(self, gid: int) -> bool:
        return any(m.inside <= gid < m.inside + m.count for m in self.gids)


def _subordinate_range(path: str, uid: int) -> tuple[int, int] | None:
    """The first ``start, count`` for the user in /etc/subuid or /etc/subgid."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            return start, count
    return None


def plan_id_maps(wanted_uid: int, wanted_gid: int) -> IdMapPlan:
    """Choose id maps so the program can run as ``wanted_uid:wanted_gid`` if possible.

    Root maps 0..count-1 onto an unprivileged range (its /etc/subuid and /etc/subgid
    entry, else :data:`ROOT_DEFAULT_RANGE`), so the sandbox's root is no host user;
    files keep their owners inside through an idmapped mount.  A plain user with newuidmap,
    newgidmap and subordinate ranges maps 0 to itself and 1.. to the range.
    Otherwise the caller's single id is mapped to ``wanted_*`` directly (the
    program then runs as that id without being able to switch).  A range that is
    not mapped in ocislim's own user namespace cannot be used, so inside a nested
    namespace both root and a plain user fall back to that single id.
    """
    uid, gid = os.getuid(), os.getgid()
    uid_map, gid_map = read_id_map("uid"), read_id_map("gid")
    sub_u = _subordinate_range("/etc/subuid", uid)
    sub_g = _subordinate_range("/etc/subgid", uid)
    u_start, u_count = sub_u or ROOT_DEFAULT_RANGE
    g_start, g_count = sub_g or ROOT_DEFAULT_RANGE
    usable = range_mapped(u_start, u_count, uid_map) and range_mapped(g_start, g_count, gid_map)
    if uid == 0 and usable:
        return IdMapPlan(
            (IdMap(0, u_start, u_count),),
            (IdMap(0, g_start, g_count),),
            helper=False,
            setgroups=True,
            enter_as_root=True,
        )
    helpers = shutil.which("newuidmap") and shutil.which("newgidmap")
    if uid != 0 and helpers and sub_u and sub_g and usable:
        return IdMapPlan(
            (IdMap(0, uid, 1), IdMap(1, u_start, u_count)),
            (IdMap(0, gid, 1), IdMap(1, g_start, g_count)),
            helper=True,
            setgroups=True,
        )
    return IdMapPlan(
        (IdMap(wanted_uid, uid, 1),), (IdMap(wanted_gid, gid, 1),), helper=False, setgroups=False
    )


def write_id_maps(pid: int, plan: IdMapPlan) -> None:
    """Write ``plan`` for the user namespace of ``pid`` (called from the parent namespace)."""
    if plan.helper:
        for tool, maps in (("newuidmap", plan.uids), ("newgidmap", plan.gids)):
            args = [tool, str(pid)]
            for m in maps:
                args += [str(m.inside), str(m.outside), str(m.count)]
            proc = subprocess.run(args, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                detail = proc.stderr.strip().splitlines()[-1:] or ["failed"]
                raise SandboxError(f"{tool} failed: {detail[0]}")
        return
    try:
        if not plan.setgroups:
            Path(f"/proc/{pid}/setgroups").write_text("deny")
        for name, maps in (("uid_map", plan.uids), ("gid_map", plan.gids)):
            text = "".join(f"{m.inside} {m.outside} {m.count}\n" for m in maps)
            Path(f"/proc/{pid}/{name}").write_text(text)
    except OSError as exc:
        raise SandboxError(f"cannot write id maps of the sandbox: {exc.strerror}") from exc


def detach_trees(
    pid: int, image_root: str, bind_sources: list[str]
) -> tuple[list[str], list[int], str | None]:
    """Root only: detached mounts of ``image_root`` (idmapped by the user namespace of
    ``pid``, so the image's owners are kept inside) and of each bind source.

    The sandbox's root (an unprivileged host id) then needs no search permission on
    the way to them.  Returns the sources, their descriptors, and a note when the
    image tree's filesystem refuses idmapping (files then appear owned by nobody).
    The caller closes the descriptors.
    """
    flags = libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | libc.AT_RECURSIVE
    sources: list[str] = []
    fds: list[int] = []
    note = None
    current = image_root
    try:
        fds.append(libc.open_tree(image_root, flags))
        sources.append(image_root)
        userns = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.mount_setattr(fds[0], libc.MOUNT_ATTR_IDMAP, userns)
        except OSError as exc:
            note = (
                f"idmapped mount refused ({exc.strerror}): image files appear owned by "
                "nobody inside the sandbox"
            )
        finally:
            os.close(userns)
        for current in bind_sources:
            if current not in sources:
                fds.append(libc.open_tree(current, flags))
                sources.append(current)
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise SandboxError(f"cannot open {current} for the sandbox: {exc.strerror}") from exc
    return sources, fds, note


def _read_sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def userns_unavailable_message(
    err: OSError, read_sysctl: Callable[[str], str | None] = _read_sysctl
) -> str:
    """One line naming the setting that keeps a plain user from user namespaces."""
    if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        setting = "kernel.unprivileged_userns_clone=0 (set it to 1)"
    elif read_sysctl("/proc/sys/user/max_user_namespaces") == "0":
        setting = "user.max_user_namespaces=0 (set it above 0)"
    elif read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        setting = (
            "kernel.apparmor_restrict_unprivileged_userns=1 (set it to 0 or allow "
            "userns for this program in an AppArmor profile)"
        )
    else:
        setting = (
            "check kernel.unprivileged_userns_clone, user.max_user_namespaces and "
            "kernel.apparmor_restrict_unprivileged_userns"
        )
    return f"user namespaces are not available to this user ({err.strerror}): {setting}"
