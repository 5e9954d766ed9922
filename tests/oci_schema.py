"""Validate OCI JSON documents against the image-spec's own schemas.

The schemas come from Debian's golang-github-opencontainers-image-spec-dev.
They are draft-04 with relative ``$ref``s resolved against nested ``id``s, so
every reference is looked up by its file name.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SCHEMA_DIR = Path("/usr/share/gocode/src/github.com/opencontainers/image-spec/schema")
SCHEMAS = {
    "index": "image-index-schema.json",
    "manifest": "image-manifest-schema.json",
    "config": "config-schema.json",
    "layout": "image-layout-schema.json",
}


@cache
def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text())


def _retrieve(uri: str) -> Resource[Any]:
    name = uri.rsplit("/", 1)[-1].split("#", 1)[0]
    return Resource.from_contents(_load(name), default_specification=DRAFT4)


def validate(kind: str, document: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` is a valid OCI ``kind``."""
    schema = _load(SCHEMAS[kind])
    registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    validator = jsonschema.Draft4Validator(schema, registry=registry)
    validator.validate(document)


def available() -> bool:
    return (SCHEMA_DIR / SCHEMAS["manifest"]).is_file()
