"""Frozen models of the OCI objects ocislim reads and writes.

Each ``from_json`` validates just enough structure to use the object safely
(types of required fields, digests) and raises :class:`ImageError` naming the
object otherwise.  Models never change; rewriting an image builds new ones.
"""

from __future__ import annotations

import json
import platform as _platform
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from ocislim.errors import ImageError, UsageError
from ocislim.image.digest import Digest, parse_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
MANIFEST_TYPES = {OCI_MANIFEST, DOCKER_MANIFEST}
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no insignificant white space."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# Real image JSON nests about 5 deep; Python's parser, printer and copier recurse
# per level and fail near 1000.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]+|\\(?:.|\Z))*(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def check_json_depth(data: bytes, what: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before any parser recurses into it.

    Strings are blanked first, so brackets inside them do not count; then the
    innermost ``[]``/``{}`` pairs are peeled off once per level.  Brackets that
    never pair up are invalid JSON.  Linear per level, at C speed.
    """
    skeleton = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not skeleton:
            return
        peeled = skeleton.replace(b"[]", b"").replace(b"{}", b"")
        if len(peeled) == len(skeleton):
            raise ImageError(f"{what}: invalid JSON (unbalanced brackets)")
        skeleton = peeled
    if skeleton:
        raise ImageError(f"{what}: JSON nested more than {limit} levels deep")


def parse_json(data: bytes, what: str) -> Any:
    """Parse JSON, raising a one-line :class:`ImageError` naming ``what``.

    Nesting deeper than :data:`MAX_JSON_DEPTH` is refused before parsing.
    """
    check_json_depth(data, what)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ImageError(f"{what}: invalid JSON ({exc})") from None


def load_json(data: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object, raising a one-line :class:`ImageError` naming ``what``."""
    obj = parse_json(data, what)
    if not isinstance(obj, dict):
        raise ImageError(f"{what}: expected a JSON object")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type, what: str, required: bool = True) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise ImageError(f"{what}: missing field {key!r}")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ImageError(f"{what}: field {key!r} has the wrong type")
    return value


def _optional_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    """``obj[key]`` if it is a non-empty string, ``None`` if absent or empty."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ImageError(f"{what}: field {key!r} has the wrong type")
    return value


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"--platform: expected os/arch[/variant], got {text!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine().lower()
        arch = {
            "x86_64": "amd64",
            "amd64": "amd64",
            "aarch64": "arm64",
            "arm64": "arm64",
            "armv7l": "arm",
            "i686": "386",
            "i386": "386",
            "ppc64le": "ppc64le",
            "s390x": "s390x",
            "riscv64": "riscv64",
        }.get(machine, machine)
        return cls("linux", arch, "v7" if machine == "armv7l" else None)

    def matches(self, wanted: Platform) -> bool:
        """True when this platform satisfies ``wanted`` (a missing variant matches any)."""
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        return wanted.variant is None or self.variant in (None, wanted.variant)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    @classmethod
    def from_json(cls, obj: Any, what: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise ImageError(f"{what}: descriptor is not an object")
        media_type = _field(obj, "mediaType", str, what, required=False) or ""
        digest = parse_digest(obj.get("digest"), what)
        size = _field(obj, "size", int, what)
        if size < 0:
            raise ImageError(f"{what}: negative size")
        annotations = _field(obj, "annotations", dict, what, required=False) or {}
        if not all(isinstance(v, str) for v in annotations.values()):
            raise ImageError(f"{what}: annotation values must be strings")
        plat = obj.get("platform")
        platform = None
        if isinstance(plat, dict) and isinstance(plat.get("os"), str):
            platform = Platform(
                plat["os"],
                str(plat.get("architecture", "")),
                _optional_str(plat, "variant", f"{what} platform"),
            )
        return cls(media_type, digest, size, dict(annotations), platform)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_json()
        return out


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict[str, Any], what: str) -> Manifest:
        if obj.get("schemaVersion") != 2:
            raise ImageError(f"{what}: unsupported schemaVersion {obj.get('schemaVersion')!r}")
        media_type = _optional_str(obj, "mediaType", what) or OCI_MANIFEST
        config = Descriptor.from_json(obj.get("config"), f"{what} config")
        layers_raw = _field(obj, "layers", list, what)
        layers = tuple(
            Descriptor.from_json(layer, f"{what} layer {i}") for i, layer in enumerate(layers_raw)
        )
        annotations = _field(obj, "annotations", dict, what, required=False) or {}
        return cls(media_type, config, layers, dict(annotations))


@dataclass(frozen=True)
class Index:
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict[str, Any], what: str) -> Index:
        if obj.get("schemaVersion") != 2:
            raise ImageError(f"{what}: unsupported schemaVersion {obj.get('schemaVersion')!r}")
        raw = _field(obj, "manifests", list, what)
        manifests = tuple(
            Descriptor.from_json(desc, f"{what} manifest {i}") for i, desc in enumerate(raw)
        )
        annotations = _field(obj, "annotations", dict, what, required=False) or {}
        return cls(manifests, dict(annotations))


# The PATH a container runtime gives a program whose image Env sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageRunConfig(Protocol):
    """The run settings of an image config that running or analysing its program reads.

    :class:`ImageConfig` has them; read-only members, so a frozen dataclass satisfies it.
    """

    @property
    def entrypoint(self) -> list[str] | None: ...
    @property
    def cmd(self) -> list[str] | None: ...
    @property
    def env(self) -> list[str]: ...
    @property
    def working_dir(self) -> str: ...
    @property
    def user(self) -> str: ...


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config ocislim uses, plus the raw object for lossless rewrite."""

    raw: dict[str, Any]
    platform: Platform
    diff_ids: tuple[Digest, ...]
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[str]
    working_dir: str
    user: str
    exposed_ports: list[str]
    volumes: list[str]
    labels: dict[str, str]
    stop_signal: str | None
    history: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        """The run settings as a JSON-ready dict (what inspect shows and diff compares)."""
        return {
            "entrypoint": self.entrypoint,
            "cmd": self.cmd,
            "env": self.env,
            "working_dir": self.working_dir,
            "user": self.user,
            "exposed_ports": self.exposed_ports,
            "volumes": self.volumes,
            "labels": self.labels,
            "stop_signal": self.stop_signal,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], what: str = "config") -> ImageConfig:
        rootfs = _field(obj, "rootfs", dict, what)
        if rootfs.get("type") != "layers":
            raise ImageError(f"{what}: rootfs.type must be 'layers'")
        raw_ids = _field(rootfs, "diff_ids", list, f"{what} rootfs")
        diff_ids = tuple(
            parse_digest(d, f"{what} rootfs.diff_ids[{i}]") for i, d in enumerate(raw_ids)
        )
        cfg = obj.get("config") or {}
        if not isinstance(cfg, dict):
            raise ImageError(f"{what}: field 'config' has the wrong type")

        def str_list(key: str) -> list[str] | None:
            value = cfg.get(key)
            if value is None:
                return None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ImageError(f"{what}: config.{key} must be a list of strings")
            return list(value)

        def key_list(key: str) -> list[str]:
            value = cfg.get(key) or {}
            if not isinstance(value, dict):
                raise ImageError(f"{what}: config.{key} must be an object")
            return sorted(value)

        labels = cfg.get("Labels") or {}
        if not isinstance(labels, dict):
            raise ImageError(f"{what}: config.Labels must be an object")
        history = obj.get("history") or []
        if not isinstance(history, list):
            raise ImageError(f"{what}: history must be a list")
        return cls(
            raw=obj,
            platform=Platform(
                str(obj.get("os") or "linux"),
                str(obj.get("architecture") or ""),
                _optional_str(obj, "variant", what),
            ),
            diff_ids=diff_ids,
            entrypoint=str_list("Entrypoint"),
            cmd=str_list("Cmd"),
            env=str_list("Env") or [],
            working_dir=str(cfg.get("WorkingDir") or ""),
            user=str(cfg.get("User") or ""),
            exposed_ports=key_list("ExposedPorts"),
            volumes=key_list("Volumes"),
            labels={str(k): str(v) for k, v in labels.items()},
            stop_signal=_optional_str(cfg, "StopSignal", f"{what} config"),
            history=[h for h in history if isinstance(h, dict)],
        )
