"""SBOMs of an image: SPDX 2.3 JSON and CycloneDX 1.5 JSON, deterministic.

:func:`inventory` reads an image once (every layer through the merged tree),
hashing each regular file (SHA-1, which SPDX requires, and SHA-256) and keeping
the bytes of package-database files; :mod:`ocislim.slim.pkgdb` then finds the
packages (dpkg, apk, Python, npm) and which file each owns.  A package's state
is ``whole`` or ``partial`` (with kept and removed file counts): from the build's
accounting when given, else from the image itself (a dpkg entry's
``Ocislim-Partial`` field, files its database lists that the image lacks).

The documents depend only on the image and the accounting: identifiers are
numbered in sorted order, the creation time is the image config's ``created``
(or the epoch), the document namespace and CycloneDX serial number derive from
the manifest digest.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ocislim import __version__
from ocislim.errors import UsageError
from ocislim.image.source import Image
from ocislim.image.streams import ByteReader
from ocislim.layers.merge import merge
from ocislim.layers.tree import Entry
from ocislim.outputs import write_text_atomic
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.slim import pkgdb

FORMATS = {".spdx.json": "spdx", ".cdx.json": "cyclonedx"}
_EPOCH = "1970-01-01T00:00:00Z"
_DB_RE = re.compile(
    r"^/var/lib/dpkg/(status|info/[^/]+\.(list|md5sums))$"
    r"|^/(usr/)?lib/apk/db/installed$"
    r"|\.dist-info/(METADATA|RECORD)$"
    r"|/package\.json$"
    r"|^/(etc|usr/lib)/os-release$"
)


@dataclass(frozen=True)
class FileFacts:
    path: str
    size: int
    sha1: str
    sha256: str
    package: str | None  # owning package key


@dataclass(frozen=True)
class Inventory:
    """What an SBOM says: the image's identity, its packages and files."""

    name: str
    manifest_digest: str
    config_digest: str
    platform: str
    created: str
    distro: tuple[str, str]  # os-release ID, VERSION_ID
    packages: tuple[pkgdb.PackageAccount, ...]
    files: tuple[FileFacts, ...]


class _HashSink:
    """Tree sink: hashes of every regular file's bytes, and the bytes of database files,
    keyed by where the bytes are (so whiteouts and hardlinks need no bookkeeping)."""

    def __init__(self) -> None:
        self.hashes: dict[tuple[int, int], tuple[str, str]] = {}
        self.captured: dict[tuple[int, int], bytes] = {}

    def removed(self, entry: Entry) -> None:
        return None

    def directory(self, entry: Entry, created: bool) -> None:
        return None

    def file(self, entry: Entry, data: ByteReader | None) -> None:
        if data is None or entry.data is None:
            return
        key = (entry.data.layer, entry.data.ordinal)
        sha1, sha256 = hashlib.sha1(usedforsecurity=False), hashlib.sha256()
        keep = _DB_RE.search(entry.path) is not None
        chunks = []
        while chunk := data.read(1 << 20):
            sha1.update(chunk)
            sha256.update(chunk)
            if keep:
                chunks.append(chunk)
        self.hashes[key] = (sha1.hexdigest(), sha256.hexdigest())
        if keep:
            self.captured[key] = b"".join(chunks)

    def hardlink(self, entry: Entry, target: Entry) -> None:
        return None


def inventory(
    image: Image,
    accounting: pkgdb.Accounting | None = None,
    progress: Progress = NULL_PROGRESS,
) -> Inventory:
    """The inventory of ``image``; ``accounting`` (a build's) gives the packages' kept and
    removed counts relative to the source."""
    sink = _HashSink()
    tree = merge(image, sink=sink, progress=progress)

    def read(path: str) -> bytes | None:
        entry = tree.get(path)
        if entry is None or entry.data is None:
            return None
        if entry.data.size == 0:
            return b""
        return sink.captured.get((entry.data.layer, entry.data.ordinal))

    everything = {e.path for e in tree.walk()}
    found = pkgdb.account(tree, everything, read, "keep")
    source = {p.key: p for p in accounting.packages} if accounting is not None else {}
    packages = tuple(source.get(p.key, p) for p in found.packages)
    files = []
    for entry in tree.walk():
        if entry.data is None or entry.info.issym():
            continue
        sha1, sha256 = sink.hashes.get((entry.data.layer, entry.data.ordinal), ("", ""))
        if entry.data.size == 0:
            sha1, sha256 = hashlib.sha1(b"").hexdigest(), hashlib.sha256(b"").hexdigest()
        files.append(FileFacts(entry.path, entry.size, sha1, sha256, found.owners.get(entry.path)))
    osrel = read("/etc/os-release") or read("/usr/lib/os-release") or b""
    fields = dict(
        (k, v.strip().strip('"'))
        for k, _, v in (line.partition("=") for line in osrel.decode(errors="replace").splitlines())
    )
    created = image.config.raw.get("created")
    return Inventory(
        name=image.ref_name or Path(str(image.source)).name,
        manifest_digest=str(image.manifest_digest),
        config_digest=str(image.manifest.config.digest),
        platform=str(image.platform),
        created=_timestamp(created),
        distro=(fields.get("ID", ""), fields.get("VERSION_ID", "")),
        packages=packages,
        files=tuple(files),
    )


def _timestamp(value: object) -> str:
    """An RFC 3339 UTC time without fractions (both formats want that shape)."""
    if not isinstance(value, str):
        return _EPOCH
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", value)
    return f"{match.group(1)}Z" if match else _EPOCH


def purl(package: pkgdb.PackageAccount, distro: tuple[str, str]) -> str:
    """The package URL of ``package`` (purl spec types deb, apk, pypi, npm)."""
    version = quote(package.version, safe="")
    if package.manager == "npm":
        scope, _, name = package.name.rpartition("/")
        where = f"{quote(scope, safe='')}/{quote(name, safe='')}" if scope else quote(name)
        return f"pkg:npm/{where}@{version}"
    if package.manager == "pip":
        return f"pkg:pypi/{quote(package.name, safe='')}@{version}"
    kind = "deb" if package.manager == "dpkg" else "apk"
    vendor = distro[0] or ("debian" if kind == "deb" else "alpine")
    qualifiers = []
    if package.arch:
        qualifiers.append(f"arch={quote(package.arch, safe='')}")
    if distro[0]:
        qualifiers.append(f"distro={quote('-'.join(d for d in distro if d), safe='')}")
    query = "?" + "&".join(qualifiers) if qualifiers else ""
    return f"pkg:{kind}/{quote(vendor, safe='')}/{quote(package.name, safe='')}@{version}{query}"


def _state_note(package: pkgdb.PackageAccount) -> str:
    if package.state is None:
        return ""
    return f"ocislim: {package.state}, kept {package.kept} of {package.files} files"


def _hex(digest: str) -> str:
    return digest.partition(":")[2]


def _image_purl(inv: Inventory) -> str:
    name = inv.name.rpartition("/")[2].partition(":")[0] or "image"
    return f"pkg:oci/{quote(name, safe='')}@{quote(inv.manifest_digest, safe='')}"


def spdx(inv: Inventory) -> dict[str, Any]:
    """An SPDX 2.3 JSON document of ``inv``."""
    pkg_ids = {p.key: f"SPDXRef-Package-{i}" for i, p in enumerate(inv.packages, 1)}
    image_pkg: dict[str, Any] = {
        "SPDXID": "SPDXRef-Image",
        "name": inv.name,
        "versionInfo": inv.manifest_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": True,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": _hex(inv.manifest_digest)}],
        "externalRefs": [_purl_ref(_image_purl(inv))],
        "comment": f"manifest {inv.manifest_digest}, config {inv.config_digest}, "
        f"platform {inv.platform}",
    }
    sha1s: dict[str, list[str]] = {}
    for f in inv.files:
        owner = f.package if f.package in pkg_ids else ""
        sha1s.setdefault(owner, []).append(f.sha1)
    image_pkg["packageVerificationCode"] = _verification_code(sha1s.get("", []))
    packages = [image_pkg]
    relationships = [_rel("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image")]
    for p in inv.packages:
        entry: dict[str, Any] = {
            "SPDXID": pkg_ids[p.key],
            "name": p.name,
            "versionInfo": p.version or "NOASSERTION",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": True,
            "packageVerificationCode": _verification_code(sha1s.get(p.key, [])),
            "externalRefs": [_purl_ref(purl(p, inv.distro))],
        }
        if p.state is not None:
            entry["comment"] = _state_note(p)
        packages.append(entry)
        relationships.append(_rel("SPDXRef-Image", "CONTAINS", pkg_ids[p.key]))
    files = []
    for i, f in enumerate(inv.files, 1):
        file_id = f"SPDXRef-File-{i}"
        files.append(
            {
                "SPDXID": file_id,
                "fileName": "." + f.path,
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256},
                ],
            }
        )
        owner = pkg_ids.get(f.package or "", "SPDXRef-Image")
        relationships.append(_rel(owner, "CONTAINS", file_id))
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"ocislim SBOM of {inv.name}",
        "documentNamespace": f"https://ocislim.invalid/spdx/{_hex(inv.manifest_digest)}",
        "creationInfo": {"created": inv.created, "creators": [f"Tool: ocislim-{__version__}"]},
        "packages": packages,
        "files": files,
        "relationships": relationships,
    }


def _verification_code(sha1s: list[str]) -> dict[str, str]:
    """SPDX's package verification code: SHA-1 of the sorted SHA-1s of its files."""
    value = hashlib.sha1("".join(sorted(sha1s)).encode(), usedforsecurity=False).hexdigest()
    return {"packageVerificationCodeValue": value}


def _purl_ref(locator: str) -> dict[str, str]:
    return {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": locator,
    }


def _rel(a: str, kind: str, b: str) -> dict[str, str]:
    return {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}


def cyclonedx(inv: Inventory) -> dict[str, Any]:
    """A CycloneDX 1.5 JSON BOM of ``inv``; a package's files are its nested components."""
    owned: dict[str, list[dict[str, Any]]] = {}
    loose = []
    for f in inv.files:
        leaf: dict[str, Any] = {
            "type": "file",
            "bom-ref": f"file:{f.path}",
            "name": f.path,
            "hashes": [
                {"alg": "SHA-1", "content": f.sha1},
                {"alg": "SHA-256", "content": f.sha256},
            ],
        }
        if f.package:
            owned.setdefault(f.package, []).append(leaf)
        else:
            loose.append(leaf)
    components: list[dict[str, Any]] = []
    for i, p in enumerate(inv.packages, 1):
        props = [{"name": "ocislim:manager", "value": p.manager}]
        if p.state is not None:
            props += [
                {"name": "ocislim:state", "value": p.state},
                {"name": "ocislim:files:kept", "value": str(p.kept)},
                {"name": "ocislim:files:removed", "value": str(p.removed)},
            ]
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": f"package-{i}",
            "name": p.name,
            "version": p.version,
            "purl": purl(p, inv.distro),
            "properties": props,
        }
        if p.key in owned:
            component["components"] = owned[p.key]
        components.append(component)
    components.extend(loose)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, inv.manifest_digest)}",
        "version": 1,
        "metadata": {
            "timestamp": inv.created,
            "tools": {
                "components": [{"type": "application", "name": "ocislim", "version": __version__}]
            },
            "component": {
                "type": "container",
                "bom-ref": "image",
                "name": inv.name,
                "version": inv.manifest_digest,
                "purl": _image_purl(inv),
                "hashes": [{"alg": "SHA-256", "content": _hex(inv.manifest_digest)}],
                "properties": [
                    {"name": "ocislim:manifest_digest", "value": inv.manifest_digest},
                    {"name": "ocislim:config_digest", "value": inv.config_digest},
                    {"name": "ocislim:platform", "value": inv.platform},
                ],
            },
        },
        "components": components,
    }


def sbom_format(path: Path) -> str:
    """``spdx`` or ``cyclonedx`` from a file name's suffix; UsageError otherwise."""
    for suffix, kind in FORMATS.items():
        if str(path).endswith(suffix):
            return kind
    raise UsageError(f"{path}: an SBOM file name ends in .spdx.json or .cdx.json")


def write_sboms(inv: Inventory, paths: Mapping[Path, str] | list[Path]) -> None:
    """Write ``inv`` to each path in the format its suffix names (atomic, sorted keys)."""
    for path in paths:
        doc = spdx(inv) if sbom_format(path) == "spdx" else cyclonedx(inv)
        write_text_atomic(Path(path), json.dumps(doc, indent=2, sort_keys=True) + "\n")


def summary(inv: Inventory) -> dict[str, Any]:
    """Counts for the ``sbom`` command's output."""
    states: dict[str, int] = {}
    for p in inv.packages:
        states[p.state or "unknown"] = states.get(p.state or "unknown", 0) + 1
    return {
        "image": inv.name,
        "manifest_digest": inv.manifest_digest,
        "packages": len(inv.packages),
        "states": dict(sorted(states.items())),
        "files": len(inv.files),
        "managers": sorted({p.manager for p in inv.packages}),
    }
