"""``ocislim unpack`` and ``convert`` run as a plain user (``tester``, via ``su``).

As a plain user, unpack must not change owners (they become the user's), must
skip device nodes (and say so), and must keep the image's modes, setuid and
setgid included, as ``umoci --rootless`` does; convert must still write the
original headers.
Skipped unless running as root with the user ``tester`` present.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clirun import PLAIN_USER, plain_user_dir, plain_user_python, run_cli
from tests.oci_build import Draft, oci
from tests.synth import M, layer

LAYERS = [
    [
        M("dev", "dir"),
        M("dev/null", "char", mode=0o666, dev=(1, 3)),
        M("dev/sda", "block", mode=0o660, dev=(8, 0)),
        M("dev/tty", "hardlink", link="dev/null"),
        M("ro", "dir", mode=0o555),
        M("ro/file", data=b"r", mode=0o444),
        M("locked", "dir", mode=0o000, uid=12345),
        M("locked/inner", "dir", mode=0o000),
        M("locked/inner/f", data=b"x", mode=0o000),
        M("suid", data=b"s", mode=0o4755, uid=0),
        M("owned", data=b"o", mode=0o600, uid=1000, gid=1000),
    ],
    [
        M("ro/added", data=b"later"),  # a lower read-only directory gets a new file
        M("dev/sda", data=b"replaced"),  # a skipped device replaced by a file
        M("dev/.wh.tty"),  # a whiteout of a skipped device's hardlink
    ],
]


@pytest.fixture
def work() -> Iterator[Path]:
    plain_user_python()
    base = plain_user_dir("ocislim-plain-")
    try:
        yield base
    finally:
        shutil.rmtree(base)


def as_user(*args: str) -> tuple[int, str, str]:
    python, source = plain_user_python()
    result = run_cli(*args, python=python, user=PLAIN_USER, pythonpath=source)
    return result.code, result.stdout, result.stderr


def test_unpack_skips_devices_and_says_so(work: Path) -> None:
    image = oci(work / "image.tar", Draft([layer(m) for m in LAYERS]))
    code, _, stderr = as_user("unpack", str(image), str(work / "rootfs"))
    assert code == 0, stderr
    assert "ocislim: note: 1 device node(s) not created (needs root): /dev/null" in stderr
    assert not os.path.lexists(work / "rootfs/dev/null")
    assert not os.path.lexists(work / "rootfs/dev/tty")
    assert (work / "rootfs/dev/sda").read_bytes() == b"replaced"
    code, stdout, stderr = as_user("unpack", "--json", str(image), str(work / "again"))
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert (summary["skipped_devices"], summary["privileged"]) == (["/dev/null"], False)


def test_unpack_leaves_a_tree_the_user_owns_and_can_remove(work: Path) -> None:
    """Owners become the user's; modes stay the image's, setuid included (as umoci --rootless)."""
    image = oci(work / "image.tar", Draft([layer(m) for m in LAYERS]))
    dest = work / "rootfs"
    code, _, stderr = as_user("unpack", "-q", str(image), str(dest))
    assert code == 0, stderr
    user = pwd.getpwnam(PLAIN_USER)
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), name
    modes = {
        "ro": 0o555,
        "ro/file": 0o444,
        "locked": 0o000,
        "locked/inner": 0o000,
        "locked/inner/f": 0o000,
        "suid": 0o4755,
        "owned": 0o600,
        "ro/added": 0o644,
    }
    for name, mode in modes.items():
        assert stat.S_IMODE(os.lstat(dest / name).st_mode) == mode, name
    assert (dest / "ro/added").read_bytes() == b"later"
    assert (dest / "locked/inner/f").read_bytes() == b"x"
    removed = subprocess.run(
        ["su", PLAIN_USER, "-s", "/bin/sh", "-c", f"chmod -R u+rwX '{dest}' && rm -rf '{dest}'"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert removed.returncode == 0, removed.stderr
    assert not dest.exists()


def test_convert_as_plain_user_keeps_original_headers(work: Path) -> None:
    image = oci(work / "image.tar", Draft([layer(m) for m in LAYERS]))
    out = work / "flat.tar"
    code, _, stderr = as_user("convert", "-q", "--flatten", "--compression", "none",
                              "--format", "docker-archive", str(image), str(out))  # fmt: skip
    assert code == 0, stderr
    with tarfile.open(out) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        (layer_name,) = manifest[0]["Layers"]
        blob = archive.extractfile(layer_name)
        assert blob is not None
        with tarfile.open(fileobj=blob) as tar:
            members = {m.name: m for m in tar}
    null = members["dev/null"]
    assert (null.type, null.devmajor, null.devminor) == (tarfile.CHRTYPE, 1, 3)
    assert (members["suid"].mode, members["suid"].uid) == (0o4755, 0)
    assert (members["owned"].uid, members["owned"].gid) == (1000, 1000)
    assert (members["locked"].mode, members["locked"].uid) == (0o000, 12345)
    assert "dev/tty" not in members
    assert members["dev/sda"].isfile()
