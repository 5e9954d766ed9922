"""Rules for the layers of an output image: what a format stores and what a level means.

``convert`` and ``build`` both ask these before writing, so the rules and their
messages are the same for both commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocislim.errors import UsageError

GZIP_LEVELS = range(1, 10)
DOCKER_UNCOMPRESSED = "docker-archive layers are stored uncompressed; ignoring --compression"


@dataclass(frozen=True)
class LayerCompression:
    """The compression to write (None: the caller's default) and a note for the user."""

    compression: str | None
    note: str | None = None


def output_compression(fmt: str, requested: str | None, default: str | None) -> LayerCompression:
    """The compression layers of ``fmt`` are written with, for ``--compression requested``.

    docker-archive layers are always uncompressed; asking for a compression there
    gives a note, not an error.  Otherwise ``requested``, else ``default``.
    """
    if fmt == "docker-archive":
        note = DOCKER_UNCOMPRESSED if requested not in (None, "none") else None
        return LayerCompression("none", note)
    return LayerCompression(requested or default)


def check_level(compression: str | None, level: int | None) -> None:
    """Raise :class:`UsageError` when ``level`` is not a level of ``compression``.

    Only gzip is narrower than the flag's own range (zstd takes 0-22, none ignores it).
    """
    if level is not None and compression == "gzip" and level not in GZIP_LEVELS:
        raise UsageError(f"--level {level}: gzip levels are 1-9")
