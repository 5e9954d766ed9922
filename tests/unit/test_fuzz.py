"""Fuzz archive and JSON parsing: fixed seed, fixed budget (targets: tests/fuzz_targets.py).

The same targets run longer, with fresh seeds, from ``scripts/fuzz.py``.
"""

from __future__ import annotations

import io
import tarfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_targets
from tests.fuzz_targets import mutations


def fixed(examples: int) -> settings:
    """A fixed seed (derandomized) and budget; no example database, no deadline."""
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=examples,
        suppress_health_check=[HealthCheck.too_slow],
    )


def test_seed_layer_is_a_valid_tar_with_sparse_members() -> None:
    with tarfile.open(fileobj=io.BytesIO(fuzz_targets.SEED)) as tar:
        members = {m.name: m for m in tar}
    assert members["sp"].issparse() and members["px"].issparse()
    assert "tail" in members


@fixed(200)
@given(mutations)
def test_fuzz_layer_unpack(changes: list[tuple[str, int, bytes]]) -> None:
    fuzz_targets.layer_target(changes)


@fixed(100)
@given(st.sampled_from(["index", "manifest", "config"]), mutations)
def test_fuzz_json_open_and_unpack(which: str, changes: list[tuple[str, int, bytes]]) -> None:
    fuzz_targets.json_target(which, changes)


@fixed(12)
@given(st.sampled_from(["inspect", "unpack", "convert"]), mutations)
def test_fuzz_cli(command: str, changes: list[tuple[str, int, bytes]]) -> None:
    fuzz_targets.cli_target(command, changes, timeout=60)
