"""The plan's ELF pass on crafted ELF files in a real (unpacked) synthetic image."""

from __future__ import annotations

from pathlib import Path

from ocislim.elf import Reason as ElfReason
from ocislim.image import open_image
from ocislim.layers.unpack import unpack
from ocislim.slim.elfdeps import ElfDeps, convert_reason, lazy_rule_names, select_rules
from ocislim.slim.plan import Planner, Reason, Seed, close_plan
from tests.synth import M, layer, oci_archive
from tests.unit.elf_synth import ET_EXEC, craft_elf

TRACE = Reason("trace", process="/app/run.sh", access=("exec",))
LOADER = "/usr/lib64/ld-linux-x86-64.so.2"


def image_members() -> list[M]:
    return [
        M("usr/lib64/ld-linux-x86-64.so.2", data=craft_elf(soname="ld-linux-x86-64.so.2")),
        M("lib64", "symlink", link="usr/lib64"),
        M(
            "usr/lib/libfoo.so.1.0",
            data=craft_elf(soname="libfoo.so.1", needed=("libbar.so",), runpath="$ORIGIN"),
        ),
        M("usr/lib/libfoo.so.1", "symlink", link="libfoo.so.1.0"),
        M("usr/lib/libbar.so", data=craft_elf(soname="libbar.so")),
        M("usr/lib/libunused.so", data=craft_elf(soname="libunused.so")),
        M(
            "app/prog",
            data=craft_elf(
                elf_type=ET_EXEC,
                interp="/lib64/ld-linux-x86-64.so.2",
                needed=("libfoo.so.1",),
                runpath="/usr/lib",
            ),
            mode=0o755,
        ),
        M("app/run.sh", data=b"#!/app/prog\n", mode=0o755),
        M("app/notes.txt", data=b"#!/app/prog but not executable\n"),
    ]


def test_kept_objects_bring_their_closure_with_elf_reasons(tmp_path: Path) -> None:
    archive = oci_archive(tmp_path, [layer(image_members())])
    with open_image(archive) as image:
        unpacked = unpack(image, tmp_path / "rootfs")
    deps = ElfDeps(unpacked.root, unpacked.tree, ["PATH=/app"], "/")
    assert deps.is_object("/app/prog") and deps.is_object("/app/run.sh")
    assert not deps.is_object("/app/notes.txt")  # "#!" without an execute bit
    assert not deps.is_object("/usr/lib/libfoo.so.1")  # a symlink, not the object
    planner = Planner(unpacked.tree)
    close_plan(planner, [Seed("/app/run.sh", TRACE)], deps)
    kept = set(planner.kept_paths)
    assert {"/app/prog", "/usr/lib/libfoo.so.1.0", "/usr/lib/libfoo.so.1"} <= kept
    assert {"/usr/lib/libbar.so", LOADER, "/lib64"} <= kept
    assert "/usr/lib/libunused.so" not in kept
    assert "/app/notes.txt" not in kept
    assert Reason("elf", detail="#! interpreter", by="/app/run.sh") in planner.reasons("/app/prog")
    assert Reason("elf", detail="DT_NEEDED libbar.so", by="/usr/lib/libfoo.so.1.0") in (
        planner.reasons("/usr/lib/libbar.so")
    )
    assert Reason("elf", detail="PT_INTERP", by="/app/prog") in planner.reasons(LOADER)
    assert deps([*planner.kept_paths]) == []  # everything was analysed once


def test_reason_conversion_and_rule_selection() -> None:
    assert convert_reason(ElfReason("object")) is None
    lazy = ElfReason("lazy", by="/lib/libc.so.6", detail="NSS service 'dns'", rule="glibc-nss")
    assert convert_reason(lazy) == Reason(
        "lazy", detail="NSS service 'dns'", by="/lib/libc.so.6", rule="glibc-nss"
    )
    link = convert_reason(ElfReason("symlink", detail="/usr/lib/libz.so.1.3"))
    assert link == Reason(
        "symlink", detail="on the way to /usr/lib/libz.so.1.3", by="/usr/lib/libz.so.1.3"
    )
    names = lazy_rule_names()
    assert {"glibc-nss", "glibc-resolver"} <= set(names)
    assert [r.name for r in select_rules({"glibc-nss"})] == [n for n in names if n != "glibc-nss"]
