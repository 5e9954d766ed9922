"""Inputs people have, made by podman and skopeo: ``podman save`` piped into ocislim,
compressed with gzip or zstd, skopeo's ``dir`` and ``oci`` transports, multi-image
docker archives, and outputs named with a transport that skopeo and podman read back.

podman runs with private storage (root only; see ``build_support``); the tools are
required under ``OCISLIM_REQUIRE_TOOLS=1`` and the tests skip without them otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clirun import REPO
from tests.images import DEMO_IMAGE
from tests.integration.build_support import Podman, podman_fixture
from tests.integration.consumers_support import tree_signature
from tests.tools import require_tool

__all__ = ["podman_fixture"]

DEMO_REF = "localhost/ocislim/demo:latest"
OTHER_REF = "localhost/other:2"
DEMO_OUTPUT = "hello from the ocislim demo image (6 words)\n"


def ocislim(
    *args: str, stdin: bytes | None = None, tmpdir: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``ocislim ARGS`` in a subprocess; ``stdin`` through a real pipe."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        [sys.executable, "-m", "ocislim", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=env,
        check=False,
        timeout=600,
    )


def ok(done: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert done.returncode == 0, done.stderr.decode()
    return done


def skopeo(*args: str) -> str:
    exe = require_tool("skopeo")
    done = subprocess.run(
        [exe, "--insecure-policy", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def loaded(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """podman with the demo image (as ``DEMO_REF``) and a second image, its flattened copy."""
    podman.load(DEMO_IMAGE, DEMO_REF)
    other = tmp_path_factory.mktemp("other") / "other.tar"
    ok(ocislim("convert", "-q", "--flatten", "--tag", OTHER_REF, str(DEMO_IMAGE), str(other)))
    podman.load(other, OTHER_REF)
    yield podman


def podman_save(podman: Podman, fmt: str, *names: str) -> bytes:
    args = ["save", "--format", fmt]
    if len(names) > 1:
        args.append("--multi-image-archive")
    done = subprocess.run([*podman.cmd, *args, *names], capture_output=True, check=True)
    return done.stdout


def compress(data: bytes, algorithm: str) -> bytes:
    exe = require_tool(algorithm)
    return subprocess.run([exe, "-c"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_podman_save_piped_into_build(loaded: Podman, tmp_path: Path, fmt: str) -> None:
    data = podman_save(loaded, fmt, DEMO_REF)
    spool = tmp_path / "tmp"
    spool.mkdir()
    out = tmp_path / "slim.tar"
    done = ok(ocislim("build", "-", "-o", str(out), "-q", "--json", stdin=data, tmpdir=spool))
    summary = json.loads(done.stdout)
    assert summary["verification"]["passed"] is True, summary
    assert os.listdir(spool) == []  # the spooled copy of stdin is gone
    tag = loaded.load(out)
    assert tag.endswith("ocislim/demo.slim:latest")
    assert loaded.run(tag).stdout == DEMO_OUTPUT


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_compressed_podman_save_is_read_and_untouched(
    loaded: Podman, tmp_path: Path, algorithm: str
) -> None:
    packed = tmp_path / "saved.tar.x"  # detected by magic, not by name
    packed.write_bytes(compress(podman_save(loaded, "oci-archive", DEMO_REF), algorithm))
    before = packed.read_bytes()
    info = json.loads(ok(ocislim("inspect", "--json", str(packed))).stdout)
    assert info["format"] == "oci-archive"
    out = tmp_path / "plain.tar"
    ok(ocislim("convert", "-q", str(packed), str(out)))
    assert tree_signature(out) == tree_signature(DEMO_IMAGE)
    piped = ok(ocislim("inspect", "--json", "-", stdin=before, tmpdir=tmp_path))
    assert json.loads(piped.stdout)["config_digest"] == info["config_digest"]
    assert packed.read_bytes() == before


def test_multi_image_docker_archive_by_index_and_name(loaded: Podman, tmp_path: Path) -> None:
    archive = tmp_path / "two.tar"
    archive.write_bytes(podman_save(loaded, "docker-archive", DEMO_REF, OTHER_REF))
    ambiguous = ocislim("inspect", str(archive))
    assert ambiguous.returncode == 2 and b"pick one with --ref" in ambiguous.stderr
    first = json.loads(ok(ocislim("inspect", "--json", f"docker-archive:{archive}:@0")).stdout)
    second = json.loads(ok(ocislim("inspect", "--json", f"docker-archive:{archive}:@1")).stdout)
    assert {first["reference"], second["reference"]} == {DEMO_REF, OTHER_REF}
    named = ocislim("inspect", "--json", f"docker-archive:{archive}:localhost/other:2")
    assert json.loads(ok(named).stdout)["reference"] == OTHER_REF


def test_skopeo_dir_is_read_by_transport_and_by_path(tmp_path: Path) -> None:
    copied = tmp_path / "copied"
    skopeo("copy", "-q", f"oci-archive:{DEMO_IMAGE}", f"dir:{copied}")
    assert (copied / "version").is_file()
    for name in (f"dir:{copied}", str(copied)):
        info = json.loads(ok(ocislim("inspect", "--json", name)).stdout)
        assert info["format"] == "dir"
    out = tmp_path / "slim.tar"
    done = ok(ocislim("build", f"dir:{copied}", "-o", str(out), "-q", "--json"))
    assert json.loads(done.stdout)["verification"]["passed"] is True
    index = json.loads(
        subprocess.run(
            ["tar", "xOf", str(out), "index.json"], capture_output=True, check=True
        ).stdout
    )
    # skopeo's dir keeps no name: the default tag comes from the directory's name.
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == (
        "localhost/copied.slim:latest"
    )


def test_oci_layout_tag_only_ref_and_oci_output_read_by_skopeo(tmp_path: Path) -> None:
    layout = tmp_path / "myapp"
    skopeo("copy", "-q", f"oci-archive:{DEMO_IMAGE}", f"oci:{layout}:v2")
    out = tmp_path / "out"
    out.mkdir()
    # Tag only in the source: the default tag takes the layout's name.
    ok(ocislim("build", f"oci:{layout}:v2", "-o", f"oci-archive:{out / 'a.tar'}", "-q"))
    index = json.loads(
        subprocess.run(
            ["tar", "xOf", str(out / "a.tar"), "index.json"], capture_output=True, check=True
        ).stdout
    )
    ref = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    assert ref == "localhost/myapp.slim:v2"
    # -o oci:DIR:TAG writes a layout skopeo reads by that tag; a second tag joins it.
    ok(ocislim("convert", "-q", f"oci:{layout}:v2", f"oci:{out / 'layout'}:slim"))
    sbom = out / "built.spdx.json"  # read back from the layout it joined, by its position
    ok(
        ocislim(
            "build",
            f"oci:{layout}:@0",
            "-o",
            f"oci:{out / 'layout'}:built",
            "-q",
            "--sbom",
            str(sbom),
        )
    )
    assert json.loads(sbom.read_text())["spdxVersion"] == "SPDX-2.3"
    for tag in ("slim", "built"):
        inspected = json.loads(skopeo("inspect", f"oci:{out / 'layout'}:{tag}"))
        assert inspected["Labels"]["org.opencontainers.image.title"] == "ocislim demo"
    docker = out / "d.tar"
    ok(ocislim("convert", "-q", f"oci:{out / 'layout'}:built", f"docker-archive:{docker}:x/y:1"))
    inspected = json.loads(skopeo("inspect", f"docker-archive:{docker}:x/y:1"))  # by that name
    assert inspected["Labels"]["org.opencontainers.image.title"] == "ocislim demo"


def test_oci_output_runs_in_podman(loaded: Podman, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    ok(ocislim("build", str(DEMO_IMAGE), "-o", f"oci:{layout}:demo-slim", "-q"))
    archive = tmp_path / "from-layout.tar"
    skopeo("copy", "-q", f"oci:{layout}:demo-slim", f"oci-archive:{archive}:localhost/demo-slim:1")
    tag = loaded.load(archive, "localhost/demo-slim:1")
    assert loaded.run(tag).stdout == DEMO_OUTPUT
