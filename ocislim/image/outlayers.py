"""Rules for the layers of an output image: what a format stores and what a level means.

``convert`` and ``build`` both ask these before writing, so the rules and their
messages are the same for both commands (and ``--help`` quotes :data:`LEVEL_HELP`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ocislim.errors import UsageError

# The levels each compression really has: zlib's 1-9 (0 would store, not compress);
# zstd's 1-22 (0 means its default, negative levels are not offered).  "none" has no
# level, so a level given with it (or with docker-archive) has no effect.
LEVELS = {"gzip": range(1, 10), "zstd": range(1, 23)}
GZIP_LEVELS = LEVELS["gzip"]
LEVEL_HELP = "Compression level: gzip 1-9 (default 6), zstd 1-22 (default 3)."
DOCKER_UNCOMPRESSED = "docker-archive layers are stored uncompressed; ignoring --compression"
NO_LEVEL = "layers are stored uncompressed; --level {level} has no effect"


@dataclass(frozen=True)
class LayerCompression:
    """The compression to write (None: the caller's default) and a note for the user."""

    compression: str | None
    note: str | None = None


def output_compression(
    fmt: str, requested: str | None, default: str | None, level: int | None = None
) -> LayerCompression:
    """The compression layers of ``fmt`` are written with, for ``--compression requested``.

    docker-archive layers are always uncompressed; asking for a compression there
    gives a note, not an error (and summaries then say "uncompressed").  Otherwise
    ``requested``, else ``default``.  A ``level`` for uncompressed layers gets a note.
    """
    if fmt == "docker-archive":
        note = DOCKER_UNCOMPRESSED if requested not in (None, "none") else None
        chosen = LayerCompression("none", note)
    else:
        chosen = LayerCompression(requested or default)
    if level is not None and chosen.compression == "none" and chosen.note is None:
        return LayerCompression("none", NO_LEVEL.format(level=level))
    return chosen


def level_range(compression: str) -> str:
    """``"1-9"``: the levels of ``compression`` as ``--help`` and errors write them."""
    levels = LEVELS[compression]
    return f"{levels.start}-{levels.stop - 1}"


def check_level(compression: str | None, level: int | None) -> None:
    """Raise :class:`UsageError` when ``level`` is not a level of ``compression``.

    gzip takes 1-9, zstd 1-22; ``none`` (and None, a compression not known yet, as
    ``convert`` keeping each layer's own, which checks per layer) takes any.
    """
    if level is None or compression not in LEVELS:
        return
    if level not in LEVELS[compression]:
        raise UsageError(f"--level {level}: {compression} levels are {level_range(compression)}")
