"""The image reference grammar of OCI and docker (distribution's ``reference`` package).

``--tag`` values (and any other reference ocislim writes into an index or a
docker ``RepoTags``) are checked here, so a name podman, skopeo or docker would
refuse is a usage error before any work, with the rule it breaks:

* ``[HOST[:PORT]/]COMPONENT[/COMPONENT...][:TAG]``;
* HOST: DNS labels (letters, digits, inner ``-``) joined by ``.``, or ``[IPv6]``;
  the first part is a host only when it has a ``.`` or ``:`` or is ``localhost``;
* COMPONENT: lower-case ``[a-z0-9]+`` runs joined by one ``.``, one or two ``_``,
  or any number of ``-``; the whole name at most 255 characters;
* TAG: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; no ``@digest`` (a tag is asked for).
"""

from __future__ import annotations

import re

from ocislim.errors import UsageError

NAME_MAX = 255
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

RULE = (
    "expected [HOST[:PORT]/]NAME[:TAG] with NAME lower-case components "
    "([a-z0-9] joined by '.', '_', '__' or '-', separated by '/') "
    "and TAG [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
)


def _split_host(name: str) -> tuple[str | None, str]:
    """``(host, path)``: the first part is a host when it looks like one (as docker decides)."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, name


def reference_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a ``NAME[:TAG]`` reference, or None when it is valid."""
    if not value:
        return "empty"
    if "@" in value:
        return "a digest (@...) is not a tag"
    slash = value.rfind("/")
    colon = value.rfind(":")
    name, tag = (value[:colon], value[colon + 1 :]) if colon > slash else (value, None)
    if tag is not None and not _TAG.fullmatch(tag):
        return f"tag {tag!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
    if len(name) > NAME_MAX:
        return f"the name is longer than {NAME_MAX} characters"
    host, path = _split_host(name)
    if host is not None and not _HOST.fullmatch(host):
        return f"registry {host!r} must be HOST[:PORT] (DNS labels or [IPv6], digits for PORT)"
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            lower = " (upper case is not allowed)" if component != component.lower() else ""
            return (
                f"name component {component!r} must be lower-case [a-z0-9] joined by "
                f"'.', '_', '__' or '-'{lower}"
            )
    return None


def check_tag(value: str | None, flag: str = "--tag") -> None:
    """Raise :class:`UsageError` naming the rule when ``value`` is not a valid reference."""
    if value is None:
        return
    problem = reference_problem(value)
    if problem is not None:
        raise UsageError(f"{flag} {value!r}: not an image reference: {problem} ({RULE})")
