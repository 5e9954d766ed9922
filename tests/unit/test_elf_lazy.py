"""Lazy-load rules: NSS from nsswitch.conf, glibc version gates, gconv, custom rules."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ocislim.elf.closure import DepsAnalyzer
from ocislim.elf.lazy import DEFAULT_RULES, LazyRule, glibc_version, parse_nsswitch
from ocislim.elf.results import DepsResult
from ocislim.elf.rootpath import RootFS
from tests.tools import require_tool
from tests.unit.elf_synth import craft_elf, symlink, write

T = "/usr/lib/x86_64-linux-gnu"
INTERP = "/lib64/ld-linux-x86-64.so.2"


def test_nsswitch_parsing_and_defaults() -> None:
    text = (
        "# comment\n"
        "passwd:   files systemd   # trailing\n"
        "hosts: files [NOTFOUND=return] mdns4_minimal dns\n"
        "sudoers: files ldap\n"
        "group: compat\n"
    )
    config = parse_nsswitch(text)
    assert config["passwd"] == ("files", "systemd")
    assert config["hosts"] == ("files", "mdns4_minimal", "dns")
    assert "sudoers" not in config  # not a glibc database
    assert config["shadow"] == ("files", "systemd")  # falls back to passwd's line
    assert config["gshadow"] == ("compat",)  # falls back to group's line
    assert config["group_compat"] == ("nis",)
    assert config["services"] == ("files",)
    absent = parse_nsswitch(None)
    assert absent["hosts"] == ("dns", "files")
    assert absent["passwd"] == ("files",)
    assert absent["initgroups"] == ()


def test_glibc_version_from_banner_or_name(tmp_path: Path) -> None:
    write(tmp_path, "/a/libc.so.6", b"\x7fELF...GNU C Library (Debian) release version 2.31.\n")
    write(tmp_path, "/b/libc-2.28.so", b"\x7fELF no banner")
    write(tmp_path, "/c/libc.so.6", b"\x7fELF nothing")
    fs = RootFS(tmp_path)
    assert glibc_version(fs, "/a/libc.so.6") == (2, 31)
    assert glibc_version(fs, "/b/libc-2.28.so") == (2, 28)
    assert glibc_version(fs, "/c/libc.so.6") is None


def glibc_tree(
    root: Path, version: str, nsswitch: str | None, pthread: bool = False
) -> dict[str, str]:
    """Crafted glibc tree: ld.so, libc (with a version banner), NSS modules."""
    banner = f"GNU C Library (test) stable release version {version}.\n".encode()
    write(root, f"{T}/ld-linux-x86-64.so.2", craft_elf(soname="ld-linux-x86-64.so.2"))
    symlink(root, "/lib64", "usr/lib/x86_64-linux-gnu")
    write(
        root,
        f"{T}/libc.so.6",
        craft_elf(soname="libc.so.6", needed=("ld-linux-x86-64.so.2",)) + banner,
    )
    write(root, f"{T}/libpthread.so.0", craft_elf(soname="libpthread.so.0", needed=("libc.so.6",)))
    write(root, f"{T}/libresolv.so.2", craft_elf(soname="libresolv.so.2", needed=("libc.so.6",)))
    for service in ("files", "compat", "systemd"):
        write(
            root, f"{T}/libnss_{service}-{version}.so", craft_elf(soname=f"libnss_{service}.so.2")
        )
        symlink(root, f"{T}/libnss_{service}.so.2", f"libnss_{service}-{version}.so")
    write(
        root,
        f"{T}/libnss_dns.so.2",
        craft_elf(soname="libnss_dns.so.2", needed=("libresolv.so.2", "libc.so.6")),
    )
    write(root, f"{T}/libgcc_s.so.1", craft_elf(soname="libgcc_s.so.1"))
    if nsswitch is not None:
        write(root, "/etc/nsswitch.conf", nsswitch.encode(), 0o644)
    write(root, "/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
    write(root, "/etc/gai.conf", b"", 0o644)
    needed = ("libpthread.so.0", "libc.so.6") if pthread else ("libc.so.6",)
    write(root, "/usr/bin/prog", craft_elf(interp=INTERP, needed=needed))
    return {"prog": "/usr/bin/prog"}


def lazy_names(result: DepsResult) -> dict[str, str | None]:
    return {e.name: e.path for e in result.lazy}


def test_old_glibc_loads_files_and_dns_modules(tmp_path: Path) -> None:
    glibc_tree(tmp_path, "2.31", "passwd: compat\nhosts: files dns\n", pthread=True)
    result = DepsAnalyzer(tmp_path).analyze(["/usr/bin/prog"])
    names = lazy_names(result)
    assert names["libnss_files.so.2"] == f"{T}/libnss_files.so.2"
    assert names["libnss_dns.so.2"] == f"{T}/libnss_dns.so.2"
    assert names["libresolv.so.2"] == f"{T}/libresolv.so.2"  # the module's own DT_NEEDED
    assert names["libnss_compat.so.2"] == f"{T}/libnss_compat.so.2"
    assert names["libnss_nis.so.2"] is None  # passwd_compat defaults to nis: reported missing
    assert names["libgcc_s.so.1"] == f"{T}/libgcc_s.so.1"  # libpthread's cancellation
    for path in (
        f"{T}/libnss_files.so.2",
        f"{T}/libnss_files-2.31.so",  # the versioned target of the link
        f"{T}/libnss_dns.so.2",
        f"{T}/libresolv.so.2",
        "/etc/nsswitch.conf",
        "/etc/passwd",
        "/etc/gai.conf",
    ):
        assert path in result.paths, path
    assert "/etc/hosts" not in result.paths  # absent files are not invented
    reasons = [str(r) for r in result.reasons[f"{T}/libnss_dns.so.2"]]
    # networks is not in the file: glibc's default for it is "dns files".
    assert any("NSS service 'dns' for hosts, networks (/etc/nsswitch.conf)" in r for r in reasons)


def test_new_glibc_has_files_and_dns_built_in(tmp_path: Path) -> None:
    glibc_tree(tmp_path, "2.36", "passwd: files systemd\nhosts: files dns\n")
    result = DepsAnalyzer(tmp_path).analyze(["/usr/bin/prog"])
    names = lazy_names(result)
    assert "libnss_files.so.2" not in names and "libnss_dns.so.2" not in names
    assert names["libnss_systemd.so.2"] == f"{T}/libnss_systemd.so.2"
    assert names["libgcc_s.so.1"] == f"{T}/libgcc_s.so.1"  # libc itself unwinds since 2.34


def test_old_glibc_without_libpthread_needs_no_libgcc_s(tmp_path: Path) -> None:
    glibc_tree(tmp_path, "2.31", "hosts: files\n")
    names = lazy_names(DepsAnalyzer(tmp_path).analyze(["/usr/bin/prog"]))
    assert "libgcc_s.so.1" not in names


def test_absent_nsswitch_uses_glibc_defaults(tmp_path: Path) -> None:
    glibc_tree(tmp_path, "2.31", None)
    result = DepsAnalyzer(tmp_path).analyze(["/usr/bin/prog"])
    dns = [e for e in result.lazy if e.name == "libnss_dns.so.2"]
    assert dns and dns[0].path is not None
    assert "glibc's default (no /etc/nsswitch.conf)" in dns[0].reason


def compiled_library(root: Path, soname: str, source: str) -> None:
    """``source`` (C) built by gcc as the shared library ``soname`` in the image's libdir."""
    src = root / "lib.c"
    src.write_text(source)
    lib = root / "lib.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(lib), str(src), f"-Wl,-soname,{soname}"],
        check=True,
    )
    write(root, f"{T}/{soname}", lib.read_bytes())


def test_gconv_only_when_iconv_is_imported(tmp_path: Path) -> None:
    require_tool("gcc")
    glibc_tree(tmp_path, "2.36", "hosts: files dns\n")
    gconv = f"{T}/gconv"
    write(tmp_path, f"{gconv}/gconv-modules", b"module X// Y// X 1\n", 0o644)
    write(tmp_path, f"{gconv}/gconv-modules.d/extra.conf", b"", 0o644)
    write(tmp_path, f"{gconv}/libJIS.so", craft_elf(soname="libJIS.so"))
    write(tmp_path, f"{gconv}/EUC-JP.so", craft_elf(needed=("libJIS.so",), runpath="$ORIGIN"))
    compiled_library(
        tmp_path,
        "libuses.so.1",
        '#include <iconv.h>\nvoid *u(void) { return iconv_open("A", "B"); }\n',
    )
    write(tmp_path, "/usr/bin/conv", craft_elf(interp=INTERP, needed=("libuses.so.1", "libc.so.6")))
    analyzer = DepsAnalyzer(tmp_path)
    with_iconv = analyzer.analyze(["/usr/bin/conv"])
    for path in (
        f"{gconv}/gconv-modules",
        f"{gconv}/gconv-modules.d/extra.conf",
        f"{gconv}/EUC-JP.so",
        f"{gconv}/libJIS.so",
    ):
        assert path in with_iconv.paths, path
    without = analyzer.analyze(["/usr/bin/prog"])
    assert not any("/gconv/" in p for p in without.paths)


def test_custom_rule_as_data(tmp_path: Path) -> None:
    glibc_tree(tmp_path, "2.36", "hosts: files\n")
    write(tmp_path, f"{T}/libpython3.11.so.1.0", craft_elf(soname="libpython3.11.so.1.0"))
    write(tmp_path, "/usr/lib/python3.11/lib-dynload/_ssl.so", craft_elf(needed=("libc.so.6",)))
    write(tmp_path, "/usr/lib/python3.11/os.py", b"", 0o644)
    write(tmp_path, "/usr/bin/py", craft_elf(interp=INTERP, needed=("libpython3.11.so.1.0",)))
    rule = LazyRule(
        name="python-stdlib",
        description="the interpreter imports its standard library",
        when_loaded=("libpython3.*.so*",),
        files=("/usr/lib/python3.11/*.py",),
        libraries=("/usr/lib/python3.11/lib-dynload/_ssl.so",),
    )
    result = DepsAnalyzer(tmp_path, rules=(*DEFAULT_RULES, rule)).analyze(["/usr/bin/py"])
    assert "/usr/lib/python3.11/os.py" in result.paths
    assert "/usr/lib/python3.11/lib-dynload/_ssl.so" in result.paths
    plain = DepsAnalyzer(tmp_path).analyze(["/usr/bin/py"])
    assert "/usr/lib/python3.11/os.py" not in plain.paths


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_default_rules_are_well_formed(rule: LazyRule) -> None:
    assert rule.when_loaded and rule.description
    assert all(f.startswith("/") for f in rule.files)


def test_a_program_on_ncurses_keeps_the_terminfo_database(tmp_path: Path) -> None:
    glibc_tree(tmp_path, "2.36", "hosts: files\n")
    write(tmp_path, f"{T}/libtinfo.so.6", craft_elf(soname="libtinfo.so.6", needed=("libc.so.6",)))
    write(tmp_path, "/usr/lib/terminfo/x/xterm", b"terminfo", 0o644)
    write(tmp_path, "/usr/share/terminfo/x/xterm-256color", b"terminfo", 0o644)
    write(
        tmp_path, "/usr/bin/term", craft_elf(interp=INTERP, needed=("libtinfo.so.6", "libc.so.6"))
    )
    analyzer = DepsAnalyzer(tmp_path)
    with_curses = analyzer.analyze(["/usr/bin/term"])
    assert "/usr/lib/terminfo/x/xterm" in with_curses.paths
    assert "/usr/share/terminfo/x/xterm-256color" in with_curses.paths
    entry = next(e for e in with_curses.lazy if e.path == "/usr/lib/terminfo/x/xterm")
    assert entry.rule == "ncurses-terminfo"
    without = analyzer.analyze(["/usr/bin/prog"])  # libc only: no terminal database
    assert not any("terminfo" in p for p in without.paths)


FONTS_CONF = b"""<?xml version="1.0"?>
<fontconfig>
  <!-- <dir>/usr/share/commented-out</dir> -->
  <dir>/usr/share/fonts</dir>
  <dir>/usr/local/share/fonts</dir>
  <dir prefix="xdg">fonts</dir>
  <dir>~/.fonts</dir>
  <include ignore_missing="yes">conf.d</include>
  <cachedir>/var/cache/fontconfig</cachedir>
</fontconfig>
"""


def _fontconfig_tree(root: Path) -> None:
    glibc_tree(root, "2.36", "hosts: files\n")
    write(root, "/etc/fonts/fonts.conf", FONTS_CONF, 0o644)
    write(root, "/usr/share/fontconfig/conf.avail/60-latin.conf", b"<fontconfig/>", 0o644)
    symlink(
        root,
        "/etc/fonts/conf.d/60-latin.conf",
        "../../../usr/share/fontconfig/conf.avail/60-latin.conf",
    )
    write(root, "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", b"font", 0o644)
    write(root, "/usr/share/fonts/opentype/x/X.otf", b"font", 0o644)
    symlink(root, "/usr/share/fonts/truetype/loop", "..")  # walked once, not forever
    write(root, "/usr/share/commented-out/Y.ttf", b"font", 0o644)
    write(root, "/var/cache/fontconfig/abc-le64.cache-8", b"cache", 0o644)
    write(
        root,
        f"{T}/libfontconfig.so.1",
        craft_elf(soname="libfontconfig.so.1", needed=("libc.so.6",)),
    )


def test_a_program_on_fontconfig_keeps_its_configuration_and_every_font(tmp_path: Path) -> None:
    _fontconfig_tree(tmp_path)
    write(
        tmp_path,
        "/usr/bin/draw",
        craft_elf(interp=INTERP, needed=("libfontconfig.so.1", "libc.so.6")),
    )
    analyzer = DepsAnalyzer(tmp_path)
    result = analyzer.analyze(["/usr/bin/draw"])
    for path in (
        "/etc/fonts/fonts.conf",
        "/etc/fonts/conf.d/60-latin.conf",
        "/usr/share/fontconfig/conf.avail/60-latin.conf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/opentype/x/X.otf",
        "/var/cache/fontconfig/abc-le64.cache-8",
    ):
        assert path in result.paths, path
    assert "/usr/share/commented-out/Y.ttf" not in result.paths
    entry = next(e for e in result.lazy if e.path == "/usr/share/fonts/opentype/x/X.otf")
    assert entry.rule == "fontconfig-fonts"
    plain = analyzer.analyze(["/usr/bin/prog"])  # libc only: no fonts
    assert not any("fonts" in p for p in plain.paths)


def test_fontconfig_file_moves_the_configuration(tmp_path: Path) -> None:
    _fontconfig_tree(tmp_path)
    write(
        tmp_path,
        "/opt/app/fonts.conf",
        b"<fontconfig><dir>/opt/app/fonts</dir></fontconfig>",
        0o644,
    )
    write(tmp_path, "/opt/app/fonts/Brand.ttf", b"font", 0o644)
    write(
        tmp_path,
        "/usr/bin/draw",
        craft_elf(interp=INTERP, needed=("libfontconfig.so.1", "libc.so.6")),
    )
    env = ["FONTCONFIG_FILE=/opt/app/fonts.conf"]
    result = DepsAnalyzer(tmp_path, env).analyze(["/usr/bin/draw"])
    assert "/opt/app/fonts/Brand.ttf" in result.paths
    assert "/usr/share/fonts/opentype/x/X.otf" not in result.paths


def test_the_jvm_font_manager_loads_fontconfig_and_its_fonts(tmp_path: Path) -> None:
    _fontconfig_tree(tmp_path)
    jvm = "/usr/lib/jvm/java-17-openjdk-amd64/lib"
    write(
        tmp_path,
        f"{jvm}/libfontmanager.so",
        craft_elf(soname="libfontmanager.so", needed=("libc.so.6",)),
    )
    result = DepsAnalyzer(tmp_path).analyze([f"{jvm}/libfontmanager.so"])
    assert f"{T}/libfontconfig.so.1" in result.paths
    assert "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" in result.paths


def test_a_program_calling_system_keeps_bin_sh(tmp_path: Path) -> None:
    require_tool("gcc")
    glibc_tree(tmp_path, "2.36", "hosts: files\n")
    write(tmp_path, "/usr/bin/dash", craft_elf(interp=INTERP, needed=("libc.so.6",)))
    symlink(tmp_path, "/bin/sh", "../usr/bin/dash")
    compiled_library(
        tmp_path, "libsys.so.1", '#include <stdlib.h>\nint s(void) { return system("ls"); }\n'
    )
    write(tmp_path, "/usr/bin/run", craft_elf(interp=INTERP, needed=("libsys.so.1", "libc.so.6")))
    analyzer = DepsAnalyzer(tmp_path)
    with_system = analyzer.analyze(["/usr/bin/run"])
    assert "/usr/bin/dash" in with_system.paths
    assert next(e for e in with_system.lazy if e.path == "/bin/sh").rule == "libc-shell"
    assert "/usr/bin/dash" not in analyzer.analyze(["/usr/bin/prog"]).paths


def test_fontconfig_include_cycles_end(tmp_path: Path) -> None:
    _fontconfig_tree(tmp_path)
    cycle = b"<fontconfig><include>b.conf</include><include>.</include><dir>/x</dir></fontconfig>"
    write(tmp_path, "/etc/fonts/fonts.conf", cycle, 0o644)
    write(tmp_path, "/etc/fonts/b.conf", b"<fontconfig><include>fonts.conf</include></fontconfig>")
    write(tmp_path, "/x/A.ttf", b"font", 0o644)
    draw = craft_elf(interp=INTERP, needed=("libfontconfig.so.1", "libc.so.6"))
    write(tmp_path, "/usr/bin/draw", draw)
    result = DepsAnalyzer(tmp_path).analyze(["/usr/bin/draw"])
    assert {"/etc/fonts/fonts.conf", "/etc/fonts/b.conf", "/x/A.ttf"} <= set(result.paths)
