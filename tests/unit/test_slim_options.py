"""Build options and the output-layer rules, the second spool pass, and the stage results."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ocislim.cliflags import options_from_flags
from ocislim.errors import InputNotFoundError, UsageError
from ocislim.image import open_image
from ocislim.image.outlayers import DOCKER_UNCOMPRESSED, check_level, output_compression
from ocislim.layers.merge import merge, spool_contents, spooled_data
from ocislim.layers.spool import Spool
from ocislim.slim.build import Planned, Traced, Verified
from ocislim.slim.options import BuildOptions, OutputOptions, check_options, rule_states
from ocislim.slim.plan import KeepPlan
from ocislim.slim.verify import Verification
from tests.synth import M, layer, oci_archive


def test_docker_archive_layers_are_uncompressed_whatever_is_asked() -> None:
    assert output_compression("docker-archive", None, "gzip").compression == "none"
    assert output_compression("docker-archive", "none", "gzip").note is None
    asked = output_compression("docker-archive", "zstd", "gzip")
    assert (asked.compression, asked.note) == ("none", DOCKER_UNCOMPRESSED)
    assert output_compression("oci-archive", "zstd", "gzip").compression == "zstd"
    assert output_compression("oci-dir", None, "gzip").compression == "gzip"
    assert output_compression("oci-archive", None, None).compression is None


def test_gzip_levels_are_checked_and_other_levels_are_not() -> None:
    for level in (0, 10):
        with pytest.raises(UsageError, match="gzip levels are 1-9"):
            check_level("gzip", level)
    check_level("gzip", 9)
    check_level("zstd", 19)
    check_level(None, 0)  # convert keeping each layer's compression


def test_build_options_are_checked_before_any_work(tmp_path: Path) -> None:
    out = OutputOptions(tmp_path / "out.tar")
    check_options(BuildOptions(out))
    with pytest.raises(UsageError, match="gzip levels"):
        check_options(BuildOptions(dataclasses.replace(out, level=15)))
    # docker-archive stores layers uncompressed, so the level of gzip does not apply
    check_options(BuildOptions(dataclasses.replace(out, fmt="docker-archive", level=15)))
    with pytest.raises(UsageError, match="unknown rule"):
        check_options(BuildOptions(out, disable_rules=("bogus",)))
    with pytest.raises(UsageError, match="--verify-rounds"):
        check_options(BuildOptions(out, verify_rounds=0))
    with pytest.raises(InputNotFoundError, match="--keep-from"):
        check_options(BuildOptions(out, keep_from=tmp_path / "absent.json"))


def test_rule_states_name_every_rule_once() -> None:
    options = options_from_flags(
        {"output": "o.tar", "fmt": "oci-archive", "include_oslibs_net": False}
    )
    states = rule_states(options)
    assert "glibc-nss" in states["disabled"] and "glibc-resolver" in states["disabled"]
    assert "python-stdlib" in states["enabled"]
    assert not set(states["enabled"]) & set(states["disabled"])
    assert options.disabled_rules >= {"glibc-nss", "glibc-resolver"}


def test_flags_become_options() -> None:
    options = options_from_flags(
        {
            "output": "o.tar",
            "fmt": "oci-dir",
            "http_probe_ports": "80, 8080",
            "new_cmd": '["a", "b c"]',
            "quiet": True,
            "no_verify": True,
        }
    )
    assert options.output.fmt == "oci-dir"
    assert options.probes.http_ports == (80, 8080)
    assert options.overrides.cmd == ["a", "b c"]
    assert options.run.show_output is False and options.verify is False
    with pytest.raises(UsageError, match="--http-probe-ports"):
        options_from_flags({"output": "o", "fmt": "oci-archive", "http_probe_ports": "http"})


def test_the_second_spool_pass_leaves_the_tree_alone(tmp_path: Path) -> None:
    lower = layer([M("etc", "dir"), M("etc/a", data=b"first"), M("etc/b", data=b"bee")])
    upper = layer([M("etc/a", data=b"second")])
    with open_image(oci_archive(tmp_path, [lower, upper])) as img:
        tree = merge(img)
        before = {e.path: e.data for e in tree.walk()}
        wanted = {(e.data.layer, e.data.ordinal) for e in tree.walk() if e.data is not None}
        with Spool(tmp_path) as spool:
            offsets = spool_contents(img, wanted, spool)
            read = spooled_data(spool, offsets)
            contents = {e.path: read(e.data).read() for e in tree.walk() if e.data is not None}
        assert {e.path: e.data for e in tree.walk()} == before
    assert contents == {"/etc/a": b"second", "/etc/b": b"bee"}


def test_stage_results_are_frozen() -> None:
    traced = Traced(None, (), ())
    planned = Planned(KeepPlan(()), ())
    verified = Verified(KeepPlan(()), None, Verification(False, 3), frozenset(), "x", (), ())
    for result, name in ((traced, "seeds"), (planned, "plan"), (verified, "plan")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, name, None)
    assert verified.failed is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        verified.verification.passed = True  # type: ignore[misc]


def test_the_flags_offer_the_formats_and_compressions_the_library_has() -> None:
    from ocislim import cliflags
    from ocislim.image.compression import ALGORITHMS
    from ocislim.image.writer import FORMATS

    assert list(FORMATS) == cliflags.FORMATS
    assert list(ALGORITHMS) == cliflags.COMPRESSIONS
