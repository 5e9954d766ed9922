"""tar-compressors: GNU tar that ran keeps the compressors it runs by name."""

from __future__ import annotations

from ocislim.slim.keeprules import default_enabled
from ocislim.slim.plan import Planner
from ocislim.slim.runtimerules import RuntimeRules
from tests.synth import M
from tests.unit.slim_synth import reader, tree_from

ELF = b"\x7fELF"
IMAGE = [
    M("usr/bin/tar", data=ELF, mode=0o755),
    M("usr/bin/gzip", data=ELF, mode=0o755),
    M("usr/bin/xz", data=ELF, mode=0o755),
    M("usr/bin/lzma", "symlink", link="xz"),
    M("usr/bin/zstd", data=ELF, mode=0o755),
    M("usr/bin/cpio", data=ELF, mode=0o755),
    M("bin", "symlink", link="usr/bin"),
]


def kept(touched: list[str], enabled: frozenset[str] = default_enabled()) -> set[str]:
    tree = tree_from(IMAGE)
    planner = Planner(tree)
    planner.add(RuntimeRules(tree, enabled, reader(IMAGE)).seeds(touched))
    return set(planner.kept_paths)


def test_tar_keeps_the_compressors_the_image_has() -> None:
    result = kept(["/usr/bin/tar"])
    # -J runs xz, --lzma runs lzma (a link to xz), --zstd zstd: the probe ran -z.
    assert {"/usr/bin/gzip", "/usr/bin/xz", "/usr/bin/lzma", "/usr/bin/zstd"} <= result
    assert "/usr/bin/cpio" not in result


def test_only_tar_running_fires_it() -> None:
    assert "/usr/bin/xz" not in kept(["/usr/bin/cpio"])
    assert kept(["/usr/bin/tar"], default_enabled() - {"tar-compressors"}) == set()
