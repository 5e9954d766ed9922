"""Image names: plain paths, stdin, transports (oci-archive:, docker-archive:, oci:, dir:),
compressed archives, skopeo's dir format, outputs named with a transport, default tags
and unreadable inputs.  Small synthetic images; the CLI runs in a subprocess where a
real pipe or a real other user matters."""

from __future__ import annotations

import bz2
import json
import lzma
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ocislim.cli import main
from ocislim.errors import InputNotFoundError, RefNotFoundError, UsageError
from ocislim.image import open_image
from ocislim.image.mutate import default_tag
from ocislim.image.transport import (
    InputName,
    index_ref,
    merge_ref,
    parse_input,
    parse_output,
    resolve_output,
)
from tests.clirun import (
    PLAIN_USER,
    REPO,
    default_sigint,
    plain_user_dir,
    plain_user_python,
    run_cli,
)
from tests.oci_build import INDEX, Draft, compress, oci, write_layout
from tests.synth import M, docker_archive, layer, sha

LAYERS = [layer([M("etc", "dir"), M("etc/hello", data=b"hi\n")])]


def draft(tag: str = "a") -> Draft:
    return Draft([layer([M("who", data=tag.encode())])])


def invoke(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def cli(*args: str, stdin: bytes | None = None, tmpdir: Path) -> subprocess.CompletedProcess[bytes]:
    """``ocislim ARGS`` in a subprocess, stdin a real pipe (or /dev/null), TMPDIR ``tmpdir``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)}
    return subprocess.run(
        [sys.executable, "-m", "ocislim", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=env,
        check=False,
        timeout=300,
    )


# --- names ------------------------------------------------------------------------------


def test_plain_paths_and_stdin_names() -> None:
    assert parse_input("image.tar") == InputName("image.tar", Path("image.tar"))
    assert parse_input("./oci:x").transport is None  # the escape for a file named oci:x
    assert parse_input("unknown:thing").path == Path("unknown:thing")
    for name in ("-", "/dev/stdin"):
        parsed = parse_input(name)
        assert parsed.stdin and parsed.path == Path("/dev/stdin") and parsed.ref is None
    assert parse_input("oci-archive:-").stdin


def test_remote_transports_say_how_to_get_the_image() -> None:
    with pytest.raises(UsageError, match=r"skopeo copy docker://busybox oci-archive:image\.tar"):
        parse_input("docker://busybox")
    with pytest.raises(UsageError, match="local images only"):
        parse_input("containers-storage:localhost/app:1")


def test_transport_names_split_like_skopeo() -> None:
    assert parse_input("oci-archive:/a/b.tar") == InputName(
        "oci-archive:/a/b.tar", Path("/a/b.tar"), "oci-archive", None
    )
    assert parse_input("oci:/x/myapp:v2").ref == "v2"
    assert parse_input("oci:/x/myapp:v2").path == Path("/x/myapp")
    named = parse_input("docker-archive:/a.tar:docker.io/library/busybox:latest")
    assert (named.path, named.ref) == (Path("/a.tar"), "docker.io/library/busybox:latest")
    assert parse_input("docker-archive:/a.tar:@1").ref == "@1"
    assert parse_input("oci:/x/myapp:").ref is None
    assert parse_input("dir:/x/with:colon") == InputName(
        "dir:/x/with:colon", Path("/x/with:colon"), "dir", None
    )
    for bad in ("oci:", "oci-archive::ref", "dir:"):
        with pytest.raises(UsageError):
            parse_input(bad)


def test_a_path_with_colons_is_taken_when_it_exists(tmp_path: Path) -> None:
    odd = tmp_path / "my:image.tar"
    odd.write_bytes(b"")
    parsed = parse_input(f"oci-archive:{odd}:v1")
    assert (parsed.path, parsed.ref) == (odd, "v1")
    assert parse_input(f"oci-archive:{odd}").ref is None


def test_index_refs_and_ref_conflicts() -> None:
    assert index_ref("@0") == 0 and index_ref("@12") == 12
    assert index_ref("v1") is None and index_ref("@x") is None and index_ref(None) is None
    name = parse_input("oci:/d:v1")
    assert merge_ref(name, None) == "v1"
    assert merge_ref(name, "v1") == "v1"
    assert merge_ref(parse_input("/d"), "v2") == "v2"
    with pytest.raises(UsageError, match="names 'v1' but --ref asks for 'v2'"):
        merge_ref(name, "v2")


def test_output_names_choose_format_and_tag() -> None:
    target = resolve_output("oci:/out/layout:v2", None, None)
    assert (target.path, target.fmt, target.tag) == (Path("/out/layout"), "oci-dir", "v2")
    target = resolve_output("docker-archive:/o.tar:repo/app:1", None, None)
    assert (target.fmt, target.tag) == ("docker-archive", "repo/app:1")
    assert resolve_output("oci-archive:/o.tar", "oci-archive", "x:1").tag == "x:1"
    assert resolve_output("plain.tar", None, None).fmt == "oci-archive"
    assert resolve_output("plain", "oci-dir", "t").fmt == "oci-dir"
    assert parse_output("oci:/o").tag is None
    with pytest.raises(UsageError, match="writes oci-dir but --format asks for docker-archive"):
        resolve_output("oci:/o:v1", "docker-archive", None)
    with pytest.raises(UsageError, match="tags the image 'v1' but --tag asks for 'v2'"):
        resolve_output("oci:/o:v1", None, "v2")
    with pytest.raises(UsageError, match="cannot write to dir:"):
        parse_output("dir:/o")
    with pytest.raises(UsageError, match="stdout"):
        parse_output("-")


# --- reading ----------------------------------------------------------------------------


def two_image_layout(tmp_path: Path, as_dir: bool) -> Path:
    images = [draft("a").blobs_and_descriptor(ref="v1"), draft("b").blobs_and_descriptor(ref="v2")]
    return write_layout(tmp_path / ("layout" if as_dir else "two.tar"), images, as_dir=as_dir)


def who(image_name: str, **select: Any) -> bytes:
    """The content of /who in the selected image (its first layer)."""
    with open_image(image_name, **select) as img:
        stream = img.layers[0].open()
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    data = tar.extractfile(member) if member.name == "who" else None
                    if data is not None:
                        return data.read()
        finally:
            stream.close()
    raise AssertionError("no /who")


@pytest.mark.parametrize("as_dir", [False, True])
def test_transport_refs_select_like_ref(tmp_path: Path, as_dir: bool) -> None:
    path = two_image_layout(tmp_path, as_dir)
    transport = "oci" if as_dir else "oci-archive"
    assert who(f"{transport}:{path}:v2") == b"b"
    assert who(f"{transport}:{path}:@0") == b"a"
    assert who(f"{transport}:{path}", ref="@1") == b"b"
    assert who(str(path), ref="v1") == b"a"
    with pytest.raises(RefNotFoundError, match="no image @2; choose @0 to @1"):
        open_image(f"{transport}:{path}:@2")
    with pytest.raises(UsageError):
        open_image(f"{transport}:{path}:v1", ref="v2")
    result = invoke("inspect", f"{transport}:{path}:v1", "--ref", "v2", code=2)
    assert "names 'v1' but --ref asks for 'v2'" in result.output
    name = f"{transport}:{path}:v1"
    result = invoke("diff", str(path), name, "--ref-a", "v1", "--ref-b", "v2", code=2)
    assert "names 'v1' but --ref-b asks for 'v2'" in result.output


def test_docker_archive_index_refs(tmp_path: Path) -> None:
    archive = docker_archive(tmp_path, LAYERS, tag="repo/app:1")
    with open_image(f"docker-archive:{archive}:@0") as img:
        assert img.ref_name == "repo/app:1" and img.format == "docker-archive"
    with open_image(f"docker-archive:{archive}:repo/app:1") as img:
        assert img.name == f"docker-archive:{archive}:repo/app:1"


def skopeo_dir(dest: Path, d: Draft) -> Path:
    """``d`` in skopeo's dir format (version 1.1): blobs named by hex digest."""
    blobs, desc = d.blobs_and_descriptor()
    dest.mkdir()
    for digest, data in blobs.items():
        if digest == desc["digest"]:
            (dest / "manifest.json").write_bytes(data)
        else:
            (dest / digest.split(":")[1]).write_bytes(data)
    (dest / "version").write_text("Directory Transport Version: 1.1\n")
    return dest


def test_skopeo_dir_format_is_detected_by_content(tmp_path: Path) -> None:
    d = draft("dir")
    path = skopeo_dir(tmp_path / "copied", d)
    for name in (str(path), f"dir:{path}"):
        with open_image(name) as img:
            assert img.format == "dir"
            assert str(img.manifest.config.digest) == sha(d.config_bytes())
    assert who(f"dir:{path}") == b"dir"
    (path / sha(d.blobs[0]).split(":")[1]).unlink()
    with pytest.raises(Exception, match="missing"):
        who(str(path))


def test_skopeo_dir_written_with_all_holds_an_index(tmp_path: Path) -> None:
    """``skopeo copy --all ... dir:``: manifest.json is the index, instances HEX.manifest.json."""
    dest = tmp_path / "all"
    dest.mkdir()
    manifests = []
    for arch in ("amd64", "arm64"):
        d = Draft([layer([M("who", data=arch.encode())])], architecture=arch)
        blobs, desc = d.blobs_and_descriptor(platform={"os": "linux", "architecture": arch})
        for digest, data in blobs.items():
            suffix = ".manifest.json" if digest == desc["digest"] else ""
            (dest / (digest.split(":")[1] + suffix)).write_bytes(data)
        manifests.append(desc)
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}
    (dest / "manifest.json").write_text(json.dumps(index))
    (dest / "version").write_text("Directory Transport Version: 1.1\n")
    assert who(f"dir:{dest}", platform="linux/arm64") == b"arm64"
    assert who(str(dest), platform="linux/amd64") == b"amd64"


@pytest.mark.parametrize("algorithm", ["gzip", "zstd"])
def test_compressed_archives_are_spooled_and_left_alone(
    tmp_path: Path, algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr("tempfile.tempdir", None)
    archive = two_image_layout(tmp_path, as_dir=False)
    packed = tmp_path / "packed"  # detected by magic, not by name
    packed.write_bytes(compress(archive.read_bytes(), algorithm))
    before = packed.read_bytes()
    assert who(f"oci-archive:{packed}:v2") == b"b"
    assert packed.read_bytes() == before
    assert os.listdir(spool) == []
    broken = tmp_path / "broken"
    broken.write_bytes(before[: len(before) // 2])
    with pytest.raises(Exception, match=r"truncated|corrupt|not a readable tar"):
        open_image(str(broken))
    assert os.listdir(spool) == []


def test_other_compressions_are_named(tmp_path: Path) -> None:
    archive = oci(tmp_path / "image.tar", draft()).read_bytes()
    for name, data in (("xz", lzma.compress(archive)), ("bzip2", bz2.compress(archive))):
        packed = tmp_path / f"image.{name}"
        packed.write_bytes(data)
        result = invoke("inspect", str(packed), code=4)
        assert f"{packed}: {name}-compressed archive; ocislim reads gzip and zstd" in result.output


@pytest.mark.parametrize("algorithm", ["none", "gzip", "zstd"])
def test_stdin_is_read_once_and_nothing_stays_behind(tmp_path: Path, algorithm: str) -> None:
    archive = oci(tmp_path / "image.tar", draft("in"), ref="repo/app:3")
    data = compress(archive.read_bytes(), algorithm)
    spool = tmp_path / "spool"
    spool.mkdir()
    for name in ("-", "/dev/stdin", "oci-archive:-:repo/app:3"):
        done = cli("inspect", "--json", name, stdin=data, tmpdir=spool)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["reference"] == "repo/app:3"
    assert os.listdir(spool) == []
    cut = data[:1500] if algorithm == "none" else data[:-12]  # inside a member / the stream
    done = cli("inspect", "-", stdin=cut, tmpdir=spool)
    assert done.returncode == 4, done.stderr
    assert os.listdir(spool) == []


def _spool_of(pid: int, place: Path) -> str | None:
    """The link of ``pid``'s descriptor open on a file in ``place``, if any."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{place}/"):
            return target
    return None


def test_ctrl_c_while_spooling_stdin_leaves_nothing(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    archive = oci(tmp_path / "image.tar", draft()).read_bytes()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(spool)}
    with subprocess.Popen(
        [sys.executable, "-m", "ocislim", "inspect", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=default_sigint,
    ) as proc:
        assert proc.stdin is not None
        proc.stdin.write(archive[:2048])  # and keep the pipe open: spooling waits for more
        proc.stdin.flush()
        found = None
        for _ in range(600):
            found = _spool_of(proc.pid, spool)
            if found is not None or proc.poll() is not None:
                break
            time.sleep(0.05)
        # While in use the spool already has no name: nothing to remove, whatever happens.
        assert found is not None and found.endswith(" (deleted)"), found
        assert os.listdir(spool) == []
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    assert os.listdir(spool) == []


def test_stdin_redirected_from_a_file_and_a_fifo(tmp_path: Path) -> None:
    archive = oci(tmp_path / "image.tar", draft("in"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    with open(archive, "rb") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "ocislim", "inspect", "--json", "-"],
            stdin=fh,
            capture_output=True,
            env=env,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with subprocess.Popen(
        [sys.executable, "-m", "ocislim", "inspect", "--json", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        with open(fifo, "wb") as writer:
            writer.write(compress(archive.read_bytes(), "gzip"))
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out)["format"] == "oci-archive"


# --- default tags -----------------------------------------------------------------------


def test_default_tag_of_a_tag_only_ref_takes_the_source_name(tmp_path: Path) -> None:
    layout = oci(tmp_path / "myapp", draft(), as_dir=True, ref="v2")
    with open_image(f"oci:{layout}:v2") as img:
        assert default_tag(img) == "localhost/myapp.slim:v2"
    other = tmp_path / "other"
    other.mkdir()
    latest = oci(other / "My App.oci.tar.gz", draft(), ref="latest")
    with open_image(latest) as img:
        assert default_tag(img) == "localhost/my-app.slim:latest"
    named = oci(tmp_path / "n.tar", draft(), ref="example.com/team/app:1.2")
    with open_image(named) as img:
        assert default_tag(img) == "example.com/team/app.slim:1.2"
    skopeo = skopeo_dir(tmp_path / "copied", draft())
    with open_image(f"dir:{skopeo}") as img:
        assert default_tag(img) == "localhost/copied.slim:latest"


def test_default_tag_of_stdin(tmp_path: Path) -> None:
    script = (
        "from ocislim.image import open_image\n"
        "from ocislim.image.mutate import default_tag\n"
        "with open_image('-') as img: print(default_tag(img))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    for ref, tag in (("v9", "localhost/image.slim:v9"), ("repo/x:1", "repo/x.slim:1")):
        archive = oci(tmp_path / f"{ref.replace('/', '_')}.tar", draft(), ref=ref)
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=archive.read_bytes(),
            capture_output=True,
            env=env,
            check=True,
        )
        assert done.stdout.decode().strip() == tag


# --- writing ----------------------------------------------------------------------------


def test_output_transports_write_the_format_and_tag(tmp_path: Path) -> None:
    source = oci(tmp_path / "src.tar", draft("w"), ref="repo/src:1")
    invoke("convert", "-q", str(source), f"docker-archive:{tmp_path / 'd.tar'}:repo/out:7")
    with tarfile.open(tmp_path / "d.tar") as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        assert json.loads(member.read())[0]["RepoTags"] == ["repo/out:7"]
    invoke("convert", "-q", str(source), f"oci:{tmp_path / 'layout'}:v1")
    index = json.loads((tmp_path / "layout" / "index.json").read_bytes())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    result = invoke(
        "convert", str(source), f"oci:{tmp_path / 'x'}:v1", "--format", "oci-archive", code=2
    )
    assert "writes oci-dir but --format asks for oci-archive" in result.output
    result = invoke("convert", str(source), f"oci:{tmp_path / 'x'}:v1", "--tag", "v2", code=2)
    assert "--tag asks for 'v2'" in result.output
    assert not (tmp_path / "x").exists()


def test_an_existing_layout_gains_images(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    for tag in ("a", "b"):
        source = oci(tmp_path / f"{tag}.tar", draft(tag))
        invoke("convert", "-q", str(source), f"oci:{layout}:{tag}")
    assert who(f"oci:{layout}:a") == b"a" and who(f"oci:{layout}:b") == b"b"
    # From a layout into itself, under a tag it already has: the entry is replaced.
    invoke("convert", "-q", f"oci:{layout}:b", f"oci:{layout}:a")
    refs = [
        m["annotations"]["org.opencontainers.image.ref.name"]
        for m in json.loads((layout / "index.json").read_bytes())["manifests"]
    ]
    assert refs == ["b", "a"]
    assert who(f"oci:{layout}:a") == b"b"
    assert not [n for n in os.listdir(layout) if "ocislim" in n]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    result = invoke("convert", str(tmp_path / "a.tar"), f"oci:{busy}:x", code=8)
    assert "exists and is not an empty directory" in result.output
    assert os.listdir(busy) == ["keep"]


# --- unreadable inputs ------------------------------------------------------------------


def test_unreadable_inputs_exit_3_naming_the_input() -> None:
    python, source = plain_user_python()
    base = plain_user_dir("ocislim-unreadable-")
    try:
        archive = oci(base / "locked.tar", draft())
        layout = oci(base / "locked-layout", draft(), as_dir=True)
        blob_layout = oci(base / "layout", draft(), as_dir=True)
        blob = next(p for p in (blob_layout / "blobs" / "sha256").iterdir())
        for path in (archive, layout, blob):
            os.chmod(path, 0)
        cases = [
            (str(archive), f"{archive}: permission denied"),
            (f"oci:{layout}", f"{layout}: permission denied"),
            (str(blob_layout), f"{blob}: permission denied"),
        ]
        for name, message in cases:
            done = run_cli("inspect", name, python=python, user=PLAIN_USER, pythonpath=source)
            assert done.code == 3, done.stderr
            assert done.error == f"ocislim: error: {message}"
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_missing_inputs_exit_3(tmp_path: Path) -> None:
    for name in (str(tmp_path / "nope.tar"), f"oci:{tmp_path / 'nope'}:v1", f"dir:{tmp_path}/x"):
        result = invoke("inspect", name, code=3)
        assert "no such file or directory" in result.output
    with pytest.raises(InputNotFoundError):
        open_image(tmp_path / "absent")
