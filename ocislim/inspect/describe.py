"""``ocislim inspect``: what an image is, without extracting it.

:func:`describe` streams every layer once (verifying it) to count entries and
uncompressed bytes, and returns a JSON-ready dictionary.
"""

from __future__ import annotations

from typing import Any

from ocislim.image.source import Image
from ocislim.layers.merge import iter_members
from ocislim.progress import NULL_PROGRESS, Progress


def describe(image: Image, progress: Progress = NULL_PROGRESS) -> dict[str, Any]:
    """A summary of ``image``: identity, config, history, and per-layer sizes and counts."""
    layers = []
    for layer in image.layers:
        progress.stage(
            "read", f"layer {layer.index + 1}/{len(image.layers)} {layer.descriptor.digest}"
        )
        stats: dict[str, int] = {}
        entries = 0
        for _ in iter_members(layer, progress, stats):
            entries += 1
        layers.append(
            {
                "digest": str(layer.descriptor.digest),
                "media_type": layer.descriptor.media_type,
                "size": layer.descriptor.size,
                "diff_id": str(layer.diff_id),
                "uncompressed_size": stats.get("uncompressed_size", 0),
                "entries": entries,
            }
        )
    cfg = image.config
    return {
        "source": str(image.source),
        "format": image.format,
        "reference": image.ref_name,
        "references": list(image.refs),
        "platform": str(cfg.platform),
        "manifest_digest": str(image.manifest_digest),
        "config_digest": str(image.manifest.config.digest),
        "size": sum(layer.descriptor.size for layer in image.layers),
        "uncompressed_size": sum(entry["uncompressed_size"] for entry in layers),
        "layers": layers,
        "config": cfg.summary(),
        "history": [
            {
                "created": h.get("created"),
                "created_by": h.get("created_by"),
                "comment": h.get("comment"),
                "empty_layer": bool(h.get("empty_layer", False)),
            }
            for h in cfg.history
        ],
    }
