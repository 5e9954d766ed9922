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

The output always parses as a Dockerfile: a step becomes an instruction only
when its arguments have that instruction's shape (:func:`_well_formed`: COPY
and ADD a source and a destination, EXPOSE port numbers, ENV and LABEL
``KEY=VALUE`` pairs, JSON arrays where one is given, one line, no second
instruction after a ``;`` as in ``COPY demo /demo; RUN ln -s ...``); every other
line is a comment on one line.
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


_PORT = re.compile(r"[0-9]+(?:-[0-9]+)?(?:/(?:tcp|udp|sctp))?")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SECOND_STEP = re.compile(r";\s*(?:" + "|".join(INSTRUCTIONS) + r")\s")
_HEALTHCHECK = re.compile(r"NONE|(?:--\S+\s+)*CMD\s+\S.*")


def _json_strings(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _pairs(rest: str) -> str | None:
    """``K=V ...`` as a Dockerfile can read it: as recorded when every word is a pair,
    one quoted pair when the value had spaces (``A=b c`` -> ``A="b c"``); else None."""
    words = rest.split()
    if words and all("=" in w and _KEY.fullmatch(w.split("=", 1)[0]) for w in words):
        return rest
    key, eq, value = rest.partition("=")
    if eq and _KEY.fullmatch(key) and not value.startswith('"'):
        return f"{key}={json.dumps(value)}"
    return None


def _well_formed(keyword: str, rest: str) -> str | None:
    """``rest`` as arguments of ``keyword`` a Dockerfile parser accepts (perhaps
    re-quoted), or None when the step does not have that instruction's shape."""
    if "\n" in rest or rest.endswith("\\") or _SECOND_STEP.search(rest):
        return None
    words = rest.split()
    if not words or keyword == "FROM":  # a FROM in the history would start another stage
        return None
    if keyword in ("ADD", "COPY"):
        args = [w for w in words if not w.startswith("--")]
        ok = _json_strings(rest) if rest.startswith("[") else len(args) >= 2
    elif keyword == "EXPOSE":
        ok = all(_PORT.fullmatch(w) for w in words)
    elif keyword in ("ENV", "LABEL"):
        if keyword == "ENV" and "=" not in words[0] and _KEY.fullmatch(words[0]):
            return rest if len(words) > 1 else None  # the old form: ENV KEY VALUE
        return _pairs(rest)
    elif keyword in ("USER", "STOPSIGNAL"):
        ok = len(words) == 1
    elif keyword == "SHELL":
        ok = _json_strings(rest)
    elif keyword in ("CMD", "ENTRYPOINT", "VOLUME"):
        ok = _json_strings(rest) if rest.startswith("[") else True
    elif keyword == "ARG":
        ok = all(_KEY.fullmatch(w.split("=", 1)[0]) for w in words)
    elif keyword == "HEALTHCHECK":
        ok = _HEALTHCHECK.fullmatch(rest) is not None
    elif keyword == "ONBUILD":
        inner = _instruction(rest)
        ok = inner is not None and not inner.upper().startswith(("ONBUILD", "FROM"))
    else:  # RUN, WORKDIR, MAINTAINER: any one line
        ok = True
    return rest if ok else None


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
        return _format_run(rest) if _well_formed("RUN", rest) else None
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
    shaped = _well_formed(keyword, rest)
    return None if shaped is None else f"{keyword} {shaped}".rstrip()


def instruction_for(created_by: str) -> tuple[str, bool]:
    """``(line, recognised)`` for one history ``created_by`` string."""
    text = created_by.strip()
    if text.endswith("# buildkit"):
        text = text[: -len("# buildkit")].rstrip()
    nop = _NOP.match(text)
    if nop:
        line = _instruction(text[nop.end() :])
        return (line, True) if line else (_comment(text), False)
    stripped, _ = _strip_build_args(text)
    if _SHELL_PREFIX.match(stripped):
        command = _SHELL_PREFIX.sub("", stripped, count=1)
        if _well_formed("RUN", command):
            return _format_run(command), True
        return _comment(text), False
    line = _instruction(text)
    if line:
        return line, True
    return _comment(text), False


def _comment(text: str) -> str:
    """``text`` as one comment line (a newline in it would end the comment)."""
    return "# " + " ".join(text.split())


def _from_config(config: ImageConfig, seen: set[str]) -> list[str]:
    """Instructions for config settings that no history step recorded."""
    out: list[str] = []
    if "ENV" not in seen:
        for item in config.env:
            pair = _pairs(item)
            out.append(f"ENV {pair}" if pair else _comment(f"ENV {item} (not KEY=VALUE)"))
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
            lines.append(_comment(comment))
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
