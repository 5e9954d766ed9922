"""The fixture images really are what other tests take them to be.

Layers are read straight from the OCI layout with ``tarfile``; skopeo, umoci and
podman (independent tools) confirm every format loads, merges and runs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import oci_schema
from tests.images import DEMO_IMAGE, FORMATS, IMAGE_NAMES, builder, fixture_image, image_reference
from tests.integration.build_support import Podman, podman_fixture
from tests.tools import require_tool

pytestmark = pytest.mark.integration

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# name -> (layer count, Entrypoint, Cmd, WorkingDir, ExposedPorts)
EXPECTED: dict[str, tuple[int, list[str] | None, list[str] | None, str, list[str]]] = {
    "python-app": (3, ["python3", "/app/app.py"], None, "/app", []),
    "bullseye-python": (2, ["python3", "-c", "print(1)"], None, "", []),
    "curl": (2, None, ["curl", "--version"], "", []),
    "node": (2, None, ["node", "-e", "console.log(1)"], "", []),
    "http-server": (2, None, ["python3", "-m", "http.server", "8080"], "", ["8080/tcp"]),
    "demo": (2, ["/demo/hello.sh"], None, "/demo", []),
    "flask-app": (3, None, ["python3", "/app/app.py"], "/app", ["8080/tcp"]),
    "express-app": (3, None, ["node", "/app/server.js"], "/app", ["3000/tcp"]),
    "nginx-site": (3, None, ["nginx", "-g", "daemon off;"], "", ["80/tcp"]),
    "perl-tool": (3, ["perl", "/app/tool.pl"], ["json"], "", []),
    "git-tool": (3, ["/app/gitmodes.sh"], ["init"], "", []),
    "java-app": (3, ["java", "/app/Main.java"], ["hello"], "", []),
    "sinatra-app": (3, None, ["ruby", "/app/app.rb"], "/app", ["4567/tcp"]),
    "imagemagick-tool": (3, ["/app/convert.sh"], ["png"], "", []),
    "graphviz-tool": (3, ["/app/render.sh"], ["svg"], "", []),
    "logs-tool": (3, ["/app/logq.sh"], ["search", "app.log.1.gz", "ERROR"], "", []),
    "user-tool": (3, ["/app/tool.py"], ["hello"], "", []),
    "helpers-tool": (3, ["/app/tool.sh"], ["version"], "", []),
    "postgres-db": (3, ["/app/start.sh"], None, "", []),
    "tomcat-site": (4, ["/usr/share/tomcat10/bin/catalina.sh"], ["run"], "", ["8080/tcp"]),
    "php-app": (
        3,
        None,
        ["php", "-S", "0.0.0.0:8000", "-t", "/app/public", "/app/app.php"],
        "/app",
        ["8000/tcp"],
    ),
    "go-static": (3, ["/usr/local/bin/goapp"], ["serve"], "", ["8090/tcp"]),
    "apache-site": (3, None, ["apache2ctl", "-D", "FOREGROUND"], "", ["80/tcp"]),
    "python-cli": (3, ["python3", "/app/pytool.py"], ["csv"], "", []),
}


def test_expectations_cover_every_image() -> None:
    assert set(EXPECTED) == set(IMAGE_NAMES)


# --------------------------------------------------------------------------- layout reading


def _blob(layout: Path, digest: str) -> Path:
    algorithm, hex_part = digest.split(":", 1)
    assert algorithm == "sha256" and len(hex_part) == 64
    return layout / "blobs" / "sha256" / hex_part


def _json_blob(layout: Path, digest: str) -> dict[str, Any]:
    data = _blob(layout, digest).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return json.loads(data)


def _manifest_and_config(layout: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    index = json.loads((layout / "index.json").read_text())
    assert len(index["manifests"]) == 1
    manifest = _json_blob(layout, index["manifests"][0]["digest"])
    return manifest, _json_blob(layout, manifest["config"]["digest"])


def _members(layout: Path, digest: str) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """Each entry of a gzip layer with the bytes of regular files."""
    with gzip.open(_blob(layout, digest), "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for member in tar:
            data = None
            if member.isreg():
                extracted = tar.extractfile(member)
                assert extracted is not None
                data = extracted.read()
            yield member, data


def _norm(name: str) -> str:
    name = name[2:] if name.startswith("./") else name
    return name.rstrip("/")


@pytest.fixture(scope="module")
def python_app_layers() -> list[dict[str, tuple[tarfile.TarInfo, str | None]]]:
    """Per layer of python-app: path -> (header, sha256 of content)."""
    layout = fixture_image("python-app", "oci-dir")
    manifest, config = _manifest_and_config(layout)
    layers = []
    for descriptor, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        entries: dict[str, tuple[tarfile.TarInfo, str | None]] = {}
        uncompressed = hashlib.sha256()
        with gzip.open(_blob(layout, descriptor["digest"]), "rb") as raw:
            for chunk in iter(lambda: raw.read(1 << 20), b""):
                uncompressed.update(chunk)
        assert "sha256:" + uncompressed.hexdigest() == diff_id
        for member, data in _members(layout, descriptor["digest"]):
            digest = hashlib.sha256(data).hexdigest() if data is not None else None
            entries[_norm(member.name)] = (member, digest)
        layers.append(entries)
    return layers


# --------------------------------------------------------------------------- python-app layers


def test_python_app_has_base_python_and_app_layers(python_app_layers: list[dict]) -> None:
    base, python, app = python_app_layers
    assert "usr/bin/bash" in base and "usr/bin/python3.11" not in base
    assert "usr/bin/python3.11" in python and "usr/bin/bash" not in python
    assert "etc/ssl/certs/ca-certificates.crt" in python
    assert not any(name.startswith("usr/lib/python3") for name in base)
    assert {"app/app.py", "app/VERSION", "app/RELEASE", "app/python"} <= set(app)


def test_python_layer_holds_only_changes(python_app_layers: list[dict]) -> None:
    base, python, _ = python_app_layers
    overlap = [
        name
        for name, (member, digest) in python.items()
        if member.isreg() and name in base and base[name][0].isreg()
    ]
    assert overlap, "installing packages changes e.g. /var/lib/dpkg/status"
    assert "var/lib/dpkg/status" in overlap
    unchanged = [name for name in overlap if python[name][1] == base[name][1]]
    assert unchanged == []
    assert len(python) < len(base)


def test_app_layer_whiteouts_and_opaque_dir(python_app_layers: list[dict]) -> None:
    base, python, app = python_app_layers
    whiteouts = sorted(name for name in app if os.path.basename(name).startswith(".wh."))
    assert whiteouts == [
        "usr/bin/.wh.pydoc3",
        "usr/bin/.wh.pydoc3.11",
        "usr/lib/python3.11/.wh.pydoc_data",
        "usr/share/doc/.wh..wh..opq",
    ]
    # Each plain whiteout hides something a lower layer really has.
    lower = set(base) | set(python)
    for name in whiteouts[:3]:
        directory, marker = os.path.split(name)
        assert f"{directory}/{marker[len('.wh.') :]}" in lower
    assert "usr/lib/python3.11/pydoc_data/topics.py" in python
    # The opaque directory hides many lower entries and holds new content of its own.
    assert sum(1 for name in lower if name.startswith("usr/share/doc/")) > 50
    assert [n for n in app if n.startswith("usr/share/doc/") and ".wh." not in n] == [
        "usr/share/doc/app",
        "usr/share/doc/app/README",
    ]
    release, version = app["app/RELEASE"][0], app["app/VERSION"][0]
    assert {release.type, version.type} == {tarfile.REGTYPE, tarfile.LNKTYPE}
    assert app["app/python"][0].issym() and app["app/python"][0].linkname == "/usr/bin/python3"


def test_app_script_is_the_recipe(python_app_layers: list[dict]) -> None:
    _, _, app = python_app_layers
    member, digest = app["app/app.py"]
    recipe_files = {path: content for path, content, _ in builder.IMAGES["python-app"].app.files}
    assert digest == hashlib.sha256(recipe_files["app/app.py"].encode()).hexdigest()
    assert member.mode & 0o111


# --------------------------------------------------------------------------- configs and formats


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_and_schemas(name: str) -> None:
    layout = fixture_image(name, "oci-dir")
    manifest, config = _manifest_and_config(layout)
    layers, entrypoint, cmd, workdir, ports = EXPECTED[name]
    assert len(manifest["layers"]) == layers == len(config["rootfs"]["diff_ids"])
    run = config["config"]
    assert run.get("Entrypoint") == entrypoint
    assert run.get("Cmd") == cmd
    assert run.get("WorkingDir", "") == workdir
    assert sorted(run.get("ExposedPorts", {})) == ports
    assert run["Env"][0] == DEFAULT_PATH
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    if not oci_schema.available():
        message = "OCI JSON schemas missing (golang-github-opencontainers-image-spec-dev)"
        if os.environ.get("OCISLIM_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    oci_schema.validate("manifest", manifest)
    oci_schema.validate("config", config)
    oci_schema.validate("index", json.loads((layout / "index.json").read_text()))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_skopeo_reads_every_format(name: str, fmt: str) -> None:
    skopeo = require_tool("skopeo")
    path = fixture_image(name, fmt)
    path_ref = f"oci:{path}:{image_reference(name)}" if fmt == "oci-dir" else f"{fmt}:{path}"
    config = json.loads(
        subprocess.run(
            [skopeo, "inspect", "--config", path_ref], capture_output=True, check=True
        ).stdout
    )
    layers, entrypoint, cmd, _, _ = EXPECTED[name]
    assert config["config"].get("Entrypoint") == entrypoint
    assert config["config"].get("Cmd") == cmd
    assert len(config["rootfs"]["diff_ids"]) == layers


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_archives_carry_the_reference(name: str) -> None:
    reference = image_reference(name)
    with tarfile.open(fixture_image(name, "oci-archive")) as tar:
        index = _tar_json(tar, "index.json")
    annotations = index["manifests"][0]["annotations"]
    assert annotations["org.opencontainers.image.ref.name"] == reference
    with tarfile.open(fixture_image(name, "docker-archive")) as tar:
        manifest = _tar_json(tar, "manifest.json")
    assert manifest[0]["RepoTags"] == [reference]


# --------------------------------------------------------------------------- merged tree


def test_umoci_merges_python_app_as_claimed(tmp_path: Path) -> None:
    umoci = require_tool("umoci")
    layout = fixture_image("python-app", "oci-dir")
    bundle = tmp_path / "bundle"
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    subprocess.run(
        [umoci, "unpack", *rootless, "--image", f"{layout}:{image_reference('python-app')}",
         str(bundle)],
        check=True, capture_output=True,
    )  # fmt: skip
    root = bundle / "rootfs"
    assert sorted(os.listdir(root / "usr/share/doc")) == ["app"]
    assert not (root / "usr/bin/pydoc3").exists()
    assert not (root / "usr/lib/python3.11/pydoc_data").exists()
    assert (root / "usr/lib/python3.11/json/__init__.py").is_file()
    assert os.path.samefile(root / "app/RELEASE", root / "app/VERSION")
    assert os.readlink(root / "app/python") == "/usr/bin/python3"
    assert (root / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000
    # No host files leak into the image: the runtime provides these.
    assert not (root / "etc/resolv.conf").exists()
    assert not (root / "etc/hostname").exists()
    assert os.listdir(root / "dev") == []
    shutil.rmtree(bundle, ignore_errors=True)


def test_bullseye_has_separate_nss_dns() -> None:
    layout = fixture_image("bullseye-python", "oci-dir")
    manifest, _ = _manifest_and_config(layout)
    names = {_norm(m.name) for m, _ in _members(layout, manifest["layers"][0]["digest"])}
    assert "lib/x86_64-linux-gnu/libnss_dns.so.2" in names
    assert "lib/x86_64-linux-gnu/libc-2.31.so" in names


# --------------------------------------------------------------------------- committed demo


def _tar_json(tar: tarfile.TarFile, name: str) -> Any:
    member = tar.extractfile(name)
    assert member is not None, name
    return json.load(member)


def test_committed_demo_is_a_small_real_oci_archive() -> None:
    assert DEMO_IMAGE.stat().st_size < 10 * 1024 * 1024
    files: dict[str, bytes] = {}
    with tarfile.open(DEMO_IMAGE) as tar:
        names = tar.getnames()
        layout = _tar_json(tar, "oci-layout")
        index = _tar_json(tar, "index.json")
        manifest = _tar_json(tar, f"blobs/sha256/{index['manifests'][0]['digest'][7:]}")
        config = _tar_json(tar, f"blobs/sha256/{manifest['config']['digest'][7:]}")
        for layer in manifest["layers"]:
            blob = tar.extractfile(f"blobs/sha256/{layer['digest'][7:]}")
            assert blob is not None
            with gzip.open(blob) as raw, tarfile.open(fileobj=raw, mode="r|") as inner:
                for member in inner:
                    data = inner.extractfile(member) if member.isreg() else None
                    if data is not None:
                        files[_norm(member.name)] = data.read(64)
    assert layout == {"imageLayoutVersion": "1.0.0"}
    assert names[:2] == ["oci-layout", "index.json"]
    assert config["config"]["Entrypoint"] == ["/demo/hello.sh"]
    assert files["bin/busybox"].startswith(b"\x7fELF")
    assert files["lib/x86_64-linux-gnu/libc.so.6"].startswith(b"\x7fELF")
    assert files["demo/hello.sh"].startswith(b"#!/bin/sh\n")
    # Plenty that the demo does not need: glibc's gconv modules.
    assert sum(1 for name in files if "/gconv/" in name) > 100


def test_oci_archive_writer_is_deterministic(tmp_path: Path) -> None:
    layout = fixture_image("demo", "oci-dir")
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    builder.write_oci_archive(layout, first)
    builder.write_oci_archive(layout, second)
    assert first.read_bytes() == second.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a.tar", "b.tar"]  # no temporary files left


# --------------------------------------------------------------------------- running


__all__ = ["podman_fixture"]  # the shared podman fixture, registered by import


class FixturePodman:
    """Runs fixture images by name, loading each (name, format) once."""

    def __init__(self, podman: Podman) -> None:
        self._podman = podman
        self._loaded: set[tuple[str, str]] = set()

    def run(self, name: str, *args: str, fmt: str = "oci-archive") -> str:
        """stdout of the image's default command (with ``args``); fails unless it exits 0."""
        if (name, fmt) not in self._loaded:
            self._podman.load(fixture_image(name, fmt), image_reference(name))
            self._loaded.add((name, fmt))
        proc = self._podman.run(image_reference(name), *args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture(scope="module", name="fixture_podman")
def fixture_podman_fixture(podman: Podman) -> FixturePodman:
    return FixturePodman(podman)


def test_python_app_runs_every_mode(fixture_podman: FixturePodman) -> None:
    default = json.loads(fixture_podman.run("python-app"))
    assert default == {"app": "ocislim-fixture", "cwd": "/app", "version": "1.0.0"}
    assert fixture_podman.run("python-app", "net") == "net: localhost -> 127.0.0.1\n"
    tls = fixture_podman.run("python-app", "tls")
    assert tls.startswith("tls: ") and int(tls.split()[1]) > 50
    assert fixture_podman.run("python-app", "db") == "db: rows=3 sum=6\n"


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("bullseye-python", "docker-archive", "1\n"),
        ("node", "oci-archive", "1\n"),
        ("demo", "oci-archive", "hello from the ocislim demo image (6 words)\n"),
    ],
)
def test_default_commands_run(
    fixture_podman: FixturePodman, name: str, fmt: str, expected: str
) -> None:
    assert fixture_podman.run(name, fmt=fmt) == expected


def test_curl_default_command_runs(fixture_podman: FixturePodman) -> None:
    assert fixture_podman.run("curl").startswith("curl 7.")
