"""Oracle: every image file ``strace -f`` sees a program reach must be in ``files``.

The same command runs twice on the same unpacked fixture image: under
``strace -ff`` in a plain chroot (``unshare -r --root``), and under
``ocislim.sandbox.trace``.  strace's successful path calls are made canonical by
the image's own ``realpath`` run inside the chroot; those that exist in the tree
and are not runtime-provided (/proc, /dev, /sys, /etc/hosts...) must all appear
in the trace's files (goal 100%, at least 99.5%).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from ocislim.sandbox import RunSpec, trace
from tests.tools import require_tool

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]

ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}
PYTHON_IMPORTS = (
    "import json, email.parser, http.client, decimal, asyncio, xml.dom.minidom, "
    "urllib.request, csv, logging, sqlite3, ssl, zipfile, tarfile, socket; "
    "socket.getaddrinfo('localhost', 80)"
)
WORKLOADS = {
    "python-stdlib": ("python-app", ["python3", "-c", PYTHON_IMPORTS]),
    "shell-pipeline": (
        "python-app",
        ["sh", "-c", "ls -la /usr/lib | sort | head -3 >/dev/null; grep root /etc/passwd | wc -l"],
    ),
    "node": ("node", ["node", "-e", "require('fs').readdirSync('/usr'); require('os').hostname()"]),
    "curl": ("curl", ["curl", "-s", "-o", "/dev/null", "file:///etc/os-release"]),
}
RUNTIME = ("/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
NOFOLLOW = {
    "lstat", "readlink", "readlinkat", "unlink", "unlinkat", "rmdir", "rename", "renameat",
    "renameat2", "lgetxattr", "llistxattr", "mkdir", "mkdirat", "lchown",
}  # fmt: skip
SKIP = {"symlink", "symlinkat", "chroot", "execveat"}
TWO_PATHS = {"rename", "renameat", "renameat2", "link", "linkat"}
LINE = re.compile(r"^(\w+)\((.*)\)\s+=\s+(\S+)(.*)$")
STRING = re.compile(r'(?:(AT_FDCWD|\d+)<([^>]*)>, )?"((?:[^"\\]|\\.)*)"')


def _unescape(text: str) -> str:
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _rootfs(name: str, cache: Path) -> Path:
    from ocislim.image import open_image
    from ocislim.layers.rootfs import prepared_rootfs
    from tests.images import fixture_image

    target = cache / name
    with open_image(fixture_image(name)) as img, prepared_rootfs(img, target) as root:
        return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("strace-rootfs")


def strace_paths(root: Path, argv: list[str], out: Path) -> set[str]:
    """Canonical image paths that strace saw successful path calls reach."""
    strace = require_tool("strace")
    unshare = require_tool("unshare")
    prefix = out / "st"
    subprocess.run(
        [strace, "-ff", "-qq", "-y", "-s", "8192", "-e", "trace=%file,%process",
         "-o", str(prefix), unshare, "-r", "--pid", "--fork", "--mount-proc",
         f"--root={root}", "--wd=/", *argv],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=300,
    )  # fmt: skip
    rootstr = str(root)
    direct: set[str] = set()
    follow: list[str] = []
    parents: list[tuple[str, str]] = []
    for log in out.glob("st.*"):
        lines = log.read_text(errors="replace").splitlines()
        if lines and lines[0].startswith("execve(") and "unshare" in lines[0].split(",")[0]:
            continue  # the unshare parent, outside the chroot
        # In unshare's child only what follows its exec of the program counts.
        started = not any(line.startswith("chroot(") for line in lines)
        for line in lines:
            if line.startswith("execve("):
                started = True
            match = LINE.match(line)
            if not started or not match:
                continue
            name, args, ret, rest = match.groups()
            if ret.startswith("-1") or name in SKIP:
                continue
            opened = re.match(r"^<([^>]*)>", rest.strip()) if ret.isdigit() else None
            if opened and opened.group(1).startswith(rootstr + "/"):
                direct.add(opened.group(1)[len(rootstr) :])
                continue
            strings = STRING.findall(args)[: 2 if name in TWO_PATHS else 1]
            for _, base, raw in strings:
                path = _unescape(raw)
                if not path.startswith("/"):
                    if not base.startswith(rootstr):
                        continue
                    path = base[len(rootstr) :].rstrip("/") + "/" + path
                nofollow = name in NOFOLLOW or "AT_SYMLINK_NOFOLLOW" in args
                if nofollow and path.rstrip("/").rpartition("/")[2] not in ("", ".", ".."):
                    head, _, tail = path.rstrip("/").rpartition("/")
                    parents.append((head or "/", tail))
                else:
                    follow.append(path)
    queries = follow + [head for head, _ in parents]
    canonical = _realpath_inside(root, queries)
    result = set(direct)
    result.update(canonical[: len(follow)])
    for (_, tail), real_head in zip(parents, canonical[len(follow) :], strict=True):
        result.add(real_head.rstrip("/") + "/" + tail)
    return {
        p
        for p in result
        if os.path.lexists(rootstr + p)
        and not any(p == r or p.startswith(r + "/") for r in RUNTIME)
    }


def _realpath_inside(root: Path, paths: list[str]) -> list[str]:
    if not paths:
        return []
    proc = subprocess.run(
        [require_tool("unshare"), "-r", f"--root={root}", "realpath", "-m", "-z", "--", *paths],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    out = proc.stdout.decode(errors="surrogateescape").split("\0")[:-1]
    assert len(out) == len(paths)
    return out


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_trace_covers_what_strace_sees(workload: str, cache: Path, tmp_path: Path) -> None:
    image, argv = WORKLOADS[workload]
    root = _rootfs(image, cache)
    expected = strace_paths(root, argv, tmp_path)
    assert len(expected) > 10, "strace saw too little: the oracle run failed"
    spec = RunSpec(argv=tuple(argv), env=tuple(f"{k}={v}" for k, v in ENV.items()), stdout=2)
    result = trace(root, spec)
    assert result.exit_code == 0
    seen = {f.path for f in result.report.files}
    missing = sorted(expected - seen)
    coverage = 1 - len(missing) / len(expected)
    print(f"{workload}: {len(expected)} paths by strace, coverage {coverage:.2%}")
    assert coverage >= 0.995, f"not traced: {missing[:20]}"
