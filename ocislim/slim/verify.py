"""Verification: run the same probes against the slim image and compare.

Each round runs the probe plan (traced) on the slim root filesystem.  A round
fails when the program's or a probe's result differs from the source image's
run; paths the slim run looked for that exist in the source image but not in
the slim one are added to the plan with reason ``verify`` (and whatever the
plan's closure and language rules add for them), and the next round runs on
the extended tree.  Verification passes when a round's results equal the
source's; it fails when results still differ after the last round or when
nothing more can be added.  The caller decides what a failure does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocislim.errors import UnsafeArchiveError
from ocislim.layers.tree import FileTree
from ocislim.progress import NULL_PROGRESS, Progress
from ocislim.sandbox import FileAccess
from ocislim.slim.materialize import SlimRoot
from ocislim.slim.plan import Reason, Seed
from ocislim.slim.probes import Outcome, ProbePlan


@dataclass(frozen=True)
class Round:
    number: int
    outcome: Outcome
    differences: tuple[str, ...]
    missing: tuple[str, ...]  # looked for, in the source image, not kept
    added: tuple[str, ...]  # newly kept because of this round

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.number,
            "outcome": self.outcome.to_json(),
            "differences": list(self.differences),
            "missing": list(self.missing),
            "added": list(self.added),
        }


@dataclass(frozen=True)
class Verification:
    """The rounds run and the verdict (``passed`` None: verification did not run)."""

    enabled: bool
    max_rounds: int
    rounds: tuple[Round, ...] = ()
    passed: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "max_rounds": self.max_rounds,
            "passed": self.passed,
            "rounds": [r.to_json() for r in self.rounds],
        }

    def failure(self) -> str:
        """One line: what differed and which paths were involved."""
        last = self.rounds[-1] if self.rounds else None
        if last is None:
            return "verification did not run"
        paths = sorted({p for r in self.rounds for p in (*r.missing, *r.added)})
        shown = ", ".join(paths[:8]) + (" ..." if len(paths) > 8 else "")
        return (
            f"the slim image behaves differently after {len(self.rounds)} round(s): "
            + "; ".join(last.differences)
            + (f"; paths involved: {shown}" if paths else "; no missing path was found")
        )


def missing_in_slim(
    misses: Sequence[FileAccess], tree: FileTree, kept: Callable[[str], bool]
) -> list[str]:
    """Paths a slim run looked for in vain that exist in the source tree and are not kept."""
    out = []
    for miss in misses:
        try:
            resolved = tree.resolve(miss.path)
        except UnsafeArchiveError:
            continue  # a symlink loop in the source too
        if tree.get(resolved) is not None and not kept(resolved):
            out.append(miss.path)
    return sorted(set(out))


def verify_seeds(missing: Sequence[str], misses: Sequence[FileAccess]) -> list[Seed]:
    access = {m.path: m.access for m in misses}
    why = "looked up by the slim image's run"
    return [Seed(p, Reason("verify", detail=why, access=access.get(p, ()))) for p in missing]


RunProbes = Callable[[Path], tuple[Outcome, Sequence[FileAccess]]]


def verify(
    baseline: Outcome,
    plan: ProbePlan,
    slim: SlimRoot,
    tree: FileTree,
    kept: Callable[[str], bool],
    extend: Callable[[list[Seed]], list[str]],
    run_probes: RunProbes,
    max_rounds: int,
    progress: Progress = NULL_PROGRESS,
) -> Verification:
    """Run rounds until the slim run's results equal ``baseline`` or rounds run out.

    ``run_probes(root)`` runs the probe plan on a root filesystem and returns its
    outcome and the paths it looked for in vain; ``extend(seeds)`` adds seeds to the
    keep plan and returns the newly kept paths, which are added to ``slim``.
    """
    rounds: list[Round] = []
    for number in range(1, max_rounds + 1):
        progress.stage("verify", f"round {number}/{max_rounds}")
        outcome, misses = run_probes(slim.root)
        differences = tuple(baseline.differences(outcome, plan))
        missing = missing_in_slim(misses, tree, kept)
        added = extend(verify_seeds(missing, misses)) if missing else []
        rounds.append(Round(number, outcome, differences, tuple(missing), tuple(added)))
        if not differences:
            if added:
                slim.add(added)
            return Verification(True, max_rounds, tuple(rounds), passed=True)
        if not added:
            break
        slim.add(added)
    return Verification(True, max_rounds, tuple(rounds), passed=False)
