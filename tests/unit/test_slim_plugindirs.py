"""plugin-dirs: a plugin loaded from a directory of plugins keeps the others."""

from __future__ import annotations

from ocislim.slim.plan import Planner
from ocislim.slim.plugindirs import PluginDirs, is_shared_object_name
from tests.synth import M
from tests.unit.slim_synth import tree_from

CODERS = "usr/lib/x86_64-linux-gnu/ImageMagick-6.9.11/modules-Q16/coders"
MEMBERS = [
    M(f"{CODERS}/png.so", data=b"\x7fELF"),
    M(f"{CODERS}/png.la", data=b"dlname='png.so'\n"),
    M(f"{CODERS}/jpeg.so", data=b"\x7fELF"),
    M(f"{CODERS}/jpeg.la", data=b"dlname='jpeg.so'\n"),
    M(f"{CODERS}/README", data=b"not a plugin"),
    M(f"{CODERS}/sub/x.so", data=b"\x7fELF"),
    M("usr/lib/x86_64-linux-gnu/ImageMagick-6.9.11/modules-Q16/filters/analyze.so",
      data=b"\x7fELF"),
    M("usr/lib/x86_64-linux-gnu/libpng16.so.16", data=b"\x7fELF"),
    M("usr/lib/x86_64-linux-gnu/libjpeg.so.62", data=b"\x7fELF"),
    M("usr/lib/apache2/modules/mod_a.so", data=b"\x7fELF"),
    M("usr/lib/apache2/modules/mod_b.so", data=b"\x7fELF"),
    M("opt/tool/lib/libprivate.so", data=b"\x7fELF"),
]  # fmt: skip


def kept(touched: list[str], enabled: frozenset[str] = frozenset({"plugin-dirs"})) -> set[str]:
    tree = tree_from(MEMBERS)
    planner = Planner(tree)
    planner.add(PluginDirs(tree, enabled).seeds(touched))
    return set(planner.kept_paths)


def test_a_loaded_coder_keeps_the_other_coders_of_its_directory() -> None:
    result = kept([f"/{CODERS}/png.so"])
    assert {f"/{CODERS}/jpeg.so", f"/{CODERS}/jpeg.la", f"/{CODERS}/png.la"} <= result
    assert f"/{CODERS}/README" not in result
    assert f"/{CODERS}/sub/x.so" not in result  # not below it
    assert not any("/filters/" in p for p in result)  # nor beside it


def test_libraries_decided_dirs_and_lone_objects_keep_nothing_more() -> None:
    # A library in a search directory is a library, not a plugin.
    assert "/usr/lib/x86_64-linux-gnu/libjpeg.so.62" not in kept(
        ["/usr/lib/x86_64-linux-gnu/libpng16.so.16"]
    )
    # Apache's modules are the web-server rule's: only the enabled ones.
    assert kept(["/usr/lib/apache2/modules/mod_a.so"]) == set()
    assert kept(["/opt/tool/lib/libprivate.so"]) == set()  # one object: a private library
    assert kept([f"/{CODERS}/png.so"], frozenset()) == set()


def test_shared_object_names() -> None:
    assert is_shared_object_name("png.so") and is_shared_object_name("libz.so.1.2.13")
    assert not is_shared_object_name("png.la") and not is_shared_object_name("so.txt")
