"""Build a :class:`~ocislim.sandbox.runner.RunSpec` from an image config and user flags.

Follows what container runtimes do: COMMAND replaces entrypoint and cmd;
``--entrypoint`` clears the image's cmd unless ``--cmd`` is given; Env gets a
default PATH, HOME (from the user's passwd entry, else "/") and HOSTNAME; USER
("name", "uid", "name:group", "uid:gid") is resolved in the image's own
/etc/passwd and /etc/group, read inside the image root (symlinks resolved
within it).  Pure apart from reading those two files.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ocislim.errors import SandboxError, UsageError
from ocislim.image.models import DEFAULT_PATH, ImageRunConfig
from ocislim.sandbox.analysis import DirTree, resolve
from ocislim.sandbox.namespaces import DEFAULT_TMPFS_SIZE, BindMount
from ocislim.sandbox.spec import Probe, RunSpec


@dataclass(frozen=True)
class _Account:
    uid: int
    gid: int
    home: str
    name: str | None


def read_image_file(root: Path, path: str) -> str | None:
    """Text of regular file ``path`` inside the image at ``root``; None if absent."""
    tree = DirTree(root)
    res = resolve(tree, path)
    if res.status != "found" or res.kind != "file":
        return None
    fd = tree.open_file(res.path)  # no link followed at any component, no FIFO opened
    if fd is None:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def _table(text: str | None, fields: int) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            rows.append(parts)
    return rows


def resolve_user(root: Path, user: str) -> tuple[int, int, tuple[int, ...], str]:
    """(uid, gid, supplementary gids, home) for a USER string, looked up in the image."""
    name, _, group = (user or "0").partition(":")
    passwd = _table(read_image_file(root, "/etc/passwd"), 7)
    groups = _table(read_image_file(root, "/etc/group"), 4)
    account: _Account | None = None
    for row in passwd:
        if row[0] == name or (name.isdigit() and row[2] == name):
            try:
                account = _Account(int(row[2]), int(row[3]), row[5] or "/", row[0])
            except ValueError:
                continue
            break
    if account is None:
        if not name.isdigit():
            raise SandboxError(f"user {name!r} not found in the image's /etc/passwd")
        account = _Account(int(name), 0, "/", None)
    gid = account.gid
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups if g[0] == group), None)
            if match is None:
                raise SandboxError(f"group {group!r} not found in the image's /etc/group")
            gid = int(match[2])
    extra = {gid}
    if account.name:
        for row in groups:
            members = row[3].split(",") if row[3] else []
            if account.name in members and row[2].isdigit():
                extra.add(int(row[2]))
    return account.uid, gid, tuple(sorted(extra)), account.home


def parse_mount(value: str) -> BindMount:
    """``HOST:PATH[:ro|:rw]`` into a bind mount (HOST made absolute)."""
    parts = value.split(":")
    read_only = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        read_only = parts[2] == "ro"
        parts = parts[:2]
    if len(parts) != 2 or not parts[0] or not parts[1].startswith("/"):
        raise UsageError(f"--mount {value!r}: expected HOST:PATH[:ro] with an absolute PATH")
    return BindMount(os.path.abspath(parts[0]), os.path.normpath(parts[1]), read_only)


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str) -> int:
    """``--tmpfs-size``: bytes, or a number with k, m, g or t (powers of 1024), > 0."""
    text = value.strip().lower().removesuffix("ib").removesuffix("b")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS else ""
    number = text[: len(text) - len(unit)]
    try:
        size = int(float(number) * _SIZE_UNITS[unit])
    except ValueError:
        raise UsageError(f"size {value!r}: expected bytes or a number with k, m, g or t") from None
    if size <= 0:
        raise UsageError(f"size {value!r} must be positive")
    return size


def env_item(item: str, flag: str) -> tuple[str, str] | None:
    """``K=V`` as a pair; ``K`` alone takes the caller's value (None when it has none).
    Raises :class:`UsageError` naming ``flag`` for an item without a name."""
    key, sep, value = item.partition("=")
    if not key:
        raise UsageError(f"{flag} {item!r}: expected K=V")
    if sep:
        return key, value
    return (key, os.environ[key]) if key in os.environ else None


def run_spec(
    config: ImageRunConfig,
    root: Path,
    *,
    command: Sequence[str] = (),
    entrypoint: str | None = None,
    cmd: str | None = None,
    env: Sequence[str] = (),
    workdir: str | None = None,
    user: str | None = None,
    mounts: Sequence[str] = (),
    network: Literal["none", "host"] = "none",
    timeout: float | None = None,
    probes: Sequence[Probe] = (),
    hostname: str = "ocislim",
    stdout: int = 1,
    tmpfs_size: int = DEFAULT_TMPFS_SIZE,
) -> RunSpec:
    """The run an image describes, with the user's overrides applied."""
    if command:
        argv = list(command)
    else:
        ep = shlex.split(entrypoint) if entrypoint is not None else list(config.entrypoint or [])
        if cmd is not None:
            args = shlex.split(cmd)
        else:
            args = [] if entrypoint is not None else list(config.cmd or [])
        argv = ep + args
    if not argv:
        raise UsageError("nothing to run: the image has no entrypoint or cmd; give a COMMAND")
    uid, gid, groups, home = resolve_user(root, user if user is not None else config.user)
    variables: dict[str, str] = {}
    for item in [*config.env, *env]:
        pair = env_item(item, "--env")
        if pair is not None:
            variables[pair[0]] = pair[1]
    variables.setdefault("PATH", DEFAULT_PATH)
    variables.setdefault("HOSTNAME", hostname)
    variables.setdefault("HOME", home)
    directory = workdir if workdir is not None else (config.working_dir or "/")
    if not directory.startswith("/"):
        raise UsageError(f"working directory {directory!r} must be absolute")
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be positive")
    return RunSpec(
        argv=tuple(argv),
        env=tuple(f"{k}={v}" for k, v in variables.items()),
        workdir=directory,
        uid=uid,
        gid=gid,
        groups=groups,
        mounts=tuple(parse_mount(m) for m in mounts),
        network=network,
        timeout=timeout,
        hostname=hostname,
        probes=tuple(probes),
        stdout=stdout,
        tmpfs_size=tmpfs_size,
    )
