"""Shared pytest fixtures: real Debian fixture images and the plain user for rootless runs.

Image fixtures are session-scoped paths into the fixture cache (see
``tests/images.py``); the first test that needs an image builds it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import clirun
from tests.images import DEMO_IMAGE, FORMATS, fixture_image

PLAIN_USER = "tester"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run tests not marked ``integration`` first (stable order otherwise).

    Quick feedback comes first, and the fixture images, which scripts/test.sh
    builds in the background, have time to finish before tests wait for them.
    """
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)


@pytest.fixture(scope="session")
def demo_image() -> Path:
    """The committed demo image (oci-archive, glibc + busybox, 2 layers)."""
    assert DEMO_IMAGE.is_file(), f"{DEMO_IMAGE} is missing from the checkout"
    return DEMO_IMAGE


@pytest.fixture(scope="session")
def python_app_image() -> Path:
    """bookworm python app, 3 layers (whiteouts and an opaque dir in the top one)."""
    return fixture_image("python-app")


@pytest.fixture(scope="session", params=FORMATS)
def python_app_image_any_format(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """``(format, path)`` of the python app in each of the three formats."""
    return request.param, fixture_image("python-app", request.param)


@pytest.fixture(scope="session")
def bullseye_python_image() -> Path:
    """bullseye (glibc 2.31) python3; entrypoint ``python3 -c 'print(1)'``."""
    return fixture_image("bullseye-python")


@pytest.fixture(scope="session")
def curl_image() -> Path:
    """bookworm curl + ca-certificates; cmd ``curl --version``."""
    return fixture_image("curl")


@pytest.fixture(scope="session")
def node_image() -> Path:
    """bookworm nodejs; cmd ``node -e "console.log(1)"``."""
    return fixture_image("node")


@pytest.fixture(scope="session")
def http_server_image() -> Path:
    """bookworm python3 ``http.server`` on exposed port 8080/tcp."""
    return fixture_image("http-server")


@pytest.fixture(scope="session")
def plain_user() -> str:
    """Name of the unprivileged user for rootless runs (root switches to it with ``su``)."""
    if os.geteuid() != 0:
        pytest.skip("switching to the plain user needs root")
    try:
        pwd.getpwnam(PLAIN_USER)
    except KeyError:
        pytest.skip(f"user {PLAIN_USER!r} does not exist (scripts/test.sh creates it)")
    return PLAIN_USER


@pytest.fixture(scope="session")
def plain_user_python(plain_user: str) -> str:
    """A Python the plain user can run with ocislim importable (see ``clirun``)."""
    return clirun.plain_user_python()[0]


@pytest.fixture
def plain_user_tmp(plain_user: str) -> Iterator[Path]:
    """An empty directory the plain user owns (root's ``tmp_path`` is closed to others)."""
    base = Path(os.environ.get("OCISLIM_PLAIN_TMP", "/var/tmp"))
    directory = Path(
        subprocess.run(
            ["su", plain_user, "-s", "/bin/sh", "-c", f"mktemp -d '{base}/ocislim-test.XXXXXX'"],
            cwd="/",
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
