"""ld.so search rules on gcc-built objects in a synthetic image tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocislim.elf.closure import DepsAnalyzer
from ocislim.elf.elfinfo import DF_1_NODEFLIB, ElfCatalog
from ocislim.elf.resolver import Resolver, SearchScope
from ocislim.elf.results import DYNAMIC, ObjectReport
from ocislim.elf.rootpath import RootFS
from tests.tools import require_tool
from tests.unit.elf_synth import Scenarios, build_scenarios, craft_elf, merged_usr_glibc64, write

T = "/usr/lib/x86_64-linux-gnu"
LIBC = f"{T}/libc.so.6"
LD = f"{T}/ld-linux-x86-64.so.2"


@pytest.fixture(scope="module")
def scen(tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    require_tool("gcc")
    base = tmp_path_factory.mktemp("scenarios")
    return build_scenarios(base / "root", base / "build")


@pytest.fixture(scope="module")
def analyzer(scen: Scenarios) -> DepsAnalyzer:
    return DepsAnalyzer(scen.root, scen.env)


def one(analyzer: DepsAnalyzer, path: str) -> ObjectReport:
    (report,) = analyzer.analyze([path]).objects
    assert report.kind == DYNAMIC
    return report


def canonical(analyzer: DepsAnalyzer, report: ObjectReport) -> set[str]:
    return {analyzer.rootfs.resolve(p).path for p in report.closure}


def test_rpath_is_inherited(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    report = one(analyzer, scen.programs["rpath"])
    assert canonical(analyzer, report) == {"/opt/rp/liba.so.1", "/opt/rp/libb.so.1", LIBC, LD}
    assert report.missing == ()
    assert report.needed == {"liba.so.1": "/opt/rp/liba.so.1", "libc.so.6": "/lib/" + LIBC[9:]}


def test_runpath_is_not_inherited(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    report = one(analyzer, scen.programs["runpath"])
    assert "/opt/rn/liba.so.1" in report.closure
    assert "/opt/rn/libb.so.1" not in report.closure
    assert report.missing == ("libb.so.1",)


def test_origin_follows_the_executed_file(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    for name in ("origin", "origin-via-link"):
        report = one(analyzer, scen.programs[name])
        assert "/app/bin/../lib/libo.so.1" in report.closure
        assert analyzer.rootfs.resolve("/app/bin/../lib/libo.so.1").path == "/app/lib/libo.so.1"
    result = analyzer.analyze([scen.programs["origin-via-link"]])
    assert "/usr/local/bin/p_origin" in result.paths  # the link itself is kept
    assert "/app/bin/p_origin" in result.paths


def test_missing_library_is_reported(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    report = one(analyzer, scen.programs["missing"])
    assert report.missing == ("libnothere.so.1",)
    assert report.needed["libnothere.so.1"] is None
    assert LIBC in canonical(analyzer, report)


def test_symlink_chain_and_absolute_links_are_kept(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    result = analyzer.analyze([scen.programs["chain"]])
    (report,) = result.objects
    assert "/lib/x86_64-linux-gnu/libchain.so.1" in report.closure
    for path in (
        "/lib",  # relative link lib -> usr/lib
        "/lib64",  # absolute link /lib64 -> /usr/lib64 (PT_INTERP goes through it)
        "/usr/lib64/ld-linux-x86-64.so.2",
        f"{T}/libchain.so.1",
        f"{T}/libchain.so.1.2",
        "/opt/real/libchain.so.1.2.3",
        LD,
        LIBC,
    ):
        assert path in result.paths, path
    kinds = {r.kind for r in result.reasons["/lib64"]}
    assert kinds == {"symlink"}


def test_ld_so_cache_then_conf_fallback(scen: Scenarios, tmp_path: Path) -> None:
    with_cache = DepsAnalyzer(scen.root, scen.env)
    report = one(with_cache, scen.programs["conf"])
    assert "/opt/conflib/libconf.so.1" in report.closure
    scope = SearchScope(compat=(64, "little", 62))
    resolver = with_cache.resolver
    loader = resolver.loader_for(with_cache.catalog.get(scen.programs["conf"]) or _fail())
    found = resolver.find("libconf.so.1", scope, loader)
    assert found is not None and found.via == "ld.so.cache"
    # The same tree without a cache: the ld.so.conf include names the directory.
    cache = scen.root / "etc/ld.so.cache"
    saved = cache.read_bytes()
    cache.unlink()
    try:
        fresh = DepsAnalyzer(scen.root, scen.env)
        loader = fresh.resolver.loader_for(fresh.catalog.get(scen.programs["conf"]) or _fail())
        found = fresh.resolver.find("libconf.so.1", scope, loader)
        assert found is not None and found.via == "ld.so.conf"
    finally:
        cache.write_bytes(saved)


def _fail() -> object:
    raise AssertionError("program not parsed")


def test_nodeflib_skips_cache_and_defaults(scen: Scenarios, tmp_path: Path) -> None:
    # GNU ld ignores -z nodeflib on x86-64, so the flag is set on a crafted object.
    merged_usr_glibc64(tmp_path)
    write(tmp_path, f"{T}/libdef.so.1", craft_elf(soname="libdef.so.1"))
    write(tmp_path, "/opt/own/libown.so.1", craft_elf(soname="libown.so.1"))
    interp = "/lib64/ld-linux-x86-64.so.2"
    needed = ("libdef.so.1", "libown.so.1")
    write(tmp_path, "/bin/nodef", craft_elf(interp=interp, needed=needed, runpath="/opt/own",
                                            flags_1=DF_1_NODEFLIB))  # fmt: skip
    write(tmp_path, "/bin/def", craft_elf(interp=interp, needed=needed, runpath="/opt/own"))
    analyzer = DepsAnalyzer(tmp_path)
    assert one(analyzer, "/bin/nodef").missing == ("libdef.so.1",)
    assert one(analyzer, "/bin/def").missing == ()


def test_search_order(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    assert one(analyzer, scen.programs["rpath-over-llp"]).needed["libprec.so.1"] == (
        "/opt/rp2/libprec.so.1"
    )
    assert one(analyzer, scen.programs["llp-over-runpath"]).needed["libprec.so.1"] == (
        "/opt/llp/libprec.so.1"
    )
    without_env = DepsAnalyzer(scen.root, {})
    assert one(without_env, scen.programs["llp-over-runpath"]).needed["libprec.so.1"] == (
        "/opt/rn2/libprec.so.1"
    )


def test_loaded_soname_is_reused(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    report = one(analyzer, scen.programs["soname-reuse"])
    assert "/opt/first/libs.so.1" in report.closure
    assert "/opt/other/libs.so.1" not in report.closure


def test_lib_and_platform_tokens(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    report = one(analyzer, scen.programs["lib-token"])
    assert report.needed["libdst.so.1"] == "/opt/dst/lib/x86_64-linux-gnu/libdst.so.1"
    # $PLATFORM depends on the CPU: the kernel's name is tried first.
    result = analyzer.analyze([scen.programs["platform-token"]])
    assert result.objects[0].needed["libplat.so.1"] == "/opt/plat/x86_64/libplat.so.1"
    for platform in ("haswell", "xeon_phi"):  # what ld.so may pick on other CPUs
        assert f"/opt/plat/{platform}/libplat.so.1" in result.paths


def test_hwcaps_copy_is_kept_as_a_variant(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    result = analyzer.analyze([scen.programs["hwcaps"]])
    assert result.objects[0].needed["libhw.so.1"] == "/opt/hw/libhw.so.1"
    variant = "/opt/hw/glibc-hwcaps/x86-64-v2/libhw.so.1"
    assert variant in result.paths
    assert [r.kind for r in result.reasons[variant]] == ["hwcap-variant"]


def test_foreign_class_is_skipped(scen: Scenarios, analyzer: DepsAnalyzer) -> None:
    if not scen.m32:
        pytest.skip("gcc -m32 needs gcc-multilib")
    mixed = one(analyzer, scen.programs["skip-32-bit"])
    assert mixed.needed["libx.so.1"] == "/opt/mix64/libx.so.1"
    p32 = one(analyzer, scen.programs["32-bit"])
    assert p32.needed["libx.so.1"] == "/opt/mix32/libx.so.1"
    assert p32.interpreter == "/lib/ld-linux.so.2"
    assert "/lib32/libc.so.6" in canonical(analyzer, p32)
    assert p32.description == "ELF32 little-endian 386"


def test_rpath_ignored_when_the_object_also_has_runpath(tmp_path: Path) -> None:
    merged_usr_glibc64(tmp_path)
    interp = "/lib64/ld-linux-x86-64.so.2"
    write(tmp_path, "/opt/r/libq.so.1", craft_elf(soname="libq.so.1"))
    write(tmp_path, "/opt/n/libq.so.1", craft_elf(soname="libq.so.1"))
    write(tmp_path, "/bin/both", craft_elf(interp=interp, needed=("libq.so.1",),
                                           rpath="/opt/r", runpath="/opt/n"))  # fmt: skip
    write(tmp_path, "/bin/only", craft_elf(interp=interp, needed=("libq.so.1",), rpath="/opt/r"))
    analyzer = DepsAnalyzer(tmp_path)
    assert one(analyzer, "/bin/both").needed["libq.so.1"] == "/opt/n/libq.so.1"
    assert one(analyzer, "/bin/only").needed["libq.so.1"] == "/opt/r/libq.so.1"


def test_machine_and_osabi_must_match(tmp_path: Path) -> None:
    merged_usr_glibc64(tmp_path)
    interp = "/lib64/ld-linux-x86-64.so.2"
    write(tmp_path, "/opt/a/libm1.so", craft_elf(soname="libm1.so", machine=183))  # aarch64
    write(tmp_path, "/opt/b/libm1.so", craft_elf(soname="libm1.so", osabi=9))  # FreeBSD
    write(tmp_path, "/opt/c/libm1.so", craft_elf(soname="libm1.so", osabi=3))  # GNU: fine
    write(tmp_path, "/bin/p", craft_elf(interp=interp, needed=("libm1.so",),
                                        rpath="/opt/a:/opt/b:/opt/c"))  # fmt: skip
    assert one(DepsAnalyzer(tmp_path), "/bin/p").needed["libm1.so"] == "/opt/c/libm1.so"


def test_system_dirs_come_from_the_image_loader(scen: Scenarios) -> None:
    fs = RootFS(scen.root)
    resolver = Resolver(fs, ElfCatalog(fs), {})
    info = ElfCatalog(fs).get(fs.resolve(scen.programs["chain"]).path)
    assert info is not None
    loader = resolver.loader_for(info)
    assert loader.flavor == "glibc"
    assert loader.system_dirs[:2] == ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu")
    assert loader.canonical == LD
