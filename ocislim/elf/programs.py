"""Finding what to analyse in an image: programs on its PATH, ``#!`` lines, ELF files.

All lookups are in-image paths read through :class:`~ocislim.elf.rootpath.RootFS`,
so they never leave the image root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping

from ocislim.elf.elfinfo import is_elf_file
from ocislim.elf.rootpath import RootFS, join, tidy
from ocislim.image.models import DEFAULT_PATH


def env_map(env: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """An image Env (``["KEY=VALUE", ...]``, items without ``=`` ignored) as a mapping."""
    if isinstance(env, Mapping):
        return dict(env)
    out: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if sep:
            out[key] = value
    return out


def find_program(
    rootfs: RootFS, name: str, env: Mapping[str, str] | Iterable[str], workdir: str = "/"
) -> str | None:
    """In-image path of the program ``name`` as ``execvp`` would find it (None: absent).

    Names with a slash are taken relative to ``workdir``; others are searched on the
    image's ``PATH`` (its default when the environment has none) for an executable
    regular file.
    """
    if "/" in name:
        path = tidy(name if name.startswith("/") else join(workdir, name))
        return path if rootfs.resolve(path).exists else None
    search = env_map(env).get("PATH", DEFAULT_PATH)
    for directory in search.split(":"):
        if not directory.startswith("/"):
            directory = join(workdir, directory or ".")
        candidate = tidy(join(directory, name))
        mode = rootfs.mode(candidate)
        if mode is not None and stat.S_ISREG(mode) and mode & 0o111:
            return candidate
    return None


def parse_shebang(head: bytes) -> tuple[str, str | None] | None:
    """(interpreter, optional single argument) from a ``#!`` line, as Linux splits it."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].strip(b" \t\r")
    if not line:
        return None
    parts = line.split(None, 1)
    interp = parts[0].decode("utf-8", "replace")
    arg = parts[1].strip().decode("utf-8", "replace") if len(parts) > 1 else None
    return interp, arg


def find_elf_objects(rootfs: RootFS) -> list[str]:
    """Every regular file in the image that starts with the ELF magic, sorted."""
    out: list[str] = []
    stack = ["/"]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(rootfs.host(directory)))
        except OSError:
            continue
        for entry in entries:
            path = join(directory, entry.name)
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_size < 52:
                        continue
                    if is_elf_file(entry.path):  # a FIFO swapped in is refused, not opened
                        out.append(path)
            except OSError:
                continue
    out.sort()
    return out
