"""Fuzz targets for archive and JSON parsing, shared by the test suite and ``scripts/fuzz.py``.

Each target takes a mutation drawn by hypothesis, builds a small image with
it (no ocislim code involved in writing), and drives the real entry points:
``open_image`` + ``unpack`` in-process (fast, many examples) or the real CLI
(``inspect``/``unpack``/``convert``) in a subprocess.  A run fails the target
when it raises anything but an :class:`OcislimError`, exits 1 or prints a
traceback, takes longer than its timeout, or changes anything outside its
destination.  Layers are stored uncompressed (with digests and diff_ids
recomputed) so a mutation reaches the tar reader instead of a digest check.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from ocislim.errors import OcislimError
from ocislim.image import open_image
from ocislim.layers.unpack import unpack
from tests import rawtar
from tests.clirun import REPO, snapshot
from tests.oci_build import Draft, jdump, oci, write_layout
from tests.synth import M, layer

RUN_TIMEOUT = 10.0  # seconds for one in-process run; real ones take milliseconds


def seed_layer() -> bytes:
    """A small layer using most of what the reader handles: PAX, links, sparse, GNU names."""
    pax_part = layer(
        [
            M("etc", "dir"),
            M("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
            M("etc/link", "symlink", link="passwd"),
            M("etc/hard", "hardlink", link="etc/passwd"),
            M("x", data=b"attrs", pax={"SCHILY.xattr.user.k": "v", "mtime": "1.5"}),
            M("etc/.wh.gone"),
        ]
    )
    extra = (
        rawtar.gnu_sparse("sp", 8192, [(0, 512), (4096, 512)], b"a" * 512 + b"b" * 512)
        + rawtar.pax_sparse("px", 8192, [(1024, 512)], b"p" * 512)
        + rawtar.regular("tail", b"end")
    )
    return rawtar.archive(_strip_end(pax_part), extra)


def _strip_end(archive: bytes) -> bytes:
    """The members of ``archive`` without its end-of-archive zero blocks."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        last = tar.getmembers()[-1]
    end = last.offset_data + -(-last.size // rawtar.BLOCK) * rawtar.BLOCK
    return archive[:end]


# A mutation: (kind, position, payload).  Positions are taken modulo the length.
SPECIAL_NUMBERS = [
    rawtar.base256(2**63 - 1),
    rawtar.base256(2**40),
    rawtar.base256(-1),
    rawtar.base256(-512),
    b"77777777777\0",
    b"\xff" * 12,
    b"\0" * 12,
    b"1e20\0       ",
]
mutation = st.one_of(
    st.tuples(st.just("byte"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("number"), st.integers(0, 1 << 20), st.sampled_from(SPECIAL_NUMBERS)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 20), st.just(b"")),
    st.tuples(
        st.just("insert"),
        st.integers(0, 1 << 20),
        st.sampled_from(
            [
                rawtar.pax({"size": "99999999999999999999"}),
                rawtar.pax({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}),
                rawtar.header("z", b"Z", 1 << 40),
                rawtar.header("l", tarfile.SYMTYPE, 8 << 30, linkname="x"),
                rawtar.header("../../escape"),
                b"\0" * 512,
            ]
        ),
    ),
)
mutations = st.lists(mutation, min_size=1, max_size=4)


def mutate(data: bytes, changes: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, position, payload in changes:
        at = position % max(len(out), 1)
        if kind == "byte":
            out[at : at + len(payload)] = payload
        elif kind == "number":
            # Aim at a numeric field of the header block holding ``at``.
            block = at - at % rawtar.BLOCK
            field = (124, 100, 108, 116, 136, 483, 386, 398)[at % 8]
            out[block + field : block + field + 12] = payload
            block_bytes = out[block : block + rawtar.BLOCK]
            if len(block_bytes) == rawtar.BLOCK:
                block_bytes[148:156] = b" " * 8
                block_bytes[148:156] = b"%06o\0 " % sum(block_bytes)
                out[block : block + rawtar.BLOCK] = block_bytes
        elif kind == "cut":
            del out[at:]
        else:
            at -= at % rawtar.BLOCK
            out[at:at] = payload
    return bytes(out)


def _outside(box: Path, dest: Path) -> dict[str, tuple[object, ...]]:
    """Everything in ``box`` but ``dest`` (the box itself changes when ``dest`` comes and goes)."""
    found = snapshot(box, exclude=(dest,))
    found.pop(".")
    return found


class _Hung(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`AssertionError` in the main thread when the block runs too long."""

    def alarm(signum: int, frame: object) -> None:
        raise _Hung(f"did not finish in {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Hung as exc:
        raise AssertionError(str(exc)) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def unpack_in_process(image: Path, box: Path) -> None:
    """open_image + unpack into ``box/dest``; only ocislim errors; nothing else in ``box`` moves."""
    before = _outside(box, box / "dest")
    try:
        with time_limit(RUN_TIMEOUT), open_image(image) as img:
            unpack(img, box / "dest")
    except OcislimError:
        assert not (box / "dest").exists(), "a failed unpack left its destination"
    assert _outside(box, box / "dest") == before, "a write outside the destination"
    assert not [n for n in os.listdir(box) if "ocislim-" in n], "scratch left behind"


@contextlib.contextmanager
def fuzz_box() -> Iterator[Path]:
    """A fresh directory holding a canary, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ocislim-fuzzbox") as tmp:
        box = Path(tmp)
        (box / "canary").write_bytes(b"canary")
        yield box
        with contextlib.suppress(OSError):
            subprocess.run(["chmod", "-R", "u+rwX", str(box)], check=False)


def layer_target(changes: list[tuple[str, int, bytes]]) -> None:
    raw = mutate(SEED, changes)
    with fuzz_box() as box:
        image = oci(box / "image.tar", Draft([raw], "none"))
        unpack_in_process(image, box)


def _json_mutants(obj: Any, changes: list[tuple[str, int, bytes]]) -> bytes:
    return mutate(jdump(obj), changes)


def json_target(which: str, changes: list[tuple[str, int, bytes]]) -> None:
    """Mutate the index, a manifest or a config (digests kept consistent) and open/unpack."""
    draft = Draft([layer([M("f", data=b"x")])], "none")
    with fuzz_box() as box:
        if which == "config":
            raw_config = _json_mutants(draft.config, changes)
            draft.config_bytes = lambda: raw_config  # type: ignore[method-assign]
            image = oci(box / "image.tar", draft)
        elif which == "manifest":
            draft.manifest_override = _json_mutants(json.loads(draft.manifest_bytes()), changes)
            image = oci(box / "image.tar", draft)
        else:
            blobs, desc = draft.blobs_and_descriptor()
            index = _json_mutants({"schemaVersion": 2, "manifests": [desc]}, changes)
            image = write_layout(box / "image.tar", [(blobs, desc)], index=index)
        unpack_in_process(image, box)


def cli_target(command: str, changes: list[tuple[str, int, bytes]], timeout: float) -> None:
    """The real CLI on a mutated layer: never exit 1 or a traceback, one error line, in time."""
    raw = mutate(SEED, changes)
    with fuzz_box() as box:
        image = oci(box / "image.tar", Draft([raw], "none"))
        before = _outside(box, box / "out")
        args = {
            "inspect": ["inspect", str(image)],
            "unpack": ["unpack", "-q", str(image), str(box / "out")],
            "convert": ["convert", "-q", "--flatten", str(image), str(box / "out")],
        }[command]
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "ocislim", *args],
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ocislim {command} did not finish in {timeout} s") from None
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode != 1, proc.stderr
        if proc.returncode:
            errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ocislim: error: ")]
            assert len(errors) == 1, proc.stderr
        assert _outside(box, box / "out") == before, "a write outside the output"


SEED = seed_layer()
