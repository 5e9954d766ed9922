"""Open an image from an oci-archive, a docker-archive, an OCI layout or a skopeo ``dir``.

:func:`open_image` takes an image name (see :mod:`ocislim.image.transport`:
a path, ``-`` for stdin, or ``TRANSPORT:PATH[:REF]``), detects the format
from content, selects one image (REF or ``--ref``, ``--platform``), and
returns an :class:`Image` whose JSON objects are digest-verified and whose
layers verify themselves while they stream.  Nothing is extracted and the
source is never written to (a compressed archive or stdin is spooled once).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocislim.errors import DigestError, ImageError, RefNotFoundError
from ocislim.image.compression import detect, open_decompressed
from ocislim.image.digest import Digest, VerifyingReader, sha256_of
from ocislim.image.models import (
    CONTAINERD_NAME,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    canonical_json,
    load_json,
    parse_json,
)
from ocislim.image.prefetch import PrefetchReader
from ocislim.image.store import BlobStore, DirStore, SkopeoDirStore, clean_name, open_store
from ocislim.image.transport import InputName, index_ref, merge_ref, parse_input

_MAX_JSON = 16 << 20  # a manifest, index or config larger than this is hostile
_MAX_INDEX_DEPTH = 4


@dataclass(frozen=True)
class LayerStream:
    """The uncompressed bytes of one layer.

    ``read`` verifies as it goes; :meth:`finish` reads what is left and checks the
    compressed digest and size and the uncompressed ``diff_id``, raising
    :class:`DigestError` on any mismatch.  Call it after consuming the tar.
    """

    reader: PrefetchReader
    compression: str
    _outer: VerifyingReader
    _inner: VerifyingReader | None

    def read(self, n: int = -1) -> bytes:
        return self.reader.read(n)

    @property
    def uncompressed_size(self) -> int:
        """Uncompressed bytes read so far (the whole layer after :meth:`finish`)."""
        return self._outer.count

    @property
    def compressed_read(self) -> int:
        """Bytes of the blob as stored read so far (read-ahead included), for progress."""
        return (self._inner or self._outer).count

    def finish(self) -> None:
        while self.reader.read(1 << 20):
            pass
        self._outer.finish()
        if self._inner is not None:
            self._inner.finish()

    def close(self) -> None:
        self.reader.close()
        self._outer.close()


@dataclass(frozen=True)
class Layer:
    """One layer of an image: its descriptor, its ``diff_id`` and where its blob is."""

    index: int
    descriptor: Descriptor
    diff_id: Digest
    store: BlobStore = field(repr=False, compare=False)
    blob_name: str = field(repr=False)

    @property
    def what(self) -> str:
        return f"layer {self.index} ({self.descriptor.digest})"

    def open_blob(self) -> VerifyingReader:
        """The blob as stored (usually compressed), verified against its descriptor."""
        return VerifyingReader(
            self.store.open(self.blob_name),
            self.what,
            self.descriptor.digest,
            self.descriptor.size,
        )

    def open(self) -> LayerStream:
        """The uncompressed tar stream, verified against ``diff_id`` and the descriptor."""
        blob = self.open_blob()
        decompressed, algorithm = open_decompressed(blob, self.what)
        if algorithm == "none" and self.descriptor.digest == self.diff_id:
            # Uncompressed: the blob digest already is the diff_id; hash once.
            return LayerStream(PrefetchReader(decompressed), algorithm, blob, None)
        outer = VerifyingReader(decompressed, f"layer {self.index} diff_id", self.diff_id)
        return LayerStream(PrefetchReader(outer), algorithm, outer, blob)


@dataclass
class Image:
    """A selected image. Close it (or use ``with``) to release the archive."""

    source: Path
    format: str
    store: BlobStore = field(repr=False)
    ref_name: str | None
    manifest: Manifest
    manifest_raw: bytes = field(repr=False)
    manifest_digest: Digest
    config: ImageConfig
    config_raw: bytes = field(repr=False)
    layers: tuple[Layer, ...]
    refs: tuple[str, ...] = ()
    name: str = ""  # as the user gave it ("-", "oci:DIR:REF"); str(source) by default
    names: tuple[str, ...] = ()  # every ref of the selected image (ref_name is the first)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = str(self.source)

    @property
    def platform(self) -> Platform:
        return self.config.platform

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_small(store: BlobStore, name: str, what: str) -> bytes:
    """The bytes of a JSON document in the store, refusing one too large to be honest."""
    size = store.size(name)
    if size > _MAX_JSON:
        raise ImageError(f"{what}: {size} bytes is too large for a JSON document")
    with store.open(name) as fh:
        return fh.read()


def _read_json(store: BlobStore, name: str, what: str) -> tuple[dict[str, Any], bytes]:
    data = _read_small(store, name, what)
    return load_json(data, what), data


def _read_blob_json(store: BlobStore, desc: Descriptor, what: str) -> tuple[dict[str, Any], bytes]:
    if desc.size > _MAX_JSON:
        raise ImageError(f"{what}: {desc.size} bytes is too large for a JSON document")
    reader = VerifyingReader(store.open(desc.digest.blob_name), what, desc.digest, desc.size)
    try:
        data = reader.read()
    finally:
        reader.close()
    return load_json(data, what), data


@dataclass(frozen=True)
class _Candidate:
    refs: tuple[str, ...]
    descriptor: Descriptor | None  # None for docker-archive entries
    docker_entry: dict[str, Any] | None = None
    position: int = 0  # in index.json's or manifest.json's list: what REF @N selects


def _ref_matches(wanted: str, refs: tuple[str, ...]) -> bool:
    for ref in refs:
        if wanted == ref:
            return True
        # "name:tag" also matches its tag alone and "docker.io/library/name:tag" forms
        if ref.endswith(":" + wanted) or ref.endswith("/" + wanted):
            return True
        if wanted.endswith(":" + ref):
            return True
    return False


def _oci_candidates(store: BlobStore, source: Path) -> Iterator[_Candidate]:
    index_obj, _ = _read_json(store, "index.json", f"{source}: index.json")
    yield from _walk_index(store, source, Index.from_json(index_obj, f"{source}: index.json"))


def _skopeo_dir_candidates(store: BlobStore, source: Path, raw: bytes) -> Iterator[_Candidate]:
    """skopeo's ``dir`` format: ``manifest.json`` is the one manifest (or an index)."""
    obj = load_json(raw, f"{source}: manifest.json")
    kind = OCI_INDEX if "manifests" in obj else OCI_MANIFEST
    descriptor = {"mediaType": obj.get("mediaType") or kind, "digest": str(sha256_of(raw))}
    index = Index.from_json(
        {"schemaVersion": 2, "manifests": [{**descriptor, "size": len(raw)}]}, str(source)
    )
    yield from _walk_index(store, source, index)


def _walk_index(store: BlobStore, source: Path, index: Index) -> Iterator[_Candidate]:
    def walk(
        idx: Index, depth: int, inherited: tuple[str, ...], top: int | None
    ) -> Iterator[_Candidate]:
        for i, desc in enumerate(idx.manifests):
            position = i if top is None else top  # a nested index's images share its @N
            refs = inherited + tuple(
                v for k, v in desc.annotations.items() if k in (REF_NAME, CONTAINERD_NAME)
            )
            if desc.media_type in INDEX_TYPES:
                if depth >= _MAX_INDEX_DEPTH:
                    raise ImageError(f"{source}: indexes nested too deeply")
                obj, _ = _read_blob_json(store, desc, f"index {desc.digest}")
                nested = Index.from_json(obj, f"index {desc.digest}")
                yield from walk(nested, depth + 1, refs, position)
            elif desc.media_type in MANIFEST_TYPES or not desc.media_type:
                if desc.annotations.get("vnd.docker.reference.type"):
                    continue  # buildx attestation manifests are not images
                yield _Candidate(refs, desc, position=position)

    yield from walk(index, 0, (), None)


def _docker_candidates(entries: list[Any], source: Path) -> Iterator[_Candidate]:
    what = f"{source}: manifest.json"
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ImageError(f"{what}: entry {i} is not an object")
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list):
            raise ImageError(f"{what}: entry {i}: RepoTags must be a list")
        yield _Candidate(tuple(str(t) for t in tags), None, entry, i)


def _select(candidates: list[_Candidate], ref: str | None, source: Path) -> list[_Candidate]:
    if not candidates:
        raise ImageError(f"{source}: the archive holds no image")
    position = index_ref(ref)
    if position is not None:
        chosen = [c for c in candidates if c.position == position]
        if not chosen:
            last = max(c.position for c in candidates)
            choices = "only @0" if last == 0 else f"@0 to @{last}"
            raise RefNotFoundError(f"{source}: no image {ref}; choose {choices}")
        return chosen
    if ref is not None:
        chosen = [c for c in candidates if _ref_matches(ref, c.refs)]
        if not chosen:
            raise RefNotFoundError(
                f"{source}: no image named {ref!r}; available: {_describe_refs(candidates)}"
            )
        return chosen
    return candidates


def _describe_refs(candidates: list[_Candidate]) -> str:
    names = sorted({r for c in candidates for r in c.refs})
    return ", ".join(names) if names else "(only untagged images)"


def _layer_media_type(head: bytes) -> str:
    return {"gzip": DOCKER_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": DOCKER_LAYER}[detect(head)]


def _load_docker(
    store: BlobStore, source: Path, cand: _Candidate
) -> tuple[Manifest, bytes, ImageConfig, bytes, list[tuple[Descriptor, str]]]:
    entry = cand.docker_entry or {}
    what = f"{source}: manifest.json"
    config_name = entry.get("Config")
    if not isinstance(config_name, str):
        raise ImageError(f"{what}: entry without Config")
    config_name = clean_name(config_name, what)
    config_obj, config_raw = _read_json(store, config_name, f"config {config_name}")
    config_digest = sha256_of(config_raw)
    stem = posixpath.basename(config_name).removesuffix(".json")
    if re.fullmatch(r"[0-9a-f]{64}", stem) and stem != config_digest.hex:
        raise DigestError(f"config {config_name}: digest mismatch: content is {config_digest}")
    layer_names = entry.get("Layers")
    if not isinstance(layer_names, list) or not all(isinstance(n, str) for n in layer_names):
        raise ImageError(f"{what}: Layers must be a list of file names")
    config = ImageConfig.from_json(config_obj, f"config {config_name}")
    if len(layer_names) != len(config.diff_ids):
        raise ImageError(
            f"config {config_name}: {len(config.diff_ids)} diff_ids but {len(layer_names)} layers"
        )
    layers: list[tuple[Descriptor, str]] = []
    for i, raw_name in enumerate(layer_names):
        name = clean_name(raw_name, what)
        size = store.size(name)
        with store.open(name) as fh:
            head = fh.read(4)
        media_type = _layer_media_type(head)
        if media_type == DOCKER_LAYER:
            # An uncompressed layer's digest is its diff_id, checked while streaming.
            desc = Descriptor(media_type, config.diff_ids[i], size)
            layers.append((desc, name))
        else:
            reader = VerifyingReader(store.open(name), f"layer {i} ({name})")
            try:
                digest = reader.finish()
            finally:
                reader.close()
            layers.append((Descriptor(media_type, digest, size), name))
    manifest_obj = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": str(config_digest), "size": len(config_raw)},
        "layers": [d.to_json() for d, _ in layers],
    }
    manifest_raw = canonical_json(manifest_obj)
    return (
        Manifest.from_json(manifest_obj, "manifest"),
        manifest_raw,
        config,
        config_raw,
        layers,
    )


def open_image(
    path: str | Path,
    *,
    ref: str | None = None,
    platform: str | None = None,
    ref_flag: str = "--ref",
) -> Image:
    """Open one image from ``path``: an image name when a ``str`` (a path, ``-`` for stdin,
    or ``TRANSPORT:PATH[:REF]``, see :mod:`~ocislim.image.transport`), a plain path when a
    :class:`~pathlib.Path`.

    Raises :class:`InputNotFoundError` when the input is missing or unreadable,
    :class:`UsageError` for a malformed name or a REF that contradicts ``ref`` (the
    flag named ``ref_flag`` in the message),
    :class:`RefNotFoundError` when ``ref``/``platform`` select nothing or more
    than one image is present without a ref (the message lists the choices),
    and :class:`ImageError` subclasses for anything malformed.  Manifest, index
    and config are verified here; layers verify while they are read.
    """
    name = parse_input(path) if isinstance(path, str) else InputName(str(path), path)
    ref = merge_ref(name, ref, ref_flag)
    source = name.path
    wanted_platform = Platform.parse(platform) if platform else None
    store = open_store(source, stdin=name.stdin)
    try:
        image = _open(store, source, ref, wanted_platform)
    except BaseException:
        store.close()
        raise
    image.name = name.text
    return image


def _open(store: BlobStore, source: Path, ref: str | None, wanted: Platform | None) -> Image:
    is_dir = isinstance(store, DirStore)
    if store.exists("index.json"):
        fmt = "oci-dir" if is_dir else "oci-archive"
        candidates = _select(list(_oci_candidates(store, source)), ref, source)
    elif store.exists("manifest.json"):
        what = f"{source}: manifest.json"
        raw = _read_small(store, "manifest.json", what)
        entries = parse_json(raw, what)
        if isinstance(entries, list):
            fmt = "docker-dir" if is_dir else "docker-archive"
            candidates = _select(list(_docker_candidates(entries, source)), ref, source)
        elif isinstance(entries, dict):
            fmt = "dir"  # skopeo's: manifest.json is the manifest, blobs named by digest
            store = SkopeoDirStore(store, sha256_of(raw))
            candidates = _select(list(_skopeo_dir_candidates(store, source, raw)), ref, source)
        else:
            raise ImageError(f"{what}: expected a list (docker-archive) or a manifest (dir)")
    else:
        raise ImageError(
            f"{source}: not an image (neither an OCI layout with index.json, "
            "a docker-archive with manifest.json, nor a skopeo dir)"
        )
    all_refs = tuple(sorted({r for c in candidates for r in c.refs}))

    host = Platform.host()
    target = wanted or host
    # Filter by descriptor platforms first (cheap), then by config platforms.
    with_platform = [c for c in candidates if c.descriptor and c.descriptor.platform]
    if with_platform and len(candidates) > 1:
        matching = [
            c
            for c in candidates
            if c.descriptor and c.descriptor.platform and c.descriptor.platform.matches(target)
        ]
        if not matching:
            listed = ", ".join(
                sorted({str(c.descriptor.platform) for c in with_platform if c.descriptor})
            )
            raise RefNotFoundError(f"{source}: no image for platform {target}; available: {listed}")
        candidates = matching

    loaded = [_load(store, source, c) for c in candidates]
    if len(loaded) > 1:
        narrowed = [img for img in loaded if img[3].platform.matches(target)]
        if narrowed:
            loaded = narrowed
    if len(loaded) > 1:
        raise RefNotFoundError(
            f"{source}: holds {len(loaded)} images; pick one with --ref "
            f"(available: {_describe_refs(candidates)})"
        )
    cand, manifest, manifest_raw, config, config_raw, layer_specs, manifest_digest = loaded[0]
    if wanted is not None and config.platform.architecture and not config.platform.matches(wanted):
        raise RefNotFoundError(f"{source}: image is for {config.platform}, not {wanted}")
    layers = tuple(
        Layer(i, desc, config.diff_ids[i], store, name)
        for i, (desc, name) in enumerate(layer_specs)
    )
    return Image(
        source=source,
        format=fmt,
        store=store,
        ref_name=cand.refs[0] if cand.refs else None,
        manifest=manifest,
        manifest_raw=manifest_raw,
        manifest_digest=manifest_digest,
        config=config,
        config_raw=config_raw,
        layers=layers,
        refs=all_refs,
        names=cand.refs,
    )


def _load(
    store: BlobStore, source: Path, cand: _Candidate
) -> tuple[_Candidate, Manifest, bytes, ImageConfig, bytes, list[tuple[Descriptor, str]], Digest]:
    if cand.descriptor is None:
        manifest, raw, config, config_raw, layers = _load_docker(store, source, cand)
        return cand, manifest, raw, config, config_raw, layers, sha256_of(raw)
    desc = cand.descriptor
    what = f"manifest {desc.digest}"
    obj, raw = _read_blob_json(store, desc, what)
    manifest = Manifest.from_json(obj, what)
    if manifest.media_type not in MANIFEST_TYPES:
        raise ImageError(f"{what}: unsupported media type {manifest.media_type!r}")
    config_obj, config_raw = _read_blob_json(
        store, manifest.config, f"config {manifest.config.digest}"
    )
    config = ImageConfig.from_json(config_obj, f"config {manifest.config.digest}")
    if len(manifest.layers) != len(config.diff_ids):
        raise ImageError(
            f"{what}: {len(manifest.layers)} layers but config has {len(config.diff_ids)} diff_ids"
        )
    layers = []
    for i, layer in enumerate(manifest.layers):
        if layer.media_type and not _is_layer_type(layer.media_type):
            raise ImageError(f"{what}: layer {i} has unsupported media type {layer.media_type!r}")
        layers.append((layer, layer.digest.blob_name))
    return cand, manifest, raw, config, config_raw, layers, desc.digest


def _is_layer_type(media_type: str) -> bool:
    return media_type in {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
    } or media_type.startswith(
        ("application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs.")
    )
