"""ocislim's ELF closures against the image's own loader (``ldd`` run inside the image).

For every dynamic ELF object in real Debian images, the set of files ``deps`` says
the loader opens must equal what the image's ``ldd`` prints when run in a chroot of
the unpacked image (canonical paths compared).  The same is checked for the gcc-built
resolver scenarios (the real glibc and musl loaders as oracles), and the lazy NSS
modules of bullseye's glibc 2.31 are checked by name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ocislim.elf.closure import DYNAMIC, DepsAnalyzer, ObjectReport
from ocislim.elf.rootpath import RootFS
from ocislim.errors import OutputError
from tests.tools import require_tool
from tests.unit.elf_synth import (
    Scenarios,
    build_scenarios,
    musl_tree,
)

pytestmark = pytest.mark.integration

IMAGES = ("python-app", "bullseye-python", "curl", "node")
_ARROW = re.compile(r"^\s*(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$")
_BARE = re.compile(r"^\s*(/\S+) \(0x[0-9a-f]+\)$")


def chroot_prefix() -> list[str]:
    """chroot as root; in a user namespace otherwise."""
    chroot = require_tool("chroot")
    if os.geteuid() == 0:
        return [chroot]
    return [require_tool("unshare"), "-r", chroot]


def parse_listing(text: str) -> dict[str, set[str]]:
    """``ldd``/``ld.so --list`` output -> {object: {paths, or "missing:NAME"}}.

    Multi-file ldd output has "FILE:" headers; single-file output is keyed "".
    """
    out: dict[str, set[str]] = {}
    current = ""
    for line in text.splitlines():
        if not line.startswith(("\t", " ")) and line.endswith(":"):
            current = line[:-1]
            out[current] = set()
            continue
        entries = out.setdefault(current, set())
        m = _ARROW.match(line)
        if m:
            target = m.group(2).strip()
            if target == "not found":
                entries.add(f"missing:{m.group(1)}")
            elif target.startswith("/"):
                entries.add(target)
            continue
        m = _BARE.match(line)
        if m:
            entries.add(m.group(1))
    return out


def ours(analyzer: DepsAnalyzer, report: ObjectReport) -> set[str]:
    fs = analyzer.rootfs
    return {fs.resolve(p).path for p in report.closure} | {f"missing:{m}" for m in report.missing}


def theirs(fs: RootFS, listed: set[str]) -> set[str]:
    return {p if p.startswith("missing:") else fs.resolve(p).path for p in listed}


def image_ldd(root: Path, paths: Sequence[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for start in range(0, len(paths), 200):
        batch = list(paths[start : start + 200])
        proc = subprocess.run(
            [*chroot_prefix(), str(root), "/usr/bin/ldd", *batch],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        )
        listing = parse_listing(proc.stdout)
        if len(batch) == 1:
            listing = {batch[0]: listing.get("", set())}
        out.update(listing)
    return out


def unpacked(name: str) -> Path:
    """The fixture image ``name`` unpacked once into the shared fixture cache."""
    from ocislim.image import open_image
    from ocislim.layers.rootfs import prepared_rootfs
    from tests.images import builder, fixture_image

    base = builder.cache_root() / "deps-rootfs"
    if not os.access(base if base.exists() else base.parent, os.W_OK):
        base = Path(f"/var/tmp/ocislim-deps-rootfs-{os.getuid()}")  # a plain user's own
    target = base / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_image(fixture_image(name)) as image:
        try:
            with prepared_rootfs(image, target) as root:
                return root
        except OutputError:
            # The fixture was rebuilt since: unpack the new one.
            shutil.rmtree(target)
            with prepared_rootfs(image, target) as root:
                return root


@pytest.fixture(scope="module", params=IMAGES)
def image_root(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    yield request.param, unpacked(request.param)


def test_every_object_matches_the_images_ldd(image_root: tuple[str, Path]) -> None:
    name, root = image_root
    analyzer = DepsAnalyzer(root)
    result = analyzer.analyze(all_objects=True)
    dynamic = [o for o in result.objects if o.kind == DYNAMIC]
    assert len(dynamic) > 50, f"{name}: suspiciously few dynamic objects"
    listed = image_ldd(root, [o.path for o in dynamic])
    disagree = []
    for report in dynamic:
        want = theirs(analyzer.rootfs, listed.get(report.path, set()))
        got = ours(analyzer, report)
        if got != want:
            disagree.append(f"{report.path}: ours-only {got - want}, ldd-only {want - got}")
    assert not disagree, f"{name}: {len(disagree)}/{len(dynamic)} differ:\n" + "\n".join(
        disagree[:20]
    )


def test_bullseye_python_keeps_its_nss_modules() -> None:
    root = unpacked("bullseye-python")
    result = DepsAnalyzer(root).analyze(["/usr/bin/python3.9"])
    fs = RootFS(root)
    for name in ("libnss_dns.so.2", "libnss_files.so.2"):
        path = f"/lib/x86_64-linux-gnu/{name}"
        assert path in result.paths
        target = fs.resolve(path).path
        assert re.fullmatch(r"/lib/x86_64-linux-gnu/libnss_\w+-2\.31\.so", target), target
        assert target in result.paths  # the versioned file behind the link
        assert any(r.kind == "lazy" for r in result.reasons[target])
    assert "/etc/nsswitch.conf" in result.paths
    assert "/lib/x86_64-linux-gnu/libresolv.so.2" in result.paths  # libnss_dns needs it


@pytest.fixture(scope="module")
def scen(tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    require_tool("gcc")
    base = tmp_path_factory.mktemp("deps-oracle")
    return build_scenarios(base / "root", base / "build")


_TRACE_EXEC_C = """
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    (void)argc;
    setenv("LD_TRACE_LOADED_OBJECTS", "1", 1);
    execv(argv[1], argv + 1);
    return 127;
}
"""


def traced_exec(root: Path, program: str, env: dict[str, str]) -> str:
    """What ``program``'s own loader lists when the program is exec'd in the image.

    A static helper inside the root sets LD_TRACE_LOADED_OBJECTS=1 and execs the
    program (exec semantics: $ORIGIN is the executed file's directory, read from
    /proc/self/exe, so /proc is mounted in a private namespace).
    """
    helper = root / "oracle-exec"
    if not helper.exists():
        src = root.parent / "oracle-exec.c"
        src.write_text(_TRACE_EXEC_C)
        subprocess.run(["gcc", "-static", "-o", str(helper), str(src)], check=True)
    (root / "proc").mkdir(exist_ok=True)
    unshare = require_tool("unshare")
    proc = subprocess.run(
        [unshare, "-r", "--pid", "--fork", "--mount-proc", f"--root={root}", "--wd=/",
         "/oracle-exec", program],
        capture_output=True, text=True, check=False, env=env, timeout=60,
    )  # fmt: skip
    return proc.stdout


def test_synthetic_scenarios_match_the_real_loader(scen: Scenarios) -> None:
    analyzer = DepsAnalyzer(scen.root, scen.env)
    disagree = []
    checked = 0
    for name, program in sorted(scen.programs.items()):
        if name in scen.cpu_dependent:
            continue
        (report,) = analyzer.analyze([program]).objects
        listed = parse_listing(traced_exec(scen.root, program, scen.env)).get("", set())
        want = theirs(analyzer.rootfs, listed)
        got = ours(analyzer, report)
        checked += 1
        if got != want:
            disagree.append(f"{name}: ours-only {got - want}, ld.so-only {want - got}")
    assert checked >= 10
    assert not disagree, "\n".join(disagree)


def test_musl_scenario_matches_the_real_loader(tmp_path: Path) -> None:
    gcc = musl_tree(tmp_path, b"/opt/sys\n")
    root = gcc.root
    mb = gcc.library("libmb.so.1", cc="musl-gcc")
    ma = gcc.library("libma.so.1", needs=(mb,), cc="musl-gcc")
    gcc.place(ma, "/opt/mrp/libma.so.1")
    gcc.place(mb, "/opt/mrp/libmb.so.1")
    gcc.place(mb, "/opt/sys/libmb.so.1")
    gcc.place(gcc.program("pm", needs=(ma,), runpath="/opt/mrp", cc="musl-gcc"), "/bin/pm")
    analyzer = DepsAnalyzer(root)
    (report,) = analyzer.analyze(["/bin/pm"]).objects
    proc = subprocess.run(
        [*chroot_prefix(), str(root), "/lib/ld-musl-x86_64.so.1", "--list", "/bin/pm"],
        capture_output=True,
        text=True,
        check=False,
    )
    want = theirs(analyzer.rootfs, parse_listing(proc.stdout).get("", set()))
    assert want == ours(analyzer, report)
    assert "/opt/mrp/libmb.so.1" in want  # RUNPATH inherited by musl
