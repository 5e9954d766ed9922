"""Image formats: detection from content, selection, round trips, determinism, atomic output.

Images are built here (see :mod:`tests.oci_build`); the CLI runs in-process with
click's runner, the library is called directly where a result is easier to
inspect that way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ocislim.cli import main
from ocislim.errors import CompressionError, RefNotFoundError, UsageError
from ocislim.image import open_image
from ocislim.image.compression import detect
from ocislim.image.models import Platform
from ocislim.layers.merge import merge
from ocislim.layers.spool import Spool
from tests.oci_build import INDEX, MEDIA, Draft, compress, jdump, oci, write_layout
from tests.synth import M, config_for, layer, sha, write_tar, write_tree

BASE = [
    M("etc", "dir"),
    M("etc/os-release", data=b"ID=test\n"),
    M("etc/gone", data=b"deleted later"),
    M("usr", "dir"),
    M("usr/bin", "dir"),
    M("usr/bin/tool", data=b"\x7fELF tool", mode=0o4755),
    M("usr/bin/alias", "hardlink", link="usr/bin/tool"),
    M("bin", "symlink", link="usr/bin"),
    M("dev", "dir"),
    M("dev/null", "char", mode=0o666, dev=(1, 3)),
]
MIDDLE = [
    M("etc/.wh.gone"),
    M("var", "dir"),
    M("var/cache", "dir"),
    M("var/cache/.wh..wh..opq"),
    M("var/cache/new", data=b"fresh"),
    M("usr/bin/tool", data=b"\x7fELF tool v2", mode=0o755,
      pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}),
]  # fmt: skip
TOP = [M("app", "dir", mode=0o750, uid=1000), M("app/main.py", data=b"print('hi')\n" * 100)]
LAYERS = [layer(BASE), layer(MIDDLE), layer(TOP)]


def invoke(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def signature(path: Path, **select: str) -> list[tuple[object, ...]]:
    """The merged tree of an image: every entry's header fields and content digest.

    A hardlink group is named by the first path of the group (inode numbers are
    internal to one merge).
    """
    with open_image(path, **select) as img, Spool() as spool:
        entries = list(merge(img, spool=spool).walk())
        group: dict[int, str] = {}
        out = []
        for entry in entries:
            info = entry.info
            digest = None
            if entry.data is not None:
                reader = spool.reader(entry.data.spool_offset or 0, entry.data.size)
                digest = hashlib.sha256(reader.read()).hexdigest()
            first = group.setdefault(entry.inode, entry.path)
            out.append((
                entry.path, entry.kind, info.mode, info.uid, info.gid, int(info.mtime),
                entry.linkname, info.devmajor, info.devminor, entry.xattrs, digest, first,
            ))  # fmt: skip
        return out


# -- detection from content ------------------------------------------------------------


def _tar(dest: Path, files: dict[str, bytes | tuple[str, str]]) -> Path:
    """A tar of ``files``; a value ``("symlink", target)`` makes a symlink member."""
    with tarfile.open(dest, "w") as tar:
        for name, value in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, value[1]
                tar.addfile(info)
            else:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    return dest


def legacy_docker_archive(dest: Path) -> Path:
    """A ``docker save`` archive of two images sharing a layer, legacy layout.

    Image ``base:1`` is one layer; ``app:2`` is that layer plus TOP.  The shared
    layer is stored once, and ``base:1``'s directory holds a symlink to it.
    """
    base_cfg = jdump(config_for(LAYERS[:1]))
    app_cfg = jdump(config_for([LAYERS[0], LAYERS[2]]))
    ids = ["a" * 64, "b" * 64, "c" * 64]
    files: dict[str, bytes | tuple[str, str]] = {
        f"{ids[0]}/VERSION": b"1.0",
        f"{ids[0]}/json": b"{}",
        f"{ids[0]}/layer.tar": LAYERS[0],
        f"{ids[1]}/layer.tar": LAYERS[2],
        f"{ids[2]}/layer.tar": ("symlink", f"../{ids[0]}/layer.tar"),
        f"{sha(base_cfg)[7:]}.json": base_cfg,
        f"{sha(app_cfg)[7:]}.json": app_cfg,
        "manifest.json": jdump([
            {"Config": f"{sha(app_cfg)[7:]}.json", "RepoTags": ["app:2"],
             "Layers": [f"{ids[0]}/layer.tar", f"{ids[1]}/layer.tar"]},
            {"Config": f"{sha(base_cfg)[7:]}.json", "RepoTags": ["base:1"],
             "Layers": [f"{ids[2]}/layer.tar"]},
        ]),
        "repositories": jdump({"app": {"2": ids[1]}, "base": {"1": ids[2]}}),
    }  # fmt: skip
    return _tar(dest, files)


def docker25_archive(dest: Path) -> Path:
    """What ``docker save`` writes since 25: an OCI layout plus a ``manifest.json``."""
    draft = Draft(LAYERS, "none")
    blobs, desc = draft.blobs_and_descriptor()
    desc["annotations"] = {
        "io.containerd.image.name": "docker.io/library/app:2",
        "org.opencontainers.image.ref.name": "2",
    }
    files = {"blobs/" + d.replace(":", "/"): data for d, data in blobs.items()}
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = jdump({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]})
    files["manifest.json"] = jdump([{
        "Config": "blobs/" + sha(draft.config_bytes()).replace(":", "/"),
        "RepoTags": ["app:2"],
        "Layers": ["blobs/" + d["digest"].replace(":", "/") for d in draft.descs],
    }])  # fmt: skip
    return write_tar(files, dest)


def test_formats_are_detected_from_content_not_names(tmp_path: Path) -> None:
    oci_tar = oci(tmp_path / "looks-like.docker.tar", Draft(LAYERS))
    layout = oci(tmp_path / "layout.tar.gz", Draft(LAYERS), as_dir=True)
    docker = legacy_docker_archive(tmp_path / "looks-like.oci")
    docker25 = docker25_archive(tmp_path / "d25")
    expected = signature(oci_tar)
    cases = [
        (oci_tar, "oci-archive", {}),
        (layout, "oci-dir", {}),
        (docker, "docker-archive", {"ref": "app:2"}),
        (docker25, "oci-archive", {}),
    ]
    for path, fmt, select in cases:
        with open_image(path, **select) as img:
            assert img.format == fmt, path
        if path is not docker:
            assert signature(path, **select) == expected, path
        info = json.loads(invoke("inspect", "--json", str(path), *_flags(select)).stdout)
        assert info["format"] == fmt


def _flags(select: dict[str, str]) -> list[str]:
    return [x for key, value in select.items() for x in (f"--{key}", value)]


def test_legacy_docker_archive_with_a_symlinked_layer(tmp_path: Path) -> None:
    archive = legacy_docker_archive(tmp_path / "save.tar")
    base = signature(archive, ref="base:1")
    assert base == signature(oci(tmp_path / "base.tar", Draft(LAYERS[:1])))
    app = signature(archive, ref="app:2")
    assert app == signature(oci(tmp_path / "app.tar", Draft([LAYERS[0], LAYERS[2]])))
    with open_image(archive, ref="base:1") as img:
        assert (img.ref_name, len(img.layers)) == ("base:1", 1)


def test_docker25_archive_is_read_through_its_index(tmp_path: Path) -> None:
    archive = docker25_archive(tmp_path / "d25.tar")
    with open_image(archive, ref="app:2") as img:
        assert img.format == "oci-archive"
        assert [str(d) for d in img.config.diff_ids] == [sha(raw) for raw in LAYERS]


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_compressed_outer_archive_is_read_and_left_as_it_was(
    tmp_path: Path, algorithm: str
) -> None:
    archive = oci(tmp_path / "image.tar", Draft(LAYERS))
    packed = tmp_path / "image.tar.x"
    packed.write_bytes(compress(archive.read_bytes(), algorithm))
    before = packed.read_bytes()
    result = invoke("inspect", "--json", str(packed))
    assert json.loads(result.output)["format"] == "oci-archive"
    assert packed.read_bytes() == before


def test_a_tar_that_is_no_image_is_refused(tmp_path: Path) -> None:
    path = write_tar({"hello.txt": b"hi"}, tmp_path / "plain.tar")
    result = invoke("unpack", str(path), str(tmp_path / "out"), code=4)
    assert "not an image" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("actual", "claimed"),
    [("gzip", "none"), ("zstd", "gzip"), ("none", "zstd"), ("gzip", "zstd"), ("zstd", "none")],
)
def test_layer_compression_is_detected_from_bytes(
    tmp_path: Path, actual: str, claimed: str
) -> None:
    draft = Draft(LAYERS, actual)
    for desc in draft.descs:
        desc["mediaType"] = MEDIA[claimed]
    path = oci(tmp_path / "image.tar", draft)
    assert signature(path) == signature(oci(tmp_path / "honest.tar", Draft(LAYERS, "none")))


def test_docker_archive_with_compressed_layers(tmp_path: Path) -> None:
    cfg = jdump(config_for(LAYERS))
    files = {f"{sha(cfg)[7:]}.json": cfg}
    names = []
    for i, raw in enumerate(LAYERS):
        names.append(f"{i}.tar")
        files[f"{i}.tar"] = compress(raw, ("gzip", "zstd", "none")[i])
    files["manifest.json"] = jdump([{"Config": f"{sha(cfg)[7:]}.json", "Layers": names}])
    path = write_tar(files, tmp_path / "docker.tar")
    assert signature(path) == signature(oci(tmp_path / "oci.tar", Draft(LAYERS)))


# -- selecting one image ---------------------------------------------------------------


def two_refs(tmp_path: Path) -> Path:
    a = Draft(LAYERS[:1]).blobs_and_descriptor(ref="example.com/a:1")
    b = Draft(LAYERS).blobs_and_descriptor(ref="example.com/b:2")
    return write_layout(tmp_path / "two.tar", [a, b])


def test_ref_selects_one_image(tmp_path: Path) -> None:
    path = two_refs(tmp_path)
    for ref in ("example.com/b:2", "b:2"):
        with open_image(path, ref=ref) as img:
            assert (img.ref_name, len(img.layers)) == ("example.com/b:2", 3)


def test_without_ref_the_error_lists_the_choices(tmp_path: Path) -> None:
    path = two_refs(tmp_path)
    with pytest.raises(RefNotFoundError, match="pick one with --ref") as exc:
        open_image(path)
    assert "example.com/a:1, example.com/b:2" in str(exc.value)
    result = invoke("unpack", str(path), str(tmp_path / "out"), code=2)
    assert result.stderr.strip().endswith("(available: example.com/a:1, example.com/b:2)")


def test_unknown_ref_lists_what_is_there(tmp_path: Path) -> None:
    path = two_refs(tmp_path)
    result = invoke("inspect", "--ref", "nope:9", str(path), code=2)
    assert "no image named 'nope:9'; available: example.com/a:1, example.com/b:2" in result.stderr
    docker = legacy_docker_archive(tmp_path / "save.tar")
    result = invoke("inspect", "--ref", "nope:9", str(docker), code=2)
    assert "no image named 'nope:9'; available: app:2, base:1" in result.stderr


ARCHES = {"amd64": None, "arm64": "v8", "arm": "v7", "s390x": None}


def platform_drafts() -> dict[str, Draft]:
    """One single-layer image per architecture; the layer names the architecture."""
    drafts = {}
    for arch in ARCHES:
        raw = layer([M("arch", data=arch.encode())])
        drafts[arch] = Draft([raw], architecture=arch)
        if ARCHES[arch]:
            drafts[arch].config["variant"] = ARCHES[arch]
    return drafts


def _platform(arch: str) -> dict[str, str]:
    plat = {"os": "linux", "architecture": arch}
    if ARCHES[arch]:
        plat["variant"] = ARCHES[arch]  # type: ignore[assignment]
    return plat


def multi_platform(tmp_path: Path, nested: bool) -> Path:
    images = [d.blobs_and_descriptor(platform=_platform(a)) for a, d in platform_drafts().items()]
    if not nested:
        return write_layout(tmp_path / "multi.tar", images)
    inner = jdump({"schemaVersion": 2, "mediaType": INDEX, "manifests": [d for _, d in images]})
    blobs = {k: v for b, _ in images for k, v in b.items()}
    blobs[sha(inner)] = inner
    top = {"mediaType": INDEX, "digest": sha(inner), "size": len(inner),
           "annotations": {"org.opencontainers.image.ref.name": "multi:latest"}}  # fmt: skip
    return write_layout(tmp_path / "nested.tar", [(blobs, top)])


def arch_file(path: Path, **select: str) -> bytes:
    with open_image(path, **select) as img, Spool() as spool:
        tree = merge(img, spool=spool)
        entry = tree.get("/arch")
        assert entry is not None and entry.data is not None
        return spool.reader(entry.data.spool_offset or 0, entry.data.size).read()


@pytest.mark.parametrize("nested", [False, True], ids=["flat-index", "nested-index"])
def test_platform_selects_from_a_multi_platform_index(tmp_path: Path, nested: bool) -> None:
    path = multi_platform(tmp_path, nested)
    assert arch_file(path, platform="linux/arm64") == b"arm64"
    assert arch_file(path, platform="linux/arm/v7") == b"arm"
    assert arch_file(path, platform="linux/s390x") == b"s390x"
    host = Platform.host()
    if host.architecture in ARCHES:
        assert arch_file(path) == host.architecture.encode()
    if nested:
        with open_image(path, platform="linux/arm64") as img:
            assert img.ref_name == "multi:latest"
    result = invoke("inspect", "--platform", "linux/riscv64", str(path), code=2)
    assert "no image for platform linux/riscv64; available: " in result.stderr
    assert "linux/amd64, linux/arm/v7, linux/arm64/v8, linux/s390x" in result.stderr


def test_platform_of_a_single_image_must_match(tmp_path: Path) -> None:
    path = oci(tmp_path / "image.tar", Draft(LAYERS, architecture="arm64"))
    with pytest.raises(RefNotFoundError, match="image is for linux/arm64, not linux/s390x"):
        open_image(path, platform="linux/s390x")
    with pytest.raises(UsageError, match="expected os/arch"):
        open_image(path, platform="linux")


# -- round trips -----------------------------------------------------------------------

FORMATS = ["oci-archive", "docker-archive", "oci-dir"]
COMPRESSIONS = ["gzip", "zstd", "none"]


@pytest.fixture(scope="module")
def source_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[Any, ...]]]:
    path = oci(tmp_path_factory.mktemp("src") / "image.tar", Draft(LAYERS, "gzip"), ref="rt:1")
    return path, signature(path)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("flatten", [False, True], ids=["layers", "flatten"])
def test_round_trip_keeps_the_merged_tree(
    tmp_path: Path,
    source_image: tuple[Path, list[tuple[Any, ...]]],
    fmt: str,
    compression: str,
    flatten: bool,
) -> None:
    source, expected = source_image
    out = tmp_path / "out"
    args = ["convert", "-q", "--format", fmt, "--compression", compression, str(source), str(out)]
    invoke(*args, *(["--flatten"] if flatten else []))
    assert signature(out) == expected
    with open_image(out) as img, open_image(source) as src:
        assert img.format == fmt
        assert img.ref_name == "rt:1"
        want = "none" if fmt == "docker-archive" else compression
        for lay in img.layers:
            with lay.store.open(lay.blob_name) as fh:
                head = fh.read(4)
            assert detect(head) == want
        if flatten:
            assert len(img.layers) == 1
            assert img.config.history[-1]["created_by"] == "ocislim convert --flatten"
        else:
            assert img.config.diff_ids == src.config.diff_ids
            assert img.config_raw == src.config_raw


def test_round_trip_through_every_format_in_turn(
    tmp_path: Path, source_image: tuple[Path, list[tuple[Any, ...]]]
) -> None:
    current, expected = source_image
    for i, (fmt, compression) in enumerate(
        [("oci-dir", "zstd"), ("docker-archive", "none"), ("oci-archive", "gzip"),
         ("oci-archive", "zstd"), ("oci-dir", "none")]
    ):  # fmt: skip
        out = tmp_path / f"step{i}"
        invoke(
            "convert", "-q", "--format", fmt, "--compression", compression, str(current), str(out)
        )
        assert signature(out) == expected, (fmt, compression)
        current = out


# -- determinism -----------------------------------------------------------------------


def _bytes_of(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {
            str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
        }
    return {"": path.read_bytes()}


@pytest.mark.parametrize(
    ("fmt", "flags"),
    [
        ("oci-archive", ["--flatten"]),
        ("oci-archive", ["--flatten", "--compression", "zstd"]),
        ("oci-archive", ["--compression", "zstd", "--level", "9"]),
        ("docker-archive", ["--flatten"]),
        ("oci-dir", ["--compression", "gzip", "--level", "1"]),
    ],
)
def test_convert_is_deterministic(
    tmp_path: Path, source_image: tuple[Path, list[tuple[Any, ...]]], fmt: str, flags: list[str]
) -> None:
    source, _ = source_image
    outputs = []
    for name in ("one", "two"):
        out = tmp_path / name
        invoke("convert", "-q", "--format", fmt, *flags, str(source), str(out))
        outputs.append(_bytes_of(out))
    assert outputs[0] == outputs[1]


def test_source_date_epoch_sets_new_timestamps(
    tmp_path: Path,
    source_image: tuple[Path, list[tuple[Any, ...]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A layer with an implied parent directory, whose header ocislim must invent.
    path = oci(tmp_path / "implied.tar", Draft([layer([M("a/b/c", data=b"x")])]))
    results = {}
    for epoch in ("1700000000", "1800000000"):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
        out = tmp_path / f"out-{epoch}.tar"
        invoke("convert", "-q", "--flatten", "--compression", "none", str(path), str(out))
        results[epoch] = out.read_bytes()
        with tarfile.open(out) as archive:
            assert {m.mtime for m in archive} == {int(epoch)}
        with open_image(out) as img:
            created = img.config.history[-1]["created"]
            stream = img.layers[0].open()
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                    mtimes = {m.name: m.mtime for m in tar}
            finally:
                stream.close()
        assert created == {"1700000000": "2023-11-14T22:13:20Z",
                           "1800000000": "2027-01-15T08:00:00Z"}[epoch]  # fmt: skip
        assert (mtimes["a"], mtimes["a/b"], mtimes["a/b/c"]) == (
            int(epoch),
            int(epoch),
            1_600_000_000,
        )
    assert results["1700000000"] != results["1800000000"]


# -- atomic outputs --------------------------------------------------------------------


def _bad_diff_id(tmp_path: Path) -> Path:
    draft = Draft(LAYERS)
    draft.config["rootfs"]["diff_ids"][2] = sha(b"not this")
    return oci(tmp_path / "bad.tar", draft)


def _truncated_layer(tmp_path: Path) -> Path:
    draft = Draft(LAYERS)
    blob = draft.blobs[2][:-30]
    draft.blobs[2] = blob
    draft.descs[2].update(digest=sha(blob), size=len(blob))
    return oci(tmp_path / "truncated.tar", draft)


@pytest.mark.parametrize("broken", [_bad_diff_id, _truncated_layer], ids=["diff-id", "truncated"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("flatten", [False, True], ids=["layers", "flatten"])
def test_failed_convert_leaves_no_output_and_no_temp_files(
    tmp_path: Path, broken: Any, fmt: str, flatten: bool
) -> None:
    source = broken(tmp_path)
    before = source.read_bytes()
    outdir = tmp_path / "outputs"
    outdir.mkdir()
    result = invoke("convert", "--format", fmt, str(source), str(outdir / "out"),
                    *(["--flatten"] if flatten else []), code=4)  # fmt: skip
    assert "layer 2" in result.stderr
    assert os.listdir(outdir) == []
    assert source.read_bytes() == before


def test_failed_convert_keeps_an_existing_output(tmp_path: Path) -> None:
    source = _truncated_layer(tmp_path)
    out = tmp_path / "out.tar"
    out.write_bytes(b"previous output")
    invoke("convert", "-q", "--compression", "zstd", str(source), str(out), code=4)
    assert out.read_bytes() == b"previous output"
    assert sorted(os.listdir(tmp_path)) == ["out.tar", "truncated.tar"]


def test_convert_replaces_an_existing_output_file(
    tmp_path: Path, source_image: tuple[Path, list[tuple[Any, ...]]]
) -> None:
    source, expected = source_image
    out = tmp_path / "out.tar"
    out.write_bytes(b"previous output")
    invoke("convert", "-q", str(source), str(out))
    assert signature(out) == expected
    assert os.listdir(tmp_path) == ["out.tar"]


def test_convert_refuses_to_overwrite_its_source(tmp_path: Path) -> None:
    source = oci(tmp_path / "image.tar", Draft(LAYERS))
    before = source.read_bytes()
    result = invoke("convert", str(source), str(source), code=8)
    assert "is the source image" in result.stderr
    assert source.read_bytes() == before
    assert os.listdir(tmp_path) == ["image.tar"]


def test_oci_dir_output_needs_an_absent_or_empty_directory(
    tmp_path: Path, source_image: tuple[Path, list[tuple[Any, ...]]]
) -> None:
    source, expected = source_image
    empty = tmp_path / "empty"
    empty.mkdir()
    invoke("convert", "-q", "--format", "oci-dir", str(source), str(empty))
    assert signature(empty) == expected
    busy = tmp_path / "busy"
    write_tree({"keep": b"mine"}, busy)
    result = invoke("convert", "--format", "oci-dir", str(source), str(busy), code=8)
    assert "exists and is not an empty directory" in result.stderr
    assert os.listdir(busy) == ["keep"]


def test_truncated_gzip_layer_names_the_layer(tmp_path: Path) -> None:
    with open_image(_truncated_layer(tmp_path)) as img, pytest.raises(CompressionError) as exc:
        merge(img)
    assert str(exc.value).startswith("layer 2 (sha256:")
    assert str(exc.value).endswith("truncated gzip stream")
