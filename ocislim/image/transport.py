"""Image names: plain paths, stdin, and the transport syntax of skopeo and podman.

An input name is one of

* a plain path: an oci-archive or docker-archive tar (optionally gzip- or
  zstd-compressed), an OCI layout directory, or a directory in skopeo's
  ``dir`` format; the format is always detected from content;
* ``-`` or ``/dev/stdin``: an archive read from stdin;
* ``TRANSPORT:PATH[:REF]`` with TRANSPORT one of ``oci-archive``,
  ``docker-archive``, ``oci`` and ``dir`` (``dir:DIR`` takes no REF: all of
  it is the path).  REF picks
  one image as ``--ref`` does: a name (``repo:tag``, or only a tag in an OCI
  layout) or ``@N``, the N-th image of the archive or layout (from 0, as
  skopeo counts).

An output name is a plain path (``--format`` says what to write) or
``oci-archive:PATH[:TAG]``, ``docker-archive:PATH[:TAG]`` or
``oci:DIR[:TAG]``: the transport chooses the format and TAG acts as ``--tag``.

As in skopeo, PATH ends at the first ``:``; for an input, a longer PATH that
contains colons is taken when that one exists and the shorter does not.  A
plain path that begins with a transport name and a colon is written ``./oci:x``.
Nothing here touches a file except to ask whether a path exists.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ocislim.errors import UsageError

INPUT_TRANSPORTS = ("oci-archive", "docker-archive", "oci", "dir")
# transport -> the writer's format name (image.writer.FORMATS)
OUTPUT_TRANSPORTS = {
    "oci-archive": "oci-archive",
    "docker-archive": "docker-archive",
    "oci": "oci-dir",
}
STDIN_NAMES = ("-", "/dev/stdin")
# skopeo's transports for images that are not local files: named in the error.
_ELSEWHERE = ("docker", "docker-daemon", "containers-storage", "ostree", "sif", "tarball")
_INDEX_REF = re.compile(r"@(0|[1-9][0-9]{0,8})")
_TRANSPORT = re.compile(r"(?P<transport>[a-z-]+):(?P<rest>.*)", re.DOTALL)


@dataclass(frozen=True)
class InputName:
    """What an input name says: where the image is and, optionally, which one.

    ``stdin`` is true for ``-`` and ``/dev/stdin`` (``path`` is then
    ``/dev/stdin``).  ``ref`` is the transport's REF, ``None`` without one.
    """

    text: str
    path: Path
    transport: str | None = None
    ref: str | None = None

    @property
    def stdin(self) -> bool:
        return str(self.path) in STDIN_NAMES


@dataclass(frozen=True)
class OutputName:
    """Where an image goes, in which format and under which tag (``None``: from flags)."""

    path: Path
    fmt: str | None = None
    tag: str | None = None


def index_ref(ref: str | None) -> int | None:
    """N for a REF of the form ``@N`` (the N-th image), else ``None``."""
    if ref is None:
        return None
    found = _INDEX_REF.fullmatch(ref)
    return int(found[1]) if found else None


def _split(transport: str, rest: str, text: str, prefer_existing: bool) -> tuple[str, str | None]:
    if not rest:
        raise UsageError(f"{text}: {transport}: needs a path")
    pieces = rest.split(":")
    splits = [(":".join(pieces[:i]), ":".join(pieces[i:]) or None) for i in range(1, len(pieces))]
    splits.append((rest, None))
    path, ref = splits[0]
    if prefer_existing and not os.path.lexists(path):
        path, ref = next(((p, r) for p, r in splits if os.path.lexists(p)), (path, ref))
    if not path:
        raise UsageError(f"{text}: {transport}: needs a path before the ':'")
    if ref == "":
        ref = None
    return path, ref


def parse_input(text: str) -> InputName:
    """The :class:`InputName` of ``text``; :class:`UsageError` for a malformed one."""
    if not text:
        raise UsageError("an empty image name")
    if text in STDIN_NAMES:
        return InputName(text, Path("/dev/stdin"))
    found = _TRANSPORT.fullmatch(text)
    if found is not None and found["transport"] in _ELSEWHERE and not os.path.lexists(text):
        raise UsageError(
            f"{text}: ocislim reads local images only; copy it first, e.g. "
            f"skopeo copy {text} oci-archive:image.tar"
        )
    if found is None or found["transport"] not in INPUT_TRANSPORTS:
        return InputName(text, Path(text))
    transport = found["transport"]
    if transport == "dir":  # as in skopeo: everything after "dir:" is the path
        if not found["rest"]:
            raise UsageError(f"{text}: dir: needs a path")
        path, ref = found["rest"], None
    else:
        path, ref = _split(transport, found["rest"], text, prefer_existing=True)
    if path in STDIN_NAMES:
        path = "/dev/stdin"
    return InputName(text, Path(path), transport, ref)


def parse_output(text: str) -> OutputName:
    """The :class:`OutputName` of ``text``; :class:`UsageError` for a malformed one."""
    if text in STDIN_NAMES or text == "/dev/stdout":
        raise UsageError(f"{text}: an image cannot be written to stdout; name a file or directory")
    found = _TRANSPORT.fullmatch(text)
    if found is None or found["transport"] not in (*INPUT_TRANSPORTS, *OUTPUT_TRANSPORTS):
        return OutputName(Path(text))
    transport = found["transport"]
    if transport not in OUTPUT_TRANSPORTS:
        choices = ", ".join(f"{t}:" for t in OUTPUT_TRANSPORTS)
        raise UsageError(f"{text}: cannot write to {transport}:; choose one of {choices}")
    path, tag = _split(transport, found["rest"], text, prefer_existing=False)
    return OutputName(Path(path), OUTPUT_TRANSPORTS[transport], tag)


@dataclass(frozen=True)
class OutputTarget:
    """An output settled: the path, the writer's format and the tag (``None``: the default)."""

    path: Path
    fmt: str
    tag: str | None


def merge_ref(name: InputName, flag: str | None, flag_name: str = "--ref") -> str | None:
    """The one ref an input asks for: the name's REF or ``flag``; both and different is a
    :class:`UsageError`."""
    if name.ref is not None and flag is not None and name.ref != flag:
        raise UsageError(f"{name.text}: names {name.ref!r} but {flag_name} asks for {flag!r}")
    return name.ref if name.ref is not None else flag


def resolve_output(
    text: str, fmt: str | None, tag: str | None, default_fmt: str = "oci-archive"
) -> OutputTarget:
    """Path, format and tag of an output from its name and the ``--format``/``--tag`` flags.

    ``fmt`` is ``None`` when ``--format`` was not given.  A transport and a
    different ``--format``, or a TAG and a different ``--tag``, is a :class:`UsageError`.
    """
    out = parse_output(text)
    if out.fmt is not None and fmt is not None and fmt != out.fmt:
        raise UsageError(f"{text}: writes {out.fmt} but --format asks for {fmt}")
    if out.tag is not None and tag is not None and tag != out.tag:
        raise UsageError(f"{text}: tags the image {out.tag!r} but --tag asks for {tag!r}")
    return OutputTarget(out.path, out.fmt or fmt or default_fmt, out.tag or tag)
