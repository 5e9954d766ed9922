"""python-ctypes-libraries: a library a Python package loads by name, with its data."""

from __future__ import annotations

from pathlib import Path

from ocislim.slim.keeper import first_seeds
from tests.synth import M
from tests.unit.slim_synth import keeper_over

T = "usr/lib/x86_64-linux-gnu"
SITE = "usr/lib/python3/dist-packages"
STATUS = b"""Package: libmagic1
Status: install ok installed
Architecture: amd64
Source: file
Version: 1:5.44-3

Package: libmagic-mgc
Status: install ok installed
Architecture: amd64
Source: file
Version: 1:5.44-3

Package: libmagic-dev
Status: install ok installed
Architecture: amd64
Source: file
Version: 1:5.44-3
"""
IMAGE = [
    M("usr/bin/python3.11", data=b"\x7fELF", mode=0o755),
    M("usr/lib/python3.11/os.py", data=b"# os"),
    M(
        "app/app.py",
        data=b"def describe(data):\n    import magic\n    return magic.from_buffer(data)\n",
    ),
    M(f"{SITE}/magic/__init__.py", data=b"from magic.loader import load_lib\n"),
    M(
        f"{SITE}/magic/loader.py",
        data=b"from ctypes.util import find_library\nfind_library('magic')\n",
    ),
    M(f"{SITE}/python_magic-0.4.26.egg-info/top_level.txt", data=b"magic\n"),
    M(f"{T}/libmagic.so.1.0.0", data=b"\x7fELF"),
    M(f"{T}/libmagic.so.1", "symlink", link="libmagic.so.1.0.0"),
    M(f"{T}/libmagic.so", "symlink", link="libmagic.so.1"),
    M("etc/magic", data=b"# local magic\n"),
    M("usr/lib/file/magic.mgc", data=b"mgc"),
    M("usr/share/misc/magic.mgc", "symlink", link="../../lib/file/magic.mgc"),
    M("usr/share/doc/libmagic1/copyright", data=b"c"),
    M("usr/include/magic.h", data=b"/* dev */"),
    M("var/lib/dpkg/status", data=STATUS),
    M(
        "var/lib/dpkg/info/libmagic1:amd64.list",
        data=f"/etc/magic\n/{T}/libmagic.so.1.0.0\n/{T}/libmagic.so.1\n"
        "/usr/share/doc/libmagic1/copyright\n".encode(),
    ),
    M(
        "var/lib/dpkg/info/libmagic-mgc.list",
        data=b"/usr/lib/file/magic.mgc\n/usr/share/misc/magic.mgc\n",
    ),
    M("var/lib/dpkg/info/libmagic-dev:amd64.list", data=b"/usr/include/magic.h\n"),
]


def kept(tmp_path: Path, disable: tuple[str, ...] = ()) -> set[str]:
    entry = {"Entrypoint": ["python3.11", "/app/app.py"], "WorkingDir": "/app"}
    keeper, config, options = keeper_over(tmp_path, IMAGE, entry, disable)
    keeper.extend(first_seeds(keeper, config, options, [], [], lambda note: None))
    return set(keeper.plan().paths)


def test_a_library_loaded_by_name_is_kept_with_its_source_packages_data(tmp_path: Path) -> None:
    result = kept(tmp_path / "on")
    assert {f"/{T}/libmagic.so.1", f"/{T}/libmagic.so.1.0.0"} <= result
    # libmagic reads /etc/magic and /usr/share/misc/magic.mgc (libmagic-mgc's link).
    assert {"/etc/magic", "/usr/share/misc/magic.mgc", "/usr/lib/file/magic.mgc"} <= result
    assert "/usr/include/magic.h" not in result  # a -dev package is no data
    assert "/usr/share/doc/libmagic1/copyright" not in result


def test_the_rule_switches_off(tmp_path: Path) -> None:
    result = kept(tmp_path / "off", ("python-ctypes-libraries",))
    assert f"/{T}/libmagic.so.1.0.0" not in result and "/etc/magic" not in result
