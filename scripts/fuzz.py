"""A longer fuzz run of archive and JSON parsing than the test suite's fixed budget.

    .venv/bin/python scripts/fuzz.py [--examples N] [--cli N] [--seed S]

Runs the targets of ``tests/fuzz_targets.py`` (open_image + unpack in-process on
mutated layers and JSON documents, then the real CLI) with ``N`` examples each
and a fresh seed unless ``--seed`` is given.  Exits 1 on the first failure, after
hypothesis prints the smallest failing mutation.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests import fuzz_targets
from tests.fuzz_targets import mutations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--cli", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    chosen = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"fuzz: seed {chosen}", flush=True)

    def budget(n: int) -> settings:
        return settings(
            max_examples=n,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )

    @seed(chosen)
    @budget(args.examples)
    @given(mutations)
    def layers(changes: list[tuple[str, int, bytes]]) -> None:
        fuzz_targets.layer_target(changes)

    @seed(chosen)
    @budget(args.examples)
    @given(st.sampled_from(["index", "manifest", "config"]), mutations)
    def json_documents(which: str, changes: list[tuple[str, int, bytes]]) -> None:
        fuzz_targets.json_target(which, changes)

    @seed(chosen)
    @budget(args.cli)
    @given(st.sampled_from(["inspect", "unpack", "convert"]), mutations)
    def cli(command: str, changes: list[tuple[str, int, bytes]]) -> None:
        fuzz_targets.cli_target(command, changes, timeout=60)

    for target in (layers, json_documents, cli):
        print(f"fuzz: {target.__name__}", flush=True)
        try:
            target()
        except Exception as exc:  # hypothesis has printed the minimal example
            print(f"fuzz: {target.__name__} FAILED: {exc}", file=sys.stderr)
            return 1
    print("fuzz: no failure", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
