"""Write an image as an oci-archive, a docker-archive or an OCI layout directory.

:func:`write_image` is atomic: everything goes to a hidden
:mod:`~ocislim.scratch` name beside the destination, which is renamed into
place only when complete; on failure the temporary output is removed and the
destination is untouched (after a kill -9, the next command removes it).  An
existing OCI layout gains the image the same way: new blobs, then a new
``index.json``, each renamed into place.
Output is deterministic: sorted archive members with fixed owners, modes and
times, canonical JSON.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ocislim import scratch
from ocislim.errors import OutputError
from ocislim.image.digest import Digest, VerifyingReader, sha256_of
from ocislim.image.models import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    REF_NAME,
    canonical_json,
    load_json,
)

FORMATS = ("oci-archive", "docker-archive", "oci-dir")
LAYER_MEDIA_TYPES = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
_COPY = 1 << 20


@dataclass(frozen=True)
class OutputLayer:
    """A layer blob ready to be placed: its digests and a way to read its bytes."""

    digest: Digest
    size: int
    diff_id: Digest
    compression: str
    open: Callable[[], BinaryIO]

    @property
    def media_type(self) -> str:
        return LAYER_MEDIA_TYPES[self.compression]


@dataclass(frozen=True)
class WrittenImage:
    path: Path
    format: str
    manifest_digest: Digest
    config_digest: Digest
    size: int  # bytes of the archive or layout on disk (added to a layout that existed)
    ref: str | None = None  # what selects the image there (open_image's ref): "@N" in a layout


def source_date_epoch() -> int:
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        return 0


def _manifest(config_raw: bytes, layers: list[OutputLayer]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": str(sha256_of(config_raw)),
                "size": len(config_raw),
            },
            "layers": [
                {"mediaType": layer.media_type, "digest": str(layer.digest), "size": layer.size}
                for layer in layers
            ],
        }
    )


def _oci_files(
    config_raw: bytes, layers: list[OutputLayer], ref_name: str | None
) -> tuple[list[tuple[str, int, Callable[[], BinaryIO]]], Digest]:
    manifest = _manifest(config_raw, layers)
    manifest_digest = sha256_of(manifest)
    descriptor: dict[str, Any] = {
        "mediaType": OCI_MANIFEST,
        "digest": str(manifest_digest),
        "size": len(manifest),
    }
    if ref_name:
        descriptor["annotations"] = {REF_NAME: ref_name}
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]})
    layout = canonical_json({"imageLayoutVersion": "1.0.0"})
    files: dict[str, tuple[int, Callable[[], BinaryIO]]] = {}

    def const(data: bytes) -> tuple[int, Callable[[], BinaryIO]]:
        return len(data), lambda: io.BytesIO(data)

    files[sha256_of(config_raw).blob_name] = const(config_raw)
    files[manifest_digest.blob_name] = const(manifest)
    for layer in layers:
        files[layer.digest.blob_name] = (layer.size, layer.open)
    files["index.json"] = const(index)
    files["oci-layout"] = const(layout)
    return [(name, size, opener) for name, (size, opener) in sorted(files.items())], manifest_digest


def _docker_files(
    config_raw: bytes, layers: list[OutputLayer], ref_name: str | None
) -> list[tuple[str, int, Callable[[], BinaryIO]]]:
    config_name = sha256_of(config_raw).hex + ".json"
    entries: dict[str, tuple[int, Callable[[], BinaryIO]]] = {
        config_name: (len(config_raw), lambda: io.BytesIO(config_raw))
    }
    layer_names = []
    for layer in layers:
        if layer.compression != "none":
            raise OutputError("docker-archive layers must be uncompressed")
        name = layer.diff_id.hex + ".tar"
        layer_names.append(name)
        entries[name] = (layer.size, layer.open)
    manifest = canonical_json(
        [{"Config": config_name, "Layers": layer_names, "RepoTags": [ref_name] if ref_name else []}]
    )
    entries["manifest.json"] = (len(manifest), lambda: io.BytesIO(manifest))
    return [(name, size, opener) for name, (size, opener) in sorted(entries.items())]


def _verified(name: str, size: int, opener: Callable[[], BinaryIO]) -> VerifyingReader:
    """The bytes of one output file, checked against its size and (for blobs) its name."""
    expected = None
    if name.startswith("blobs/sha256/"):
        expected = Digest("sha256", name.rsplit("/", 1)[1])
    return VerifyingReader(opener(), name, expected, size)


def _copy_verified(name: str, size: int, opener: Callable[[], BinaryIO], out: BinaryIO) -> None:
    src = _verified(name, size, opener)
    try:
        while chunk := src.read(_COPY):
            out.write(chunk)
        src.finish()
    finally:
        src.close()


def _write_tar(path: Path, files: list[tuple[str, int, Callable[[], BinaryIO]]]) -> None:
    mtime = source_date_epoch()
    with (
        open(path, "wb") as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        dirs: set[str] = set()
        for name, size, opener in files:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                directory = "/".join(parts[:i])
                if directory not in dirs:
                    dirs.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, mtime
            # addfile copies exactly ``size`` bytes; verify the blob as it streams.
            src = opener()
            expected = (
                Digest("sha256", name.rsplit("/", 1)[1]) if name.startswith("blobs/") else None
            )
            verified = VerifyingReader(src, name, expected, size)
            try:
                tar.addfile(info, verified)
                verified.finish()
            finally:
                verified.close()


def _write_dir(path: Path, files: list[tuple[str, int, Callable[[], BinaryIO]]]) -> None:
    os.chmod(path, 0o755)
    for name, size, opener in files:
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            _copy_verified(name, size, opener, out)


def is_layout(path: Path) -> bool:
    """Whether ``path`` is a directory holding an OCI layout (``oci-layout`` and ``index.json``)."""
    return (path / "oci-layout").is_file() and (path / "index.json").is_file()


def check_destination(dest: Path, fmt: str, sources: list[Path]) -> None:
    """Raise :class:`OutputError` unless ``fmt`` can be written to ``dest``.

    An ``oci-dir`` destination is absent, an empty directory, or an existing
    OCI layout (which gains the image; it may be a source's layout, since
    nothing in it is replaced but ``index.json``).  Callers run it before long
    work so a bad output path fails at once.
    """
    appending = fmt == "oci-dir" and is_layout(dest)
    for source in sources:
        if appending:
            break
        if dest.exists() and source.exists() and os.path.samefile(dest, source):
            raise OutputError(f"{dest}: is the source image; choose another output")
    if not dest.parent.is_dir():
        raise OutputError(f"{dest.parent}: no such directory")
    if fmt == "oci-dir":
        if dest.exists() and not appending and (not dest.is_dir() or any(dest.iterdir())):
            raise OutputError(f"{dest}: exists and is not an empty directory (nor an OCI layout)")
    elif dest.is_dir():
        raise OutputError(f"{dest}: is a directory; --format oci-dir writes a layout directory")


def _write_into_layout(
    dest: Path, files: list[tuple[str, int, Callable[[], BinaryIO]]], ref_name: str | None
) -> tuple[int, int]:
    """Add an image to the existing layout ``dest``; return the bytes added and the
    position of its manifest in the index (what ``@N`` names).

    Blobs already present are kept (their names are their digests); each new
    one appears under its name only when complete.  ``index.json`` is replaced
    last and atomically: it keeps every other image, drops the entry that had
    ``ref_name``, and lists the new manifest last.
    """
    ours = dict((name, (size, opener)) for name, size, opener in files)
    new_index = load_json(ours.pop("index.json")[1]().read(), "new index.json")
    ours.pop("oci-layout")
    try:
        with open(dest / "index.json", "rb") as fh:
            old_index = load_json(fh.read(), f"{dest}/index.json")
    except OSError as exc:
        raise OutputError(f"{dest}/index.json: cannot read ({exc.strerror})") from None
    manifests = old_index.get("manifests")
    if not isinstance(manifests, list):
        raise OutputError(f"{dest}/index.json: not an OCI index; choose another output")
    added = 0
    for name, (size, opener) in sorted(ours.items()):
        target = dest / name
        if target.is_file() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _replace_file(target, _copier(name, size, opener))
        added += size
    kept = [m for m in manifests if not (ref_name and _ref_of(m) == ref_name)]
    index = {**old_index, "manifests": [*kept, *new_index["manifests"]]}
    data = canonical_json(index)
    _replace_file(dest / "index.json", lambda out: out.write(data))
    return added + len(data), len(kept)


def _ref_of(descriptor: object) -> object:
    annotations = descriptor.get("annotations") if isinstance(descriptor, dict) else None
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None


def _copier(name: str, size: int, opener: Callable[[], BinaryIO]) -> Callable[[BinaryIO], object]:
    return lambda out: _copy_verified(name, size, opener, out)


def _replace_file(target: Path, fill: Callable[[BinaryIO], object]) -> None:
    """Write ``target`` through a scratch file beside it, renamed into place when complete."""
    temp = scratch.make_file(target.parent, f".{target.name[:16]}.ocislim-out-")
    try:
        with open(temp, "wb") as out:
            fill(out)
        os.chmod(temp, 0o644)
        os.rename(temp, target)
    except BaseException:
        scratch.remove(temp)
        raise
    scratch.release(temp)


def write_image(
    dest: Path,
    fmt: str,
    config_raw: bytes,
    layers: list[OutputLayer],
    ref_name: str | None = None,
    sources: list[Path] | None = None,
) -> WrittenImage:
    """Write one image to ``dest`` in ``fmt`` (see :data:`FORMATS`).

    Every blob is verified against its digest while it is copied.  An existing
    file at ``dest`` is replaced atomically, as is the ``index.json`` of an
    existing OCI layout (``oci-dir``), which gains the image (an entry with the
    same ``ref_name`` is dropped from its index; see :func:`_write_into_layout`);
    any other non-empty directory is refused, as is ``dest`` naming any of
    ``sources`` (but a source's layout may gain the image).
    """
    if fmt not in FORMATS:
        raise OutputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    dest = Path(os.path.abspath(dest))
    check_destination(dest, fmt, sources or [])
    if fmt == "docker-archive":
        files = _docker_files(config_raw, layers, ref_name)
        manifest_digest = sha256_of(_manifest(config_raw, layers))
    else:
        files, manifest_digest = _oci_files(config_raw, layers, ref_name)
    if fmt == "oci-dir" and is_layout(dest):
        try:
            size, position = _write_into_layout(dest, files, ref_name)
        except OSError as exc:
            raise OutputError(f"{dest}: cannot write ({exc.strerror or exc})") from None
        config_digest = sha256_of(config_raw)
        return WrittenImage(dest, fmt, manifest_digest, config_digest, size, f"@{position}")
    prefix = f".{dest.name}.ocislim-out-"
    if fmt == "oci-dir":
        temp = scratch.make_dir(dest.parent, prefix)
    else:
        temp = scratch.make_file(dest.parent, prefix)
    try:
        if fmt == "oci-dir":
            _write_dir(temp, files)
            if dest.exists():
                dest.rmdir()
            size = sum(s for _, s, _ in files)
        else:
            _write_tar(temp, files)
            size = temp.stat().st_size
        os.rename(temp, dest)
    except BaseException as exc:
        scratch.remove(temp)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise OutputError(f"{dest}: cannot write ({exc.strerror or exc})") from None
        raise
    scratch.release(temp)
    return WrittenImage(dest, fmt, manifest_digest, sha256_of(config_raw), size)
