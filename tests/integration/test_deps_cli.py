"""``ocislim deps`` end to end on fixture images: output shapes, defaults, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.clirun import PLAIN_USER, plain_user_dir, plain_user_python, run_cli
from tests.images import fixture_image

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rootfs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deps-cli")


def test_default_program_json(rootfs_cache: Path) -> None:
    image = fixture_image("python-app")
    result = run_cli("deps", str(image), "--json", "--rootfs", str(rootfs_cache / "py"))
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"objects", "lazy", "paths", "reasons"}
    main = data["objects"][0]
    # The entrypoint is ["python3", "/app/app.py"]: python3 found on the image's PATH.
    assert main["path"] == "/usr/bin/python3"
    assert main["canonical"] == "/usr/bin/python3.11"
    assert main["interpreter"] == "/lib64/ld-linux-x86-64.so.2"
    assert main["needed"]["libc.so.6"] == "/lib/x86_64-linux-gnu/libc.so.6"
    assert main["missing"] == []
    for path in ("/usr/bin/python3", "/usr/bin/python3.11", "/lib", "/etc/nsswitch.conf"):
        assert path in data["paths"], path
    # glibc 2.36 resolves files and dns itself: no libnss_files/libnss_dns is loaded.
    assert not any("libnss_files" in p or "libnss_dns" in p for p in data["paths"])
    assert data["paths"] == sorted(data["paths"])
    # Reusing the unpacked tree gives the same answer.
    again = run_cli("deps", str(image), "--json", "-q", "--rootfs", str(rootfs_cache / "py"))
    assert json.loads(again.stdout) == data


def test_tree_and_list(rootfs_cache: Path) -> None:
    image = fixture_image("curl")
    target = str(rootfs_cache / "curl")
    tree = run_cli("deps", str(image), "/usr/bin/curl", "--tree", "-q", "--rootfs", target)
    assert tree.code == 0, tree.stderr
    assert tree.stdout.startswith("/usr/bin/curl (dynamic")
    assert "── libcurl.so.4 => /lib/x86_64-linux-gnu/libcurl.so.4" in tree.stdout
    assert "loaded at run time:" in tree.stdout
    listing = run_cli("deps", str(image), "curl", "-q", "--rootfs", target)
    assert listing.code == 0
    line = next(x for x in listing.stdout.splitlines() if x.startswith("/usr/bin/curl "))
    assert "requested object" in line
    assert listing.stdout.rstrip().splitlines()[-1].startswith("1 object analysed (1 dynamic)")


def test_all_objects(rootfs_cache: Path) -> None:
    image = fixture_image("bullseye-python")
    result = run_cli(
        "deps", str(image), "--all", "--json", "--rootfs", str(rootfs_cache / "bullseye")
    )
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    dynamic = [o for o in data["objects"] if o["kind"] == "dynamic"]
    assert len(dynamic) > 300
    assert all(o["missing"] == [] for o in dynamic)
    assert {o["kind"] for o in data["objects"]} <= {"dynamic", "static"}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["/no/such/file"], 3, "/no/such/file: not found in the image"),
        (["nosuchprogram"], 3, "nosuchprogram: not found on the image's PATH"),
    ],
)
def test_bad_paths(rootfs_cache: Path, args: list[str], code: int, message: str) -> None:
    image = fixture_image("python-app")
    result = run_cli("deps", str(image), *args, "-q", "--rootfs", str(rootfs_cache / "py"))
    assert result.code == code
    assert result.stderr.strip() == f"ocislim: error: {message}"
    assert result.stdout == ""


def test_rootfs_holding_something_else_is_refused(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    result = run_cli("deps", str(fixture_image("demo")), "--rootfs", str(busy))
    assert result.code == 8
    assert (busy / "keep.txt").read_text() == "mine"


def test_plain_user_script_entrypoint() -> None:
    python, source = plain_user_python()
    image = fixture_image("demo")
    work = plain_user_dir("ocislim-deps-")
    try:
        copy = work / "demo.oci.tar"
        shutil.copy(image, copy)
        copy.chmod(0o644)
        result = run_cli(
            "deps", str(copy), "--json", "-q", python=python, user=PLAIN_USER, pythonpath=source
        )
        assert result.code == 0, result.stderr
        data = json.loads(result.stdout)
        kinds = {o["path"]: o["kind"] for o in data["objects"]}
        # /demo/hello.sh is a "#!/bin/sh" script; /bin/sh is a link to busybox.
        assert kinds["/demo/hello.sh"] == "script"
        assert kinds["/bin/sh"] == "dynamic"
        assert {"/bin/sh", "/demo/hello.sh"} <= set(data["paths"])
        assert any(p.endswith("/libc.so.6") for p in data["paths"])
        assert list(work.iterdir()) == [copy]  # the temporary unpack is gone
    finally:
        shutil.rmtree(work)
