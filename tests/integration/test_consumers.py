"""The foundation against real images and real consumers.

ocislim's unpack must equal ``umoci unpack``; what ``convert`` writes must pass
the OCI schemas, ``skopeo inspect``/``skopeo copy``, ``umoci unpack`` and
``podman load`` + ``podman run``, in every output format, and must keep the
merged tree (paths, types, modes, owners, content, link targets) unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ocislim.image import open_image
from tests import oci_schema
from tests.clirun import run_cli
from tests.images import fixture_image, image_reference
from tests.integration.consumers_support import (
    APP_OUTPUT,
    disk_signature,
    source_signature,
    tree_signature,
    validate_oci_output,
)
from tests.tools import require_tool

pytestmark = pytest.mark.integration


def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (umoci unpack without --rootless, podman)")


def _convert_flat(fmt: str, tag: str, out: Path) -> int:
    """Exit code of ``convert --flatten`` of the python-app fixture to ``out``."""
    args = ["--flatten", "--format", fmt, "--tag", tag, str(fixture_image("python-app"))]
    return run_cli("convert", "-q", *args, str(out)).code


def test_unpack_equals_umoci(tmp_path: Path) -> None:
    _root_only()
    require_tool("umoci")
    layout = fixture_image("python-app", "oci-dir")
    ours = tmp_path / "ours"
    result = run_cli("unpack", "-q", str(fixture_image("python-app")), str(ours))
    assert result.code == 0, result.stderr
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{image_reference('python-app')}", str(bundle)],
        check=True,
        capture_output=True,
    )
    expected = disk_signature(bundle / "rootfs")
    got = disk_signature(ours)
    assert len(expected) > 5000
    assert got.keys() == expected.keys()
    assert got == expected


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive", "oci-dir"])
def test_every_input_format_reads_the_same_image(fmt: str) -> None:
    baseline = source_signature("python-app")
    with open_image(fixture_image("python-app", fmt)) as image:
        assert len(image.layers) == 3
        assert image.config.entrypoint == ["python3", "/app/app.py"]
    assert tree_signature(fixture_image("python-app", fmt)) == baseline


# Each format and each compression at least once, flattened and not.
CASES = [
    ("oci-archive", "gzip", True),
    ("oci-archive", "none", False),
    ("docker-archive", None, True),
    ("oci-dir", "zstd", False),
    ("oci-dir", "zstd", True),
]


@pytest.mark.parametrize(("fmt", "compression", "flatten"), CASES)
def test_convert_output_is_accepted_and_lossless(
    tmp_path: Path, fmt: str, compression: str | None, flatten: bool
) -> None:
    skopeo = require_tool("skopeo")
    source = fixture_image("python-app")
    out = tmp_path / ("out" if fmt == "oci-dir" else "out.tar")
    args = ["convert", "-q", str(source), str(out), "--format", fmt, "--tag", "localhost/t:1"]
    args += ["--compression", compression] if compression else []
    args += ["--flatten"] if flatten else []
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"

    if fmt != "docker-archive" and oci_schema.available():
        validate_oci_output(out)
    transport = {"oci-archive": "oci-archive:", "docker-archive": "docker-archive:"}.get(
        fmt, "oci:"
    )
    inspected = json.loads(
        subprocess.run(
            [skopeo, "inspect", f"{transport}{out}"], check=True, capture_output=True, text=True
        ).stdout
    )
    assert len(inspected["Layers"]) == (1 if flatten else 3)
    copied = tmp_path / "copied"
    subprocess.run(
        [skopeo, "copy", "-q", f"{transport}{out}", f"oci:{copied}:t"],
        check=True,
        capture_output=True,
    )
    # skopeo's copy is what a consumer sees; it must hold the source's tree.
    assert tree_signature(copied) == source_signature("python-app")


def test_flattened_layout_unpacks_with_umoci_like_the_source(tmp_path: Path) -> None:
    _root_only()
    require_tool("umoci")
    out = tmp_path / "flat"
    assert _convert_flat("oci-dir", "flat", out) == 0
    subprocess.run(
        ["umoci", "unpack", "--image", f"{out}:flat", str(tmp_path / "b")],
        check=True,
        capture_output=True,
    )
    ours = tmp_path / "ours"
    assert run_cli("unpack", "-q", str(fixture_image("python-app")), str(ours)).code == 0
    assert disk_signature(tmp_path / "b" / "rootfs") == disk_signature(ours)


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_podman_loads_and_runs_converted_image(tmp_path: Path, fmt: str) -> None:
    _root_only()
    podman = require_tool("podman")
    require_tool("runc")
    tag = f"localhost/ocislim-test/{fmt}:flat"
    out = tmp_path / "out.tar"
    assert _convert_flat(fmt, tag, out) == 0
    subprocess.run([podman, "load", "-q", "-i", str(out)], check=True, capture_output=True)
    try:
        run = subprocess.run(
            [
                podman,
                "--cgroup-manager=cgroupfs",
                "run",
                "--rm",
                "--runtime",
                "runc",
                "--network",
                "none",
                tag,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == APP_OUTPUT
    finally:
        subprocess.run([podman, "rmi", "-f", tag], capture_output=True)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_convert_is_deterministic(tmp_path: Path, compression: str) -> None:
    source = str(fixture_image("python-app"))
    outputs = []
    for name in ("a.tar", "b.tar"):
        out = tmp_path / name
        result = run_cli(
            "convert",
            "-q",
            "--flatten",
            "--compression",
            compression,
            source,
            str(out),
            env={"SOURCE_DATE_EPOCH": "1700000000"},
        )
        assert result.code == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
