"""External tools in tests: skip when missing, or fail when CI demands every tool."""

from __future__ import annotations

import os
import shutil

import pytest

# Root's tools (runc, ldconfig) live in sbin, which a plain user's PATH often lacks.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def require_tool(name: str) -> str:
    """The path of executable ``name`` (searched in ``PATH``, then the sbin directories).

    When it is missing the calling test is skipped, or fails if the environment
    sets ``OCISLIM_REQUIRE_TOOLS=1`` (CI, where a skip would hide a gap).
    """
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN])
    path = shutil.which(name, path=search)
    if path is not None:
        return path
    message = f"required tool {name!r} is not installed"
    if os.environ.get("OCISLIM_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
