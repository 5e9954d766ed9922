"""Progress: the stream receiver (bar, periodic lines, quiet), byte counts of layers, labels."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from ocislim.cliprogress import LINE_SECONDS, StreamProgress
from ocislim.convert import ConvertOptions, convert
from ocislim.image import open_image
from ocislim.inspect.describe import describe
from ocislim.layers.merge import iter_members, merge, spool_contents
from ocislim.layers.spool import Spool
from ocislim.layers.unpack import unpack
from ocislim.progress import BYTES, Nested, counted
from tests import synth

MIB = 1 << 20


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A Progress that keeps every call."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.counts: list[tuple[str, int, int | None, str]] = []

    def stage(self, name: str, detail: str = "") -> None:
        self.stages.append(f"{name}: {detail}")

    def advance(self, what: str, done: int, total: int | None = None, unit: str = "") -> None:
        self.counts.append((what, done, total, unit))

    def note(self, message: str) -> None:
        self.stages.append(f"note: {message}")


def _feed(progress: StreamProgress, clock: Clock, total: int, step: int, dt: float) -> None:
    for done in range(0, total + 1, step):
        progress.advance("layer 1", done, total, BYTES)
        clock.now += dt


def test_plain_lines_at_each_tenth_of_a_large_layer_without_control_characters() -> None:
    out, clock = io.StringIO(), Clock()
    progress = StreamProgress(out, tty=False, clock=clock)
    progress.stage("unpack", "layer 1/1 sha256:ab")
    _feed(progress, clock, 64 * MIB, MIB, 0.01)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0] == "ocislim: unpack: layer 1/1 sha256:ab"
    percents = [int(m.group(1)) for m in re.finditer(r"\] +(\d+)%", text)]
    assert len(lines) == 1 + 10 and percents == sorted(percents) and percents[-1] == 100
    assert all(re.match(r"ocislim:   layer 1: \[[#-]{24}\] ", line) for line in lines[1:])
    assert "67.1 MB of 67.1 MB" in lines[-1]
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text)  # nothing but text and newlines


def test_plain_lines_show_rate_and_time_left_once_known() -> None:
    out, clock = io.StringIO(), Clock()
    progress = StreamProgress(out, tty=False, clock=clock)
    _feed(progress, clock, 100 * MIB, 5 * MIB, 1.0)  # 5 MiB/s
    line = out.getvalue().splitlines()[-2]  # 90%: 10 MiB to go at 5 MiB a second
    assert line.endswith("90%, 94.4 MB of 104.9 MB, 5.2 MB/s, 0:02 left"), line


def test_small_or_quick_counts_add_no_lines_but_long_ones_do_every_ten_seconds() -> None:
    out, clock = io.StringIO(), Clock()
    progress = StreamProgress(out, tty=False, clock=clock)
    _feed(progress, clock, 4 * MIB, 256 << 10, 0.01)
    for done in range(50):
        progress.advance("objects", done, 100)
    assert out.getvalue() == ""
    clock.now += LINE_SECONDS
    progress.advance("objects", 60, 100)
    assert out.getvalue() == "ocislim:   objects: 60/100\n"


def test_a_terminal_bar_is_redrawn_in_place_throttled_and_erased_when_complete() -> None:
    out, clock = io.StringIO(), Clock()
    progress = StreamProgress(out, tty=True, width=100, clock=clock)
    progress.stage("read", "layer 1/1")
    # 1000 counts in 2 s of a 1 MiB layer: the time allows ~10 redraws, the tenths ~10.
    for done in range(0, MIB, MIB // 1000):
        progress.advance("layer 1", done, MIB, BYTES)
        clock.now += 0.002
    progress.advance("layer 1", MIB, MIB, BYTES)
    progress.stage("write", "out.tar")
    text = out.getvalue()
    draws = re.findall(r"\r  (layer 1: [^\r\x1b]*)\x1b\[K", text)
    assert 10 <= len(draws) <= 25, draws
    assert all(len(d) + 2 < 100 for d in draws)  # never wraps
    assert text.startswith("ocislim: read: layer 1/1\n\r  layer 1: [")
    assert text.endswith("\r\x1b[Kocislim: write: out.tar\n")  # the bar is gone first
    assert "\n" not in text.split("\n", 1)[1].rsplit("\r\x1b[K", 1)[0]  # all in one line


def test_a_note_erases_the_bar_and_the_bar_comes_back() -> None:
    out, clock = io.StringIO(), Clock()
    progress = StreamProgress(out, tty=True, width=80, clock=clock)
    progress.advance("objects", 1, 10)
    progress.note("hello")
    progress.advance("objects", 2, 10)
    assert out.getvalue() == (
        "\r  objects: 1/10\x1b[K\r\x1b[Kocislim: note: hello\n\r  objects: 2/10\x1b[K"
    )


def test_quiet_writes_nothing() -> None:
    out, clock = io.StringIO(), Clock()
    for tty in (True, False):
        progress = StreamProgress(out, quiet=True, tty=tty, clock=clock)
        progress.stage("unpack", "layer 1/1")
        progress.note("x")
        _feed(progress, clock, 64 * MIB, MIB, 20.0)
    assert out.getvalue() == ""


def test_nested_stages_keep_the_outer_name_once() -> None:
    seen = Recorder()
    nested = Nested(seen, "unpack")
    nested.stage("unpack", "layer 1/2 sha256:ab")
    nested.stage("round", "1/3")
    nested.advance("layer 1", 5, 10, BYTES)
    assert seen.stages == ["unpack: layer 1/2 sha256:ab", "unpack: round 1/3"]
    assert seen.counts == [("layer 1", 5, 10, BYTES)]


# Incompressible and four times what the stream reads ahead (8 MiB), so the count of
# compressed bytes read must move while the layer is read, however fast the machine.
BIG = 32 * MIB


@pytest.fixture(scope="module")
def image_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    big = synth.M("big", data=os.urandom(BIG))
    small = synth.M("etc/hostname", data=b"demo\n")
    tmp = tmp_path_factory.mktemp("progress")
    return synth.oci_archive(tmp, [synth.layer([big]), synth.layer([small])])


def test_reading_a_layer_reports_compressed_bytes_up_to_its_descriptor_size(
    image_path: Path,
) -> None:
    with open_image(image_path) as image:
        for layer in image.layers:
            seen = Recorder()
            for _ in iter_members(layer, seen):
                pass
            what = f"layer {layer.index + 1}"
            assert {c[0] for c in seen.counts} == {what}
            assert {(c[2], c[3]) for c in seen.counts} == {(layer.descriptor.size, BYTES)}
            done = [c[1] for c in seen.counts]
            assert done == sorted(set(done)) and done[-1] == layer.descriptor.size
        assert len(done) >= 1
        first = Recorder()
        for _ in iter_members(image.layers[0], first):
            pass
        assert len(first.counts) >= 2  # it moved within the layer


def test_stage_labels_say_unpack_when_extracting_and_read_otherwise(
    image_path: Path, tmp_path: Path
) -> None:
    with open_image(image_path) as image:
        digests = [str(layer.descriptor.digest) for layer in image.layers]
        read = [f"read: layer {i}/2 {d}" for i, d in enumerate(digests, 1)]
        seen = Recorder()
        describe(image, seen)
        assert seen.stages == read
        seen = Recorder()
        merge(image, progress=seen)
        assert seen.stages == read
        seen = Recorder()
        with Spool(tmp_path) as spool:
            spool_contents(image, {(1, 0)}, spool, seen)
        assert seen.stages == read[1:]
        seen = Recorder()
        unpack(image, tmp_path / "rootfs", Nested(seen, "unpack"))
        assert [s for s in seen.stages if not s.startswith("note")] == [
            f"unpack: layer {i}/2 {d}" for i, d in enumerate(digests, 1)
        ]


def test_convert_reports_bytes_while_copying_or_recompressing_a_layer(
    image_path: Path, tmp_path: Path
) -> None:
    source = image_path
    for compression in ("gzip", "zstd"):  # gzip: copied as it is (verified); zstd: recompressed
        seen = Recorder()
        with open_image(source) as image:
            sizes = [layer.descriptor.size for layer in image.layers]
            convert(
                image,
                tmp_path / f"out-{compression}.tar",
                ConvertOptions(compression=compression),
                seen,
            )
        assert [s for s in seen.stages if s.startswith("write: layer")] == [
            f"write: layer 1/2 {compression}",
            f"write: layer 2/2 {compression}",
        ]
        for number, size in enumerate(sizes, 1):
            done = [c[1] for c in seen.counts if c[0] == f"layer {number}" and c[3] == BYTES]
            assert done and done[-1] == size
        assert len([c for c in seen.counts if c[0] == "layer 1"]) >= 2


def test_counted_reports_every_n_items_and_ends_at_what_it_did() -> None:
    seen = Recorder()
    assert list(counted(range(600), seen, "entries", 600, every=256)) == list(range(600))
    assert seen.counts == [
        ("entries", 256, 600, ""),
        ("entries", 512, 600, ""),
        ("entries", 600, 600, ""),
    ]


def test_a_flattening_convert_counts_the_entries_it_writes(
    image_path: Path, tmp_path: Path
) -> None:
    seen = Recorder()
    with open_image(image_path) as image:
        convert(image, tmp_path / "flat.tar", ConvertOptions(flatten=True), seen)
    written = [c for c in seen.counts if c[0] == "entries"]
    assert written, seen.counts
    last = written[-1]
    assert last[1] == last[2] and last[1] > 1  # ends at the tree's size
