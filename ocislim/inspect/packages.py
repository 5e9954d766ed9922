"""Installed packages, read from the package databases in an image's merged tree.

Parsers are pure functions of file bytes (unit-tested on their own);
:func:`find_packages` applies them to the files an :class:`ImageScan`
captured.  Sources: dpkg (``/var/lib/dpkg/status`` and distroless-style
``status.d/*``), apk (``lib/apk/db/installed``), rpm (database presence
only: its formats need rpm's own libraries), pip (``*.dist-info/METADATA``
and ``*.egg-info`` under ``site-packages``/``dist-packages``) and npm
(``node_modules/NAME/package.json`` and Debian's ``/usr/share/nodejs/NAME/package.json``).
Malformed records are skipped, never fatal: an image's package database is
data, not something ocislim vouches for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ocislim.inspect.scan import ImageScan, npm_root

RPM_DATABASES = (
    "/var/lib/rpm/rpmdb.sqlite",
    "/var/lib/rpm/Packages.db",
    "/var/lib/rpm/Packages",
    "/usr/lib/sysimage/rpm/rpmdb.sqlite",
    "/usr/lib/sysimage/rpm/Packages.db",
    "/usr/lib/sysimage/rpm/Packages",
)
APK_DATABASES = ("/lib/apk/db/installed", "/usr/lib/apk/db/installed")
DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_DIR = "/var/lib/dpkg/status.d/"


@dataclass
class PackageDb:
    """The packages one manager records.  ``packages`` is ``None`` when not countable."""

    manager: str
    databases: list[str]
    packages: dict[str, str] | None = field(default_factory=dict)
    # Packages an ``ocislim build`` kept in part: name -> (files kept, files listed).
    partial: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def count(self) -> int | None:
        return None if self.packages is None else len(self.packages)


def _stanzas(text: str) -> Iterable[dict[str, str]]:
    """RFC 822-style records separated by blank lines; continuation lines are dropped."""
    record: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if record:
                yield record
                record = {}
            continue
        if line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        if sep:
            record[key.strip()] = value.strip()
    if record:
        yield record


def _keyed(items: list[tuple[str, str, str]]) -> dict[str, str]:
    """``{name: version}``; a name installed for several architectures gets ``name:arch``."""
    names: dict[str, int] = {}
    for name, _, _ in items:
        names[name] = names.get(name, 0) + 1
    out: dict[str, str] = {}
    for name, arch, version in items:
        out[name if names[name] == 1 or not arch else f"{name}:{arch}"] = version
    return out


def parse_dpkg_status(text: str, require_status: bool = True) -> dict[str, str]:
    """Installed packages in a dpkg status file: ``{name: version}``.

    A record counts when its ``Status`` ends in ``installed``; with
    ``require_status=False`` (``status.d`` files) a record without ``Status`` counts too.
    """
    items = []
    for record in _stanzas(text):
        name = record.get("Package")
        if not name:
            continue
        status = record.get("Status")
        if status is None:
            if require_status:
                continue
        elif status.split()[-1:] != ["installed"]:
            continue
        items.append((name, record.get("Architecture", ""), record.get("Version", "")))
    return _keyed(items)


def parse_dpkg_sources(text: str) -> dict[str, str]:
    """The source package of each installed package in a dpkg status file:
    ``{name: source}`` (``Source: name (version)`` loses its version; a package
    without the field is its own source)."""
    out: dict[str, str] = {}
    for record in _stanzas(text):
        name = record.get("Package")
        status = record.get("Status", "")
        if not name or status.split()[-1:] != ["installed"]:
            continue
        source = record.get("Source", "").split(" ", 1)[0]
        out[name] = source or name
    return out


PARTIAL_FIELD = "Ocislim-Partial"
_PARTIAL_RE = re.compile(r"kept (\d+) of (\d+) files")


def parse_dpkg_partial(text: str) -> dict[str, tuple[int, int]]:
    """Packages a trimmed dpkg status marks as kept in part (``Ocislim-Partial: kept K
    of N files``): ``{name: (K, N)}``, names keyed as :func:`parse_dpkg_status` does."""
    items = []
    marks: dict[tuple[str, str], tuple[int, int]] = {}
    for record in _stanzas(text):
        name = record.get("Package")
        if not name or record.get("Status", "").split()[-1:] != ["installed"]:
            continue
        arch = record.get("Architecture", "")
        items.append((name, arch, ""))
        match = _PARTIAL_RE.search(record.get(PARTIAL_FIELD, ""))
        if match:
            marks[(name, arch)] = (int(match.group(1)), int(match.group(2)))
    counts: dict[str, int] = {}
    for name, _, _ in items:
        counts[name] = counts.get(name, 0) + 1
    return {
        (name if counts[name] == 1 or not arch else f"{name}:{arch}"): marks[(name, arch)]
        for name, arch, _ in items
        if (name, arch) in marks
    }


def parse_apk_installed(text: str) -> dict[str, str]:
    """Packages in an apk ``installed`` database: ``{name: version}``."""
    out: dict[str, str] = {}
    name = version = None
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if name:
                out[name] = version or ""
            name = version = None
        elif line.startswith("P:"):
            name = line[2:].strip()
        elif line.startswith("V:"):
            version = line[2:].strip()
    return out


def canonical_pip_name(name: str) -> str:
    """The normalised project name (PEP 503): lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_python_metadata(text: str) -> tuple[str, str] | None:
    """``(name, version)`` from a METADATA / PKG-INFO header, or ``None``."""
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
    if not name:
        return None
    return canonical_pip_name(name), version or ""


def parse_package_json(data: bytes) -> tuple[str, str] | None:
    """``(name, version)`` from an npm ``package.json``, or ``None`` when it has no name."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    name, version = obj.get("name"), obj.get("version")
    if not isinstance(name, str) or not name:
        return None
    return name, version if isinstance(version, str) else ""


def _merge_versions(found: dict[str, set[str]]) -> dict[str, str]:
    """One version string per name; several installed versions are listed, sorted."""
    return {name: ", ".join(sorted(versions)) for name, versions in sorted(found.items())}


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def find_packages(image: ImageScan) -> dict[str, PackageDb]:
    """Every package manager found in the merged tree, keyed ``dpkg``, ``apk``, ``rpm``,
    ``pip``, ``npm`` (absent managers are left out)."""
    found: dict[str, PackageDb] = {}
    tree = image.tree

    status = image.file_bytes(DPKG_STATUS)
    status_d = [p for p in image.captured_paths() if p.startswith(DPKG_STATUS_DIR)]
    if status is not None or status_d:
        packages: dict[str, str] = {}
        databases = []
        partial: dict[str, tuple[int, int]] = {}
        if status is not None:
            packages.update(parse_dpkg_status(_text(status)))
            partial = parse_dpkg_partial(_text(status))
            databases.append(DPKG_STATUS)
        for path in status_d:
            data = image.file_bytes(path, follow=False)
            if data is not None:
                packages.update(parse_dpkg_status(_text(data), require_status=False))
        if status_d:
            databases.append(DPKG_STATUS_DIR)
        found["dpkg"] = PackageDb("dpkg", databases, dict(sorted(packages.items())), partial)

    for path in APK_DATABASES:
        data = image.file_bytes(path)
        if data is not None:
            found["apk"] = PackageDb("apk", [path], parse_apk_installed(_text(data)))
            break

    rpm = [p for p in RPM_DATABASES if tree.get(tree.resolve(p)) is not None]
    if rpm:
        found["rpm"] = PackageDb("rpm", rpm, None)

    pip: dict[str, set[str]] = {}
    pip_dirs: set[str] = set()
    npm: dict[str, set[str]] = {}
    npm_dirs: set[str] = set()
    for path in image.captured_paths():
        if path.endswith("/package.json"):
            data = image.file_bytes(path, follow=False)
            parsed = parse_package_json(data) if data is not None else None
            if parsed:
                npm.setdefault(parsed[0], set()).add(parsed[1])
                npm_dirs.add(npm_root(path))
        elif "-packages/" in path and (".dist-info/" in path or ".egg-info" in path):
            data = image.file_bytes(path, follow=False)
            parsed = parse_python_metadata(_text(data)) if data is not None else None
            if parsed:
                pip.setdefault(parsed[0], set()).add(parsed[1])
                cut = max(path.rfind("/site-packages/"), path.rfind("/dist-packages/"))
                pip_dirs.add(path[: path.index("/", cut + 1)])
    if pip:
        found["pip"] = PackageDb("pip", sorted(pip_dirs), _merge_versions(pip))
    if npm:
        found["npm"] = PackageDb("npm", sorted(npm_dirs), _merge_versions(npm))
    return found
