"""A Dockerfile reverse-engineered from an image's history.

Each history entry's ``created_by`` is turned back into the instruction that
recorded it.  The forms handled are those Docker's classic builder writes
(``/bin/sh -c #(nop)  CMD [...]``, ``/bin/sh -c apt-get ...``, ``|2 A=1 B=2
/bin/sh -c ...`` for RUN with build args, ``ADD file:<hash> in /``), BuildKit's
(``RUN /bin/sh -c ... # buildkit``, ``EXPOSE map[80/tcp:{}]``) and buildah's
(the classic forms).  Anything else is kept as a comment: a COPY from a build
context cannot be replayed anyway, so the result documents the build rather
than reproducing it.  Config settings the history does not mention
(e.g. set by ``umoci config``) are appended from the config.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ocislim.image.models import ImageConfig

INSTRUCTIONS = (
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
)
_SHELL_PREFIX = re.compile(r"^/bin/(?:ba)?sh -c ")
_NOP = re.compile(r"^/bin/(?:ba)?sh -c #\(nop\)\s*")
_BUILD_ARGS = re.compile(r"^\|(\d+)\s+")
_EXPOSE_MAP = re.compile(r"^map\[(.*)\]$")
_CONTENT_SOURCE = re.compile(r"^((?:--\S+\s+)*)((?:file|dir|multi):[0-9a-f]+) in (\S.*?)\s*$")


def _strip_build_args(text: str) -> tuple[str, list[str]]:
    """``|N K=V ... rest`` -> (``rest``, ``["K=V", ...]``); other text unchanged."""
    match = _BUILD_ARGS.match(text)
    if not match:
        return text, []
    count = int(match.group(1))
    rest = text[match.end() :]
    args = []
    for _ in range(count):
        word, _, rest = rest.partition(" ")
        args.append(word)
    return rest.lstrip(), args


def _format_run(command: str) -> str:
    """``RUN a && b`` with one command per line, as people write long RUN steps."""
    parts = [p.strip() for p in command.split(" && ")]
    if len(parts) == 1:
        return f"RUN {command.strip()}"
    return "RUN " + " \\\n    && ".join(parts)


def _instruction(text: str) -> str | None:
    """The Dockerfile line for one keyword-led ``text``, or ``None`` if it is not one."""
    keyword, _, rest = text.partition(" ")
    keyword = keyword.upper()
    if keyword not in INSTRUCTIONS:
        return None
    rest = rest.strip()
    if keyword == "RUN":
        rest, _ = _strip_build_args(rest)
        rest = _SHELL_PREFIX.sub("", rest)
        return _format_run(rest)
    if keyword == "EXPOSE":
        match = _EXPOSE_MAP.match(rest)
        if match:
            ports = [p.split(":", 1)[0] for p in match.group(1).split()]
            rest = " ".join(ports)
    if keyword in ("ADD", "COPY"):
        match = _CONTENT_SOURCE.match(rest)
        if match:
            flags, source, dest = match.groups()
            rest = f"{flags}{source} {dest}"
    return f"{keyword} {rest}".rstrip()


def instruction_for(created_by: str) -> tuple[str, bool]:
    """``(line, recognised)`` for one history ``created_by`` string."""
    text = created_by.strip()
    if text.endswith("# buildkit"):
        text = text[: -len("# buildkit")].rstrip()
    nop = _NOP.match(text)
    if nop:
        line = _instruction(text[nop.end() :])
        return (line, True) if line else ("# " + text, False)
    stripped, _ = _strip_build_args(text)
    if _SHELL_PREFIX.match(stripped):
        return _format_run(_SHELL_PREFIX.sub("", stripped, count=1)), True
    line = _instruction(text)
    if line:
        return line, True
    return "# " + " ".join(text.split()), False


def _from_config(config: ImageConfig, seen: set[str]) -> list[str]:
    """Instructions for config settings that no history step recorded."""
    out: list[str] = []
    if "ENV" not in seen:
        out += [f"ENV {e}" for e in config.env]
    if "LABEL" not in seen:
        out += [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in sorted(config.labels.items())]
    if "EXPOSE" not in seen and config.exposed_ports:
        out.append("EXPOSE " + " ".join(config.exposed_ports))
    if "VOLUME" not in seen and config.volumes:
        out.append("VOLUME " + json.dumps(config.volumes))
    if "USER" not in seen and config.user:
        out.append(f"USER {config.user}")
    if "WORKDIR" not in seen and config.working_dir:
        out.append(f"WORKDIR {config.working_dir}")
    if "STOPSIGNAL" not in seen and config.stop_signal:
        out.append(f"STOPSIGNAL {config.stop_signal}")
    if "ENTRYPOINT" not in seen and config.entrypoint:
        out.append("ENTRYPOINT " + json.dumps(config.entrypoint))
    if "CMD" not in seen and config.cmd:
        out.append("CMD " + json.dumps(config.cmd))
    return out


def reconstruct(config: ImageConfig) -> str:
    """The Dockerfile text for an image whose config is ``config``."""
    lines = [
        "# Reconstructed from the image history by ocislim xray.",
        "# Steps that copied files from a build context cannot be replayed as written.",
        "FROM scratch",
    ]
    seen: set[str] = set()
    history: list[dict[str, Any]] = config.history
    for entry in history:
        created_by = entry.get("created_by")
        comment = entry.get("comment")
        if isinstance(comment, str) and comment and comment != "buildkit.dockerfile.v0":
            lines.append("# " + " ".join(comment.split()))
        if not isinstance(created_by, str) or not created_by.strip():
            if not entry.get("empty_layer"):
                lines.append("# (a layer with no recorded command)")
            continue
        line, recognised = instruction_for(created_by)
        if recognised:
            seen.add(line.split(" ", 1)[0])
        lines.append(line)
    extra = _from_config(config, seen)
    if extra:
        lines.append("# Settings from the image config that the history does not record:")
        lines += extra
    return "\n".join(lines) + "\n"
