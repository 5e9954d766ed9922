"""``ocislim build`` of the 3-layer python fixture app by a plain user, checked by podman.

The probe is only the image's default command; the app's other code paths
(``net``: getaddrinfo through glibc's NSS, ``tls``: the system CA store,
``db``: sqlite3) must still work in the slim image.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocislim.slim.report import validate
from tests.clirun import PLAIN_USER, plain_user_dir
from tests.images import fixture_image
from tests.integration.build_support import (
    STAGES,
    Built,
    Podman,
    build,
    podman_fixture,
    reason_sources,
    tree_paths,
)
from tests.integration.consumers_support import APP_OUTPUT, tree_signature

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]
__all__ = ["podman_fixture"]

TAG = "localhost/ocislim/python-app.slim:latest"


@pytest.fixture(scope="module")
def source() -> Path:
    return fixture_image("python-app")


@pytest.fixture(scope="module")
def slim(source: Path, plain_user: str, plain_user_python: str) -> Iterator[Built]:
    """The python app slimmed by the plain user with nothing but its default command."""
    out = plain_user_dir("ocislim-build-")
    try:
        built = build(source, out, user=plain_user, python=plain_user_python)
        yield built
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=True)


def test_plain_user_build_reports_every_stage(slim: Built) -> None:
    assert PLAIN_USER == "tester"
    stages = [
        line.split(":")[1].strip()
        for line in slim.result.stderr.splitlines()
        if line.startswith("ocislim: ") and not line.startswith("ocislim: note")
    ]
    for stage in STAGES:
        assert stage in stages, slim.result.stderr
    assert [s for s in stages if s in STAGES] == sorted(
        (s for s in stages if s in STAGES), key=STAGES.index
    )
    summary = slim.result.stdout
    assert "content:" in summary and "report:" in summary and str(slim.report_path) in summary
    assert slim.image.stat().st_uid == slim.report_path.stat().st_uid != 0


def test_report_fits_its_schema_and_the_rootfs_shrank_to_a_quarter(
    slim: Built, source: Path
) -> None:
    report = slim.report
    validate(report)
    assert report["verification"]["passed"] is True
    assert set(STAGES) <= set(report["timings"])
    assert report["probes"]["command"] == ["python3", "/app/app.py"]
    assert report["probes"]["source"]["exit_code"] == 0
    # Independent of the report: the merged trees' file bytes.
    before = sum(size for kind, *_, size in tree_paths(source).values() if kind == "file")
    after = sum(size for kind, *_, size in tree_paths(slim.image).values() if kind == "file")
    assert after <= 0.25 * before, (after, before)
    assert report["ratio"]["content_size"] <= 0.25


def test_slim_app_runs_in_podman_with_its_other_code_paths(slim: Built, podman: Podman) -> None:
    podman.load(slim.image)
    default = podman.run(TAG)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == APP_OUTPUT
    net = podman.run(TAG, "net")
    assert (net.returncode, net.stdout) == (0, "net: localhost -> 127.0.0.1\n"), net.stderr
    tls = podman.run(TAG, "tls")
    assert tls.returncode == 0, tls.stderr
    assert tls.stdout.startswith("tls: ") and int(tls.stdout.split()[1]) > 50
    db = podman.run(TAG, "db")
    assert (db.returncode, db.stdout) == (0, "db: rows=3 sum=6\n"), db.stderr


def test_kept_entries_carry_the_source_headers(slim: Built, source: Path) -> None:
    before = tree_signature(source)
    after = tree_signature(slim.image)
    assert set(after) <= set(before)
    # Trimmed package databases (--package-db trim) keep their headers, not their bytes.
    trimmed = {
        k["path"]
        for k in slim.report["kept"]
        if k["reasons"][0]["source"] == "package-db" and k["kind"] == "file"
    }
    assert "/var/lib/dpkg/status" in trimmed
    assert {p: before[p][:-1] for p in trimmed} == {p: after[p][:-1] for p in trimmed}
    after = {p: v for p, v in after.items() if p not in trimmed}
    assert {p: before[p] for p in after} == after  # modes, owners, content, link targets
    assert "/app/RELEASE" in after and "/app/VERSION" in after  # hardlink group whole
    for runtime in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"):
        assert runtime not in after
    assert "/usr/share/doc/app/README" not in after
    assert len(after) < len(before) / 3


def test_every_kept_path_says_why(slim: Built) -> None:
    kept = slim.kept()
    app = kept["/app/app.py"]["reasons"]
    assert any(r["source"] == "trace" and r["process"] == "python3 /app/app.py" for r in app)
    assert "read" in next(r for r in app if r["source"] == "trace")["access"]
    ssl = kept["/usr/lib/python3.11/ssl.py"]["reasons"]
    assert any(r["source"] == "lazy" and r["rule"] == "python-stdlib" for r in ssl)
    libssl = kept["/usr/lib/x86_64-linux-gnu/libssl.so.3"]["reasons"]
    assert any(r["source"] == "elf" and "_ssl" in r["by"] for r in libssl)
    nss = kept["/etc/nsswitch.conf"]["reasons"]
    assert any(r["source"] == "lazy" and r["rule"] == "glibc-nss" for r in nss)
    certs = kept["/etc/ssl/certs/ca-certificates.crt"]["reasons"]
    assert any(r.get("flag") == "--include-cert-all" for r in certs)
    assert reason_sources(kept["/usr"]) == {"parent"}
    assert "symlink" in reason_sources(kept["/usr/bin/python3"])
    refused = {r["path"]: r["why"] for r in slim.report["refused"]}
    assert "runtime" in refused.get("/etc/hosts", "runtime")
    assert not any(p.startswith(("/proc/", "/dev/", "/sys/")) for p in kept)
