"""Real fixture images for tests, built on demand by ``fixtures/build_images.py``.

``fixture_image(name, fmt)`` returns the path of a cached image (see
``fixtures/build_images.py`` for the names and the cache location), building it
first when it is missing.  Building needs root, mmdebstrap, umoci, skopeo and
the Debian mirror; when any of that is missing the calling test is skipped, or
fails if ``OCISLIM_REQUIRE_TOOLS=1`` (CI).  Reading a built image needs none of
it, so a plain user can use a cache that root filled.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.tools import require_tool

REPO = Path(__file__).resolve().parents[1]
DEMO_IMAGE = REPO / "fixtures" / "demo.oci.tar"
FORMATS = ("oci-archive", "docker-archive", "oci-dir")


def _load_builder() -> ModuleType:
    # fixtures/ is not a package: load the script as a module once.
    name = "ocislim_fixture_builder"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "fixtures" / "build_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


builder = _load_builder()
IMAGE_NAMES: tuple[str, ...] = tuple(builder.IMAGES)


def image_reference(name: str) -> str:
    """The reference name the exports of image ``name`` carry (ref.name / RepoTags)."""
    return builder.IMAGES[name].reference


def fixture_image(name: str, fmt: str = "oci-archive") -> Path:
    """Path of fixture image ``name`` as ``fmt`` (oci-archive | docker-archive | oci-dir).

    Builds the image into the cache when it is missing; skips (or, under
    ``OCISLIM_REQUIRE_TOOLS=1``, fails) the test when it cannot be built here.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown fixture format {fmt!r}; expected one of {FORMATS}")
    if name not in builder.IMAGES:
        raise ValueError(f"unknown fixture image {name!r}; expected one of {IMAGE_NAMES}")
    if not builder.is_built(name):
        for tool in ("mmdebstrap", "mmtarfilter", "umoci", "skopeo"):
            require_tool(tool)
        try:
            builder.ensure_image(name)
        except builder.BuildError as exc:
            message = f"fixture image {name!r} cannot be built: {exc}"
            if os.environ.get("OCISLIM_REQUIRE_TOOLS") == "1":
                pytest.fail(message)
            pytest.skip(message)
    return builder.image_path(name, fmt, build=False)
