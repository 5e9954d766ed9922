"""KeepPlan closure from fabricated seeds over small merged trees (no sandbox, no disk)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from ocislim.slim.plan import (
    KeepPlan,
    Planner,
    Reason,
    Seed,
    close_plan,
    never_kept,
)
from tests.synth import M
from tests.unit.slim_synth import tree_from

TRACE = Reason("trace", process="app", access=("read",))


def merged_usr() -> list[M]:
    return [
        M("usr/lib/x86_64-linux-gnu/libc.so.6", data=b"libc"),
        M("usr/lib/x86_64-linux-gnu/libz.so.1.2.13", data=b"zlib"),
        M("usr/lib/x86_64-linux-gnu/libz.so.1", "symlink", link="libz.so.1.2.13"),
        M("lib", "symlink", link="usr/lib"),
        M("lib64", "symlink", link="/usr/lib64"),
        M("usr/lib64/ld-linux-x86-64.so.2", "symlink", link="../lib/x86_64-linux-gnu/ld.so"),
        M("usr/lib/x86_64-linux-gnu/ld.so", data=b"ld"),
        M("etc/hosts", data=b"127.0.0.1 localhost\n"),
        M("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n"),
        M("dev/null", "char", dev=(1, 3)),
        M("app/data/a.txt", data=b"a"),
        M("app/data/b.txt", data=b"b"),
        M("app/data/cache/c.pyc", data=b"c"),
        M("app/data/link", "symlink", link="/etc/passwd"),
        M("app/bin/tool", data=b"tool", mode=0o755),
        M("app/bin/tool-alias", "hardlink", link="app/bin/tool"),
        M("app/bin/tool-other", "hardlink", link="app/bin/tool"),
        M("loop/a", "symlink", link="b"),
        M("loop/b", "symlink", link="a"),
    ]


def plan_of(seeds: list[Seed], excludes: tuple[str, ...] = ()) -> KeepPlan:
    planner = Planner(tree_from(merged_usr()), excludes)
    planner.add(seeds)
    return planner.plan()


def reasons(plan: KeepPlan, path: str) -> list[Reason]:
    return next(list(k.reasons) for k in plan.kept if k.path == path)


def test_a_kept_file_brings_every_parent_with_its_reason() -> None:
    plan = plan_of([Seed("/app/data/a.txt", TRACE)])
    assert plan.paths == {"/", "/app", "/app/data", "/app/data/a.txt"}
    assert reasons(plan, "/app/data/a.txt") == [TRACE]
    assert reasons(plan, "/app") == [Reason("parent", by="/app/data")]
    assert reasons(plan, "/app/data") == [Reason("parent", by="/app/data/a.txt")]


def test_symlinks_on_the_way_are_kept_and_the_target_resolved_inside_the_tree() -> None:
    plan = plan_of([Seed("/lib/x86_64-linux-gnu/libz.so.1", TRACE)])
    assert {"/lib", "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"} <= plan.paths
    # the final symlink was followed, so it is kept as a link on the way
    assert "/usr/lib/x86_64-linux-gnu/libz.so.1" in plan.paths
    (why,) = reasons(plan, "/lib")
    assert why.source == "symlink"
    assert why.by == "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
    assert "/usr/lib/x86_64-linux-gnu/libc.so.6" not in plan.paths


def test_a_kept_symlink_keeps_its_target_even_when_not_followed() -> None:
    plan = plan_of([Seed("/lib64/ld-linux-x86-64.so.2", TRACE, follow=False)])
    # /lib64 is on the way (followed as a directory); the final link is kept as
    # itself, then its relative target (through ../lib) is kept too.
    assert {"/lib64", "/usr/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/ld.so"} <= (
        plan.paths
    )
    target = reasons(plan, "/usr/lib/x86_64-linux-gnu/ld.so")
    assert target[0].source == "symlink"
    assert target[0].by == "/usr/lib64/ld-linux-x86-64.so.2"


def test_a_hardlink_group_is_kept_whole() -> None:
    plan = plan_of([Seed("/app/bin/tool-alias", TRACE)])
    assert {"/app/bin/tool", "/app/bin/tool-alias", "/app/bin/tool-other"} <= plan.paths
    assert reasons(plan, "/app/bin/tool-other") == [
        Reason("hardlink", detail="same file as /app/bin/tool-alias", by="/app/bin/tool-alias")
    ]


def test_recursive_seed_keeps_a_subtree_minus_skips_and_follows_inner_symlinks() -> None:
    rule = Reason("rule", flag="--include-path", detail="/app/data")
    plan = plan_of([Seed("/app/data", rule, recursive=True, skip=("/app/data/cache",))])
    assert {"/app/data/a.txt", "/app/data/b.txt", "/app/data/link"} <= plan.paths
    assert "/app/data/cache" not in plan.paths
    assert "/app/data/cache/c.pyc" not in plan.paths
    assert "/etc/passwd" in plan.paths  # target of the link inside


def test_excluded_paths_are_refused_and_not_descended_but_parents_stay() -> None:
    rule = Reason("rule", flag="--include-path", detail="/app")
    plan = plan_of(
        [Seed("/app", rule, recursive=True), Seed("/app/data/cache/c.pyc", TRACE)],
        excludes=("/app/data/cache/**", "*.txt"),
    )
    assert "/app/data/a.txt" not in plan.paths
    assert "/app/data/cache/c.pyc" not in plan.paths
    assert "/app/bin/tool" in plan.paths
    refused = {r.path: r.why for r in plan.refused}
    assert refused["/app/data/a.txt"] == "excluded by --exclude-pattern *.txt"
    assert "/app/data/cache/c.pyc" in refused


def test_runtime_provided_paths_are_never_kept() -> None:
    plan = plan_of(
        [Seed("/etc/hosts", TRACE), Seed("/dev/null", TRACE), Seed("/etc/passwd", TRACE)]
    )
    assert "/etc/hosts" not in plan.paths
    assert "/dev/null" not in plan.paths
    assert "/etc/passwd" in plan.paths
    assert {r.path for r in plan.refused} == {"/etc/hosts", "/dev/null"}
    assert never_kept("/proc/self/maps") and never_kept("/.ocislim/probe-0")
    assert never_kept("/dev") is None and never_kept("/etc/hostname")


def test_missing_and_looping_paths_are_unresolved_not_errors() -> None:
    planner = Planner(tree_from(merged_usr()))
    added = planner.add([Seed("/nope/file", TRACE), Seed("/loop/a", TRACE)])
    # The links of a loop exist as entries and are kept as such; nothing else is.
    assert sorted(added) == ["/", "/loop", "/loop/a", "/loop/b"]
    plan = planner.plan()
    assert dict(plan.unresolved) == {"/nope/file": TRACE}
    assert "/nope" not in plan.paths
    planner.add([Seed("/app/data", TRACE)])
    assert "/app/data" not in dict(planner.plan().unresolved)


def test_add_returns_only_new_paths_and_merges_reasons() -> None:
    planner = Planner(tree_from(merged_usr()))
    first = planner.add([Seed("/app/data/a.txt", TRACE)])
    rule = Reason("rule", flag="--include-path", detail="x")
    second = planner.add([Seed("/app/data/a.txt", rule), Seed("/app/data/b.txt", rule)])
    assert sorted(first) == ["/", "/app", "/app/data", "/app/data/a.txt"]
    assert second == ["/app/data/b.txt"]
    assert planner.reasons("/app/data/a.txt") == (TRACE, rule)


def test_plan_does_not_depend_on_seed_order() -> None:
    seeds = [
        Seed("/lib/x86_64-linux-gnu/libz.so.1", TRACE),
        Seed("/app/bin/tool", TRACE),
        Seed("/app/data", Reason("rule", flag="--include-path"), recursive=True),
        Seed("/etc/hosts", TRACE),
    ]
    baseline = plan_of(seeds)
    for _ in range(5):
        shuffled = seeds[:]
        random.shuffle(shuffled)
        plan = plan_of(shuffled)
        assert plan.paths == baseline.paths
        assert {k.path: set(k.reasons) for k in plan.kept} == {
            k.path: set(k.reasons) for k in baseline.kept
        }


def test_reasons_are_listed_direct_evidence_first_and_entries_in_tree_order() -> None:
    tree = tree_from(merged_usr())
    planner = Planner(tree)
    planner.add([Seed("/app/data/b.txt", TRACE), Seed("/app/data", TRACE)])
    plan = planner.plan()
    kept = {k.path: k for k in plan.kept}
    assert [r.source for r in kept["/app/data"].reasons] == ["trace", "parent"]
    assert [e.path for e in plan.entries(tree)] == ["/", "/app", "/app/data", "/app/data/b.txt"]


def test_close_plan_feeds_new_paths_to_deps_until_nothing_changes() -> None:
    calls: list[list[str]] = []
    needs = {
        "/app/bin/tool": ["/usr/lib/x86_64-linux-gnu/libz.so.1"],
        "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13": ["/usr/lib/x86_64-linux-gnu/libc.so.6"],
    }

    def deps(paths: Sequence[str]) -> list[Seed]:
        calls.append(list(paths))
        return [
            Seed(lib, Reason("elf", detail="DT_NEEDED", by=p))
            for p in paths
            for lib in needs.get(p, [])
        ]

    planner = Planner(tree_from(merged_usr()))
    added = close_plan(planner, [Seed("/app/bin/tool", TRACE)], deps)
    assert "/usr/lib/x86_64-linux-gnu/libc.so.6" in added
    seen = [p for call in calls for p in call]
    assert len(seen) == len(set(seen)), "a path was handed to deps twice"
    assert calls[-1] == [] or all(p not in needs for p in calls[-1])
    (why,) = planner.reasons("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert why == Reason("elf", detail="DT_NEEDED", by="/usr/lib/x86_64-linux-gnu/libz.so.1.2.13")


def test_reason_json_round_trip_and_unknown_source() -> None:
    reason = Reason("lazy", detail="NSS", by="/lib/libc.so.6", rule="glibc-nss")
    assert Reason.from_json(reason.to_json()) == reason
    assert reason.to_json() == {
        "source": "lazy",
        "detail": "NSS",
        "by": "/lib/libc.so.6",
        "rule": "glibc-nss",
    }
    with pytest.raises(ValueError):
        Reason("guess")


def test_a_seed_naming_a_symlink_gives_the_link_its_own_reason() -> None:
    rule = Reason("rule", flag="--include-bin", detail="/usr/lib/x86_64-linux-gnu/libz.so.1")
    plan = plan_of([Seed("/usr/lib/x86_64-linux-gnu/libz.so.1", rule)])
    assert reasons(plan, "/usr/lib/x86_64-linux-gnu/libz.so.1") == [rule]
    assert reasons(plan, "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13")[0] == rule
