"""``ocislim build`` on the other fixture images and every output format.

Name resolution is the lazy dependency a trace-only minifier misses: the probes
here never resolve a name, the slim images must.  Outputs go through the OCI
schemas, skopeo, umoci and podman; plans are fed back with ``--keep-from``;
verification adds what an edited plan lost and fails loudly when it cannot.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ocislim.image import open_image
from ocislim.slim import build as build_mod
from ocislim.slim.options import BuildOptions, OutputOptions, RunOptions
from ocislim.slim.report import validate
from tests import oci_schema
from tests.clirun import run_cli
from tests.images import DEMO_IMAGE, fixture_image
from tests.integration.build_support import (
    Podman,
    build,
    podman_fixture,
    reason_sources,
    tree_paths,
)
from tests.integration.consumers_support import validate_oci_output
from tests.tools import require_tool

pytestmark = [pytest.mark.sandbox, pytest.mark.integration]
__all__ = ["podman_fixture"]

DEMO_TAG = "localhost/ocislim/demo.slim:latest"
DEMO_OUTPUT = "hello from the ocislim demo image (6 words)\n"
RESOLVE_PY = "import socket; print(socket.getaddrinfo('localhost', 80)[0][4][0])"


def test_bullseye_python_probed_with_print_resolves_localhost(
    tmp_path: Path, podman: Podman
) -> None:
    """glibc 2.31: libnss_dns/libnss_files are separate files the probe never loads."""
    built = build(fixture_image("bullseye-python"), tmp_path)
    assert built.report["probes"]["command"] == ["python3", "-c", "print(1)"]
    kept = built.kept()
    nss = [p for p in kept if p.rsplit("/", 1)[-1].startswith("libnss_dns")]
    assert "/lib/x86_64-linux-gnu/libnss_dns.so.2" in nss
    library = [kept[p] for p in nss if kept[p]["kind"] == "file"]
    assert library and all(any(r.get("rule") == "glibc-nss" for r in k["reasons"]) for k in library)
    traced = {p for p, k in kept.items() if "trace" in reason_sources(k)}
    assert not any("libnss_" in p for p in traced)  # the probe itself never loaded it
    tag = "localhost/ocislim/bullseye-python.slim:latest"
    podman.load(built.image)
    default = podman.run(tag)
    assert (default.returncode, default.stdout) == (0, "1\n"), default.stderr
    resolved = podman.run(tag, "-c", RESOLVE_PY, entrypoint="python3")
    assert (resolved.returncode, resolved.stdout) == (0, "127.0.0.1\n"), resolved.stderr


def test_curl_slimmed_with_its_version_command_still_resolves(
    tmp_path: Path, podman: Podman
) -> None:
    built = build(fixture_image("curl"), tmp_path)
    tag = "localhost/ocislim/curl.slim:latest"
    podman.load(built.image)
    version = podman.run(tag)
    assert version.returncode == 0 and version.stdout.startswith("curl 7."), version.stderr
    # Port 9 on loopback refuses: exit 7 ("Failed to connect") proves localhost
    # resolved; a failed resolution would be exit 6.
    connect = podman.run(tag, "curl", "-sS", "http://localhost:9/")
    assert connect.returncode == 7, connect.stderr
    assert "Could not resolve" not in connect.stderr


def test_node_slimmed_with_its_default_command_still_resolves(
    tmp_path: Path, podman: Podman
) -> None:
    built = build(fixture_image("node"), tmp_path)
    tag = "localhost/ocislim/node.slim:latest"
    podman.load(built.image)
    script = "require('dns').lookup('localhost', 4, (e, a) => console.log(e ? 'ERR ' + e.code : a))"
    looked_up = podman.run(tag, "node", "-e", script)
    assert (looked_up.returncode, looked_up.stdout) == (0, "127.0.0.1\n"), looked_up.stderr


def test_http_server_is_probed_over_http_with_exec_probes_waiting(tmp_path: Path) -> None:
    built = build(fixture_image("http-server"), tmp_path, "--exec", "python3 -c 'import json'")
    probes = built.report["probes"]
    assert probes["plan"]["http"] == ["GET http://127.0.0.1:8080/"]
    assert probes["plan"]["continue_after"] == "exec"
    for run in (probes["source"], probes["slim"]):
        assert run["http"][0]["status"] == 200, run
        assert run["exec_exit_codes"] == [0]
        assert run["exit_code"] == 143  # stopped with SIGTERM after the probes
    kept = built.kept()
    assert "/usr/lib/python3.11/http/server.py" in kept
    assert "/bin/sh" in kept or "/usr/bin/sh" in kept  # the exec probes ran with sh


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive", "oci-dir"])
def test_every_output_format_is_accepted_by_consumers(
    tmp_path: Path, fmt: str, podman: Podman
) -> None:
    skopeo = require_tool("skopeo")
    name = "slim" if fmt == "oci-dir" else "slim.tar"
    built = build(DEMO_IMAGE, tmp_path, "-q", "--format", fmt, name=name)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left"
    if fmt != "docker-archive" and oci_schema.available():
        validate_oci_output(built.image)
    transport = (
        {"oci-archive": "oci-archive:", "docker-archive": "docker-archive:"}[fmt]
        if (fmt != "oci-dir")
        else "oci:"
    )
    inspected = json.loads(
        subprocess.run(
            [skopeo, "inspect", f"{transport}{built.image}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert len(inspected["Layers"]) == 1
    assert inspected["Labels"]["org.opencontainers.image.title"] == "ocislim demo"
    layout = tmp_path / "copied"
    subprocess.run(
        [skopeo, "copy", "-q", f"{transport}{built.image}", f"oci:{layout}:slim"],
        check=True,
        capture_output=True,
    )
    assert tree_paths(layout) == tree_paths(built.image)
    umoci = require_tool("umoci")
    bundle = tmp_path / "bundle"
    subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout}:slim", str(bundle)],
        check=True,
        capture_output=True,
    )
    assert (
        bundle / "rootfs/demo/greeting.txt"
    ).read_text() == "hello from the ocislim demo image\n"
    podman.load(built.image, DEMO_TAG)
    ran = podman.run(DEMO_TAG)
    assert (ran.returncode, ran.stdout) == (0, DEMO_OUTPUT), ran.stderr


def test_same_input_and_flags_give_identical_output(tmp_path: Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    outputs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        built = build(DEMO_IMAGE, tmp_path / name, "-q", env=env)
        outputs.append(built.image.read_bytes())
    assert outputs[0] == outputs[1]


def test_keep_from_skips_probing_and_verification_restores_what_the_plan_lost(
    tmp_path: Path,
) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    (tmp_path / "first").mkdir()
    first = build(DEMO_IMAGE, tmp_path / "first", "-q", env=env)
    edited = first.report
    edited["kept"] = [k for k in edited["kept"] if k["path"] != "/demo/greeting.txt"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(edited))
    (tmp_path / "second").mkdir()
    second = build(DEMO_IMAGE, tmp_path / "second", "-q", "--keep-from", str(plan), env=env)
    report = second.report
    validate(report)
    assert "trace" not in report["timings"]
    rounds = report["verification"]["rounds"]
    assert report["verification"]["passed"] is True
    assert "/demo/greeting.txt" in rounds[0]["added"]
    assert rounds[0]["differences"]  # the script failed without its text
    why = second.kept()["/demo/greeting.txt"]["reasons"]
    assert why[0]["source"] == "verify"
    assert second.image.read_bytes() == first.image.read_bytes()


def test_verification_failure_exits_7_names_the_paths_and_writes_no_image(
    tmp_path: Path,
) -> None:
    out = tmp_path / "slim.tar"
    result = run_cli(
        "build", str(DEMO_IMAGE), "-o", str(out), "-q", "--exclude-pattern", "/demo/*.txt"
    )
    assert result.code == 7, result.stderr
    assert "exit code 0 became" in result.error
    assert "/demo/greeting.txt" in result.error
    assert not out.exists()
    report = json.loads((tmp_path / "slim.report.json").read_text())
    validate(report)
    assert report["verification"]["passed"] is False
    assert report["output"]["image"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slim.report.json"]


def test_no_verify_overrides_tag_json_and_seccomp_profile(tmp_path: Path, podman: Podman) -> None:
    profile = tmp_path / "seccomp.json"
    result = run_cli(
        "build", str(DEMO_IMAGE), "-o", str(tmp_path / "slim.tar"), "--json", "--no-verify",
        "--tag", "example.com/demo:slim", "--seccomp-profile", str(profile),
        "--new-env", "GREETING=hi", "--new-label", "stage=slim", "--new-workdir", "/",
        "--include-shell",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("ocislim: ")]
    summary = json.loads(result.stdout)
    assert summary["output"]["reference"] == "example.com/demo:slim"
    assert summary["verification"] == {"passed": None, "rounds": 0}
    assert summary["seccomp_profile"] == str(profile)
    names = json.loads(profile.read_text())["syscalls"][0]["names"]
    assert {"execve", "openat", "read"} <= set(names)
    podman.load(tmp_path / "slim.tar")
    ran = podman.run("example.com/demo:slim", options=("--security-opt", f"seccomp={profile}"))
    assert ran.returncode == 0, ran.stderr
    env = podman.run("example.com/demo:slim", "-c", "echo $GREETING $PWD", entrypoint="/bin/sh")
    assert (env.returncode, env.stdout) == (0, "hi /\n"), env.stderr
    report = json.loads((tmp_path / "slim.report.json").read_text())
    shell = next(k for k in report["kept"] if k["path"] == "/bin/sh")
    assert {"flag": "--include-shell", "detail": "/bin/sh", "source": "rule"} in shell["reasons"]


def test_bad_input_is_one_line_and_the_right_exit_code(tmp_path: Path) -> None:
    missing = run_cli("build", str(tmp_path / "nope.tar"), "-o", str(tmp_path / "o.tar"))
    assert missing.code == 3, missing.stderr
    assert "nope.tar" in missing.error
    no_dir = run_cli("build", str(DEMO_IMAGE), "-o", str(tmp_path / "no" / "o.tar"))
    assert no_dir.code == 8, no_dir.stderr
    rule = run_cli(
        "build", str(DEMO_IMAGE), "-o", str(tmp_path / "o.tar"), "--disable-rule", "nonsense"
    )
    assert rule.code == 2, rule.stderr
    assert "nonsense" in rule.error
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("after", "timed_out"), [("app-exit", False), ("timeout", True), ("exec", False)]
)
def test_continue_after_decides_when_the_program_stops(
    tmp_path: Path, after: str, timed_out: bool
) -> None:
    built = build(
        DEMO_IMAGE, tmp_path, "-q", "--exec", "busybox true", "--continue-after", after,
        "--timeout", "3", "--", "/bin/sh", "-c", "busybox sleep 1; busybox cat /demo/greeting.txt",
    )  # fmt: skip
    probes = built.report["probes"]
    assert probes["plan"]["continue_after"] == after
    for run in (probes["source"], probes["slim"]):
        assert run["exec_exit_codes"] == [0]
        assert run["timed_out"] is timed_out
        # app-exit and timeout let the program finish its second; exec stops it at once
        assert run["exit_code"] == (143 if after == "exec" else 0), run
    assert "/demo/greeting.txt" in built.kept() or after == "exec"


@pytest.mark.parametrize("rootfs_given", [False, True])
def test_spooling_in_the_unpack_pass_writes_what_a_second_pass_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rootfs_given: bool
) -> None:
    """``unpack`` spools every file's bytes when the disk has room; with too little room
    (here: a factor no disk meets) ``write`` reads the kept bytes in a second layer pass.
    Both give the same image, byte for byte, with ``--rootfs`` reused or not."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    images = []
    for name, factor in (("one-pass", build_mod.SPOOL_ROOM_FACTOR), ("two-pass", 1 << 60)):
        monkeypatch.setattr(build_mod, "SPOOL_ROOM_FACTOR", factor)
        work = tmp_path / name
        work.mkdir()
        rootfs = work / "rootfs" if rootfs_given else None
        if rootfs is not None:
            assert run_cli("unpack", "-q", str(DEMO_IMAGE), str(rootfs)).code == 0
        with open_image(DEMO_IMAGE) as image:
            options = BuildOptions(OutputOptions(work / "slim.tar"), run=RunOptions(rootfs=rootfs))
            result = build_mod.build(image, options)
        assert result.report["verification"]["passed"] is True
        images.append((work / "slim.tar").read_bytes())
        assert sorted(p.name for p in work.iterdir()) == sorted(
            ["slim.tar", "slim.report.json", *(["rootfs"] if rootfs_given else [])]
        )  # no scratch left
    assert images[0] == images[1]
