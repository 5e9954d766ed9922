"""Verification: run the same probes against the slim image and compare.

Each round runs the probe plan (traced) on the slim root filesystem.  A round
fails when the program's or a probe's result differs from the source image's
run; paths the slim run looked for that exist in the source image but not in
the slim one are added to the plan with reason ``verify`` (and whatever the
plan's closure and language rules add for them), and the next round runs on
the extended tree.  Verification passes when a round's results equal the
source's; it fails when results still differ after the last round or when
nothing more can be added.  The caller decides what a failure does.

Verification never passes on a source run that did not work: a program or probe
that could not start (126, 127) or failed in the source run fails verification
before any round, with one line saying which (:func:`source_failure`).
"""

from __future__ import annotations

import posixpath
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
    source_error: str | None = None  # the source run did not work: no round ran

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "max_rounds": self.max_rounds,
            "passed": self.passed,
            "rounds": [r.to_json() for r in self.rounds],
        }

    def failure(self) -> str:
        """One line: what differed and which paths were involved."""
        if self.source_error is not None:
            return self.source_error
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
    """Paths a slim run looked for in vain that exist in the source tree and are not kept;
    for a failed write or create (``mkdir`` of a new directory) whose path the source
    lacks too, the nearest source directory above it that is not kept."""
    out = []
    for miss in misses:
        try:
            resolved = tree.resolve(miss.path)
        except UnsafeArchiveError:
            continue  # a symlink loop in the source too
        if tree.get(resolved) is not None:
            if not kept(resolved):
                out.append(miss.path)
        elif {"create", "write"} & set(miss.access):
            above = _source_dir_above(tree, resolved)
            if above is not None and not kept(above):
                out.append(above)
    return sorted(set(out))


def _source_dir_above(tree: FileTree, path: str) -> str | None:
    parent = posixpath.dirname(path)
    while parent != "/":
        entry = tree.get(parent)
        if entry is not None:
            return parent if entry.is_dir else None
        parent = posixpath.dirname(parent)
    return None


def verify_seeds(missing: Sequence[str], misses: Sequence[FileAccess]) -> list[Seed]:
    access = {m.path: m.access for m in misses}
    why = "looked up by the slim image's run"
    return [Seed(p, Reason("verify", detail=why, access=access.get(p, ()))) for p in missing]


CANNOT_START = {126: "a command could not be executed", 127: "a command was not found"}


def source_failure(baseline: Outcome, plan: ProbePlan) -> str | None:
    """One line when the source run itself did not work, else None: the program or an
    exec probe could not start (126/127) or failed, or an HTTP probe's port took no
    connection (one that speaks another protocol than HTTP has answered).
    A program stopped by ocislim at the end of the probes has not failed."""
    code = baseline.exit_code
    if code in CANNOT_START:
        return (
            f"the program exited {code} in the source image ({CANNOT_START[code]}); "
            "nothing to verify"
        )
    if code != 0 and not baseline.stopped(plan):
        return f"the program failed in the source image (exit code {code}); nothing to verify"
    # Only the user's own exec probes: a replayed ``ocislim exec`` command may fail on
    # purpose, and verification compares its exit code instead.
    names = plan.to_json()["exec"][: len(plan.exec_probes)]
    for name, probe_code in zip(names, baseline.exec_codes, strict=False):
        if probe_code in CANNOT_START:
            what = CANNOT_START[probe_code]
            return f"exec probe {name!r} exited {probe_code} in the source image ({what})"
        if probe_code != 0:
            return f"exec probe {name!r} failed in the source image (exit code {probe_code})"
    for http in baseline.http:
        if http.status is None and not http.connected:  # a service of another protocol is up
            why = f" ({http.error})" if http.error else ""
            return f"HTTP probe {http.request.describe()} got no answer in the source image{why}"
    return None


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
    broken = source_failure(baseline, plan)
    if broken is not None:
        return Verification(True, max_rounds, (), passed=False, source_error=broken)
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
