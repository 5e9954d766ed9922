"""Small merged trees for the slim unit tests, built from tar members (tests.synth.M)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocislim.image import open_image
from ocislim.image.models import ImageConfig
from ocislim.layers.tree import FileTree, normalize
from ocislim.layers.unpack import unpack
from ocislim.slim.keeper import Keeper
from ocislim.slim.options import BuildOptions, OutputOptions
from tests.synth import M, config_for, layer, oci_archive


def tree_from(members: list[M]) -> FileTree:
    """The merged tree of one layer holding ``members`` (parents are implied)."""
    tree = FileTree()
    with tarfile.open(fileobj=io.BytesIO(layer(members))) as tar:
        for ordinal, info in enumerate(tar):
            data = tar.extractfile(info) if info.isfile() else None
            tree.add(normalize(info.name, "test"), info, 0, ordinal, data, "test layer")  # type: ignore[arg-type]
    return tree


def keeper_over(
    tmp_path: Path,
    members: list[M],
    config: dict[str, Any] | None = None,
    disable: tuple[str, ...] = (),
) -> tuple[Keeper, ImageConfig, BuildOptions]:
    """A Keeper over a one-layer image of ``members`` (config keys such as ``Entrypoint``),
    unpacked below ``tmp_path`` (made if missing), with the rules ``disable`` names off."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    layers = [layer(members)]
    archive = oci_archive(tmp_path, layers, config=config_for(layers, **(config or {})))
    with open_image(archive) as image:
        unpacked = unpack(image, tmp_path / "rootfs")
        image_config = image.config
    options = BuildOptions(OutputOptions(tmp_path / "out.tar"), disable_rules=disable)
    return Keeper(unpacked.root, unpacked.tree, image_config, options), image_config, options


def reader(members: list[M]) -> Callable[[str], str | None]:
    """``read_text`` over the regular files among ``members``."""
    texts = {"/" + m.name.strip("/"): m.data.decode() for m in members if m.kind == "file"}
    return texts.get


def python_tree() -> list[M]:
    """A Debian-like Python layout: interpreter, standard library, a site directory."""
    lib = "usr/lib/python3.11"
    return [
        M("usr/bin/python3.11", data=b"\x7fELF....", mode=0o755),
        M("usr/bin/python3", "symlink", link="python3.11"),
        M(f"{lib}/os.py", data=b"# os"),
        M(f"{lib}/json/__init__.py", data=b"# json"),
        M(f"{lib}/json/decoder.py", data=b"# decoder"),
        M(f"{lib}/json/__pycache__/__init__.cpython-311.pyc", data=b"pyc"),
        M(f"{lib}/json/__pycache__/decoder.cpython-311.pyc", data=b"pyc"),
        M(f"{lib}/__pycache__/os.cpython-311.pyc", data=b"pyc"),
        M(f"{lib}/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", data=b"\x7fELF...."),
        M(f"{lib}/test/test_os.py", data=b"# test"),
        M(f"{lib}/idlelib/idle.py", data=b"# idle"),
        M(f"{lib}/config-3.11-x86_64-linux-gnu/libpython3.11.a", data=b"!<arch>"),
        M(f"{lib}/site-packages/README.txt", data=b"site"),
        M("usr/lib/python3/dist-packages/requests/__init__.py", data=b"# requests"),
        M("usr/lib/python3/dist-packages/requests/api.py", data=b"# api"),
        M(
            "usr/lib/python3/dist-packages/requests-2.28.dist-info/RECORD",
            data=b"requests/__init__.py,,\nrequests/api.py,,\n"
            b"requests-2.28.dist-info/RECORD,,\n../../../bin/requests-cli,,\n",
        ),
        M("usr/lib/python3/dist-packages/requests-2.28.dist-info/METADATA", data=b"Name: r"),
        M("usr/bin/requests-cli", data=b"#!/usr/bin/python3\n", mode=0o755),
        M("usr/lib/python3/dist-packages/yaml/__init__.py", data=b"# yaml"),
        M("usr/lib/python3/dist-packages/_yaml.cpython-311-x86_64-linux-gnu.so", data=b"ELF"),
        M("usr/lib/python3/dist-packages/PyYAML-6.0.egg-info/top_level.txt", data=b"_yaml\nyaml\n"),
        M("usr/lib/python3/dist-packages/PyYAML-6.0.egg-info/PKG-INFO", data=b"Name: PyYAML"),
        M("usr/lib/python3/dist-packages/lonely/__init__.py", data=b"# no metadata"),
        M("usr/lib/python3/dist-packages/lonely/core.py", data=b"# no metadata"),
    ]
