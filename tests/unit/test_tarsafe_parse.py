"""BoundedTarInfo.frombuf against tarfile's own parser, header block by header block.

The fast parser must give every attribute tarfile gives, and raise the same
exception class where tarfile raises, for honest headers of every format and for
blocks mutated at random (a fixed seed, so a failure reproduces).
"""

from __future__ import annotations

import collections
import random
import tarfile

import pytest

from ocislim.image.tarsafe import BoundedTarInfo

_ATTRS = (
    "name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname",
    "uname", "gname", "devmajor", "devminor",
)  # fmt: skip


def _parse(cls: type[tarfile.TarInfo], buf: bytes) -> tuple[object, ...]:
    try:
        info = cls.frombuf(buf, "utf-8", "surrogateescape")
    except Exception as exc:  # the class is what is compared
        return ("error", type(exc))
    structs = getattr(info, "_sparse_structs", None)
    return ("ok", *(getattr(info, a) for a in _ATTRS), structs)


def _honest_blocks() -> list[bytes]:
    blocks = []
    kinds = [
        (tarfile.REGTYPE, ""), (tarfile.AREGTYPE, ""), (tarfile.DIRTYPE, ""),
        (tarfile.SYMTYPE, "../target"), (tarfile.LNKTYPE, "usr/bin/a"),
        (tarfile.CHRTYPE, ""), (tarfile.BLKTYPE, ""), (tarfile.FIFOTYPE, ""),
        (tarfile.CONTTYPE, ""),
    ]  # fmt: skip
    names = ["a", "usr/bin/env", "dir/", "x" * 99, "p/" * 60 + "long", "caf\u00e9", "./odd//name"]
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        for kind, link in kinds:
            for name in names:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = kind, link
                info.mode, info.uid, info.gid, info.mtime = 0o4755, 1000, 100, 1700000000
                info.uname, info.gname = "user", "group"
                info.devmajor, info.devminor = 8, 1
                info.size = 1234 if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
                try:
                    raw = info.tobuf(fmt, "utf-8", "surrogateescape")
                except ValueError:
                    continue
                blocks += [raw[i : i + 512] for i in range(0, len(raw), 512)]
    big = tarfile.TarInfo("big")
    big.size, big.uid, big.mtime = 2**40, 2**30, -5
    blocks.append(big.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")[:512])
    blocks.append(bytes(512))
    blocks.append(b"")
    blocks.append(b"abc")
    return blocks


def test_honest_headers_parse_as_tarfile_parses_them() -> None:
    for buf in _honest_blocks():
        assert _parse(BoundedTarInfo, buf) == _parse(tarfile.TarInfo, buf), buf[:100]


def test_a_pax_header_stream_reads_the_same_members() -> None:
    import io

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(20):
            info = tarfile.TarInfo(f"dir/{'n' * (i * 13)}-{i}")
            info.size = i
            info.pax_headers = {"SCHILY.xattr.user.k": f"v{i}"}
            info.uname = "\u00fcser"
            tar.addfile(info, io.BytesIO(bytes(i)))

    def members(cls: type[tarfile.TarInfo]) -> list[tuple[object, ...]]:
        with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r|", tarinfo=cls) as tar:
            return [(*(getattr(m, a) for a in _ATTRS), m.pax_headers, m.offset_data) for m in tar]

    assert members(BoundedTarInfo) == members(tarfile.TarInfo)


@pytest.mark.parametrize("seed", range(8))
def test_mutated_headers_parse_or_fail_as_tarfile_does(seed: int) -> None:
    rng = random.Random(seed)
    honest = [b for b in _honest_blocks() if len(b) == 512 and b.strip(b"\0")]
    interesting = b"\0 \x80\xff01234567789/.\n\t\x1fx"
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(3000):
        buf = bytearray(rng.choice(honest))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(512)
            buf[pos] = rng.choice(interesting) if rng.random() < 0.7 else rng.randrange(256)
        if rng.random() < 0.6:  # most mutations keep a valid checksum, to reach the fields
            buf[148:156] = b"        "
            buf[148:156] = b"%06o\0 " % sum(buf)
        block = bytes(buf)
        expected = _parse(tarfile.TarInfo, block)
        outcomes[str(expected[0] if expected[0] == "ok" else expected[1])] += 1
        assert _parse(BoundedTarInfo, block) == expected, block
    # The corpus reaches parsed members and several kinds of refusal.
    assert outcomes["ok"] > 1000 and len(outcomes) >= 2, outcomes
