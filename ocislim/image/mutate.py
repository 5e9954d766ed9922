"""New image configs derived from a source image's (as go-containerregistry's ``mutate``).

Both ``convert --flatten`` and ``build`` write one layer in place of the
source's; the config they write is the source's with that layer as its only
``diff_id``, the source's history kept (every entry marked ``empty_layer``)
and one history entry saying what happened (:func:`flattened_config`).
``build`` also replaces the fields its ``--new-*`` flags name
(:class:`ConfigOverrides`).  Every function here is pure:
the result depends on the source config, its arguments and
``SOURCE_DATE_EPOCH``.
"""

from __future__ import annotations

import copy
import datetime
import re
from dataclasses import dataclass
from typing import Any

from ocislim.errors import UsageError
from ocislim.image.digest import Digest
from ocislim.image.models import canonical_json
from ocislim.image.source import Image
from ocislim.image.writer import source_date_epoch

_NAME_RE = re.compile(r"[^a-z0-9._/-]+")


@dataclass(frozen=True)
class ConfigOverrides:
    """``--new-*``: replace fields of the output config (None: keep the source's)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    labels: tuple[str, ...] = ()


def flattened_config(
    image: Image,
    diff_id: Digest,
    created_by: str,
    overrides: ConfigOverrides | None = None,
) -> bytes:
    """The source config with one layer ``diff_id``, a history saying what happened, and
    ``overrides`` applied.  Raises :class:`UsageError` for an override that is not K=V."""
    raw: dict[str, Any] = copy.deepcopy(image.config.raw)
    raw["rootfs"] = {"type": "layers", "diff_ids": [str(diff_id)]}
    history = [dict(h, empty_layer=True) for h in image.config.history]
    created = _iso(source_date_epoch())
    history.append({"created": created, "created_by": created_by, "comment": "ocislim"})
    raw["history"] = history
    if overrides is not None:
        _override(raw.setdefault("config", {}), overrides)
    return canonical_json(raw)


def _override(config: dict[str, Any], overrides: ConfigOverrides) -> None:
    if overrides.entrypoint is not None:
        config["Entrypoint"] = overrides.entrypoint or None
    if overrides.cmd is not None:
        config["Cmd"] = overrides.cmd or None
    if overrides.env:
        env = list(config.get("Env") or [])
        for item in overrides.env:
            key = item.split("=", 1)[0]
            if not key or "=" not in item:
                raise UsageError(f"--new-env {item!r}: expected K=V")
            env = [e for e in env if e.split("=", 1)[0] != key] + [item]
        config["Env"] = env
    if overrides.workdir is not None:
        config["WorkingDir"] = overrides.workdir
    if overrides.labels:
        labels = dict(config.get("Labels") or {})
        for item in overrides.labels:
            key, sep, value = item.partition("=")
            if not key or not sep:
                raise UsageError(f"--new-label {item!r}: expected K=V")
            labels[key] = value
        config["Labels"] = labels
    for key in [k for k, v in config.items() if v is None]:
        del config[key]


_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_STEM_SUFFIXES = (".tar", ".oci", ".docker", ".archive", ".gz", ".tgz", ".zst", ".zstd", ".layout")


def default_tag(image: Image) -> str:
    """``NAME.slim:TAG`` from the source's reference, else from its file or directory name.

    A reference that is only a tag (an OCI layout's ``v2``, ``oci:DIR:latest``)
    keeps its tag; the name then comes from the archive's or directory's name
    (``oci:/x/myapp:v2`` -> ``localhost/myapp.slim:v2``; an image read from
    stdin is ``localhost/image``).  A full name among the image's refs (as
    containerd exports beside the tag) is preferred to a tag alone.
    """
    refs = [r.split("@", 1)[0] for r in (image.ref_name, *image.names) if r]
    full = [r for r in refs if ("/" in r or ":" in r) and not r.startswith(":")]
    ref = full[0] if full else (refs[0] if refs else "")
    name, tag = ref, "latest"
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1 :] or "latest"
    elif not full and _TAG_RE.fullmatch(ref):
        name, tag = "", ref  # only a tag: the name comes from the source's name
    if not name:
        name = "localhost/" + _source_stem(image)
    return f"{name}.slim:{tag}"


def _source_stem(image: Image) -> str:
    """A reference name from the source's file or directory name (``image`` for stdin)."""
    source = image.source
    if str(source).startswith(("/dev/", "/proc/")):
        return "image"  # stdin or a pipe: its name says nothing
    stem = source.name or source.resolve().name
    while stem.endswith(_STEM_SUFFIXES):
        for suffix in _STEM_SUFFIXES:
            stem = stem.removesuffix(suffix)
    return _NAME_RE.sub("-", stem.lower()).strip("-._/") or "image"


def _iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
