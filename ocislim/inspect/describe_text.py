"""The text form of ``inspect``: identity, layers, config and history (never prints)."""

from __future__ import annotations

import json
from typing import Any

from ocislim.humanize import human_size


def render_text(info: dict[str, Any]) -> str:
    """The lines ``ocislim inspect`` shows for a :func:`~ocislim.inspect.describe.describe`
    result (no final newline).  Layers are numbered from 1, base first."""
    cfg = info["config"]
    lines = [
        f"Image:     {info['source']} ({info['format']})",
        f"Reference: {info['reference'] or '-'}",
        f"Platform:  {info['platform']}",
        f"Manifest:  {info['manifest_digest']}",
        f"Config:    {info['config_digest']}",
        f"Size:      {human_size(info['size'])} compressed, "
        f"{human_size(info['uncompressed_size'])} uncompressed",
        "",
        f"{'#':>2}  {'DIGEST':<19}  {'COMPRESSED':>10}  {'UNCOMPRESSED':>12}  {'ENTRIES':>7}  TYPE",
    ]
    for i, layer in enumerate(info["layers"], start=1):  # from 1, as progress counts
        lines.append(
            f"{i:>2}  {layer['digest'][:19]:<19}  {human_size(layer['size']):>10}  "
            f"{human_size(layer['uncompressed_size']):>12}  {layer['entries']:>7}  "
            f"{layer['media_type'].rsplit('.', 1)[-1]}"
        )
    lines += [
        "",
        f"Entrypoint: {json.dumps(cfg['entrypoint'])}",
        f"Cmd:        {json.dumps(cfg['cmd'])}",
        f"WorkingDir: {cfg['working_dir'] or '-'}",
        f"User:       {cfg['user'] or '-'}",
        f"Ports:      {', '.join(cfg['exposed_ports']) or '-'}",
        f"Volumes:    {', '.join(cfg['volumes']) or '-'}",
        "Env:",
        *[f"  {e}" for e in cfg["env"]],
        "Labels:",
        *[f"  {k}={v}" for k, v in sorted(cfg["labels"].items())],
        "History:",
        *[
            f"  {'(empty) ' if h['empty_layer'] else ''}{(h['created_by'] or '').strip()[:100]}"
            for h in info["history"]
        ],
    ]
    return "\n".join(lines)
