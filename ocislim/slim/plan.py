"""The KeepPlan: every path the slim image keeps, each with the reasons it is kept.

Facts come in as :class:`Seed` s (a path and a :class:`Reason`: traced, needed by
an ELF object, a lazy rule, a user's flag, verification).  :class:`Planner`
closes them over the merged tree of the source image (its original tar
headers, never a disk):

- every parent directory of a kept path (reason ``parent``);
- every symlink passed on the way to a kept path, and the target of every kept
  symlink (reason ``symlink``);
- every other path of a kept file's hardlink group (reason ``hardlink``), so
  the group stays whole;
- a recursive seed keeps a directory's whole subtree, minus its ``skip`` globs.

Excluded patterns and runtime-provided paths (:func:`never_kept`) are refused
and recorded as such; parents are exempt, since a kept path cannot exist
without them.  :func:`close_plan` adds the ELF closure (and anything else a
``deps`` function derives from kept objects) until nothing new appears.

Everything here is pure: the result depends only on the tree and the seeds, in
any order of arrival, apart from which reason is listed first.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ocislim.layers.pathwalk import resolve
from ocislim.layers.tree import Entry, FileTree
from ocislim.sandbox import PROBE_DIR, RUNTIME_ETC_FILES
from ocislim.slim.patterns import PatternSet

REASON_SOURCES = (
    "trace", "exec", "elf", "lazy", "rule", "parent", "symlink", "hardlink", "verify", "package-db"
)  # fmt: skip
# The order reasons are listed in: direct evidence first, structural closure last.
_REASON_ORDER = {
    s: i
    for i, s in enumerate(
        (
            "trace",
            "exec",
            "verify",
            "rule",
            "lazy",
            "elf",
            "package-db",
            "symlink",
            "hardlink",
            "parent",
        )
    )
}

# Mount points whose content the runtime provides (the directories themselves may stay).
RUNTIME_TREES = ("/proc", "/sys", "/dev")
# The sandbox's probe directory is never image content.
OCISLIM_PATHS = (PROBE_DIR,)


def never_kept(path: str) -> str | None:
    """Why ``path`` is never part of a slim image, or None when it may be."""
    if path in RUNTIME_ETC_FILES:  # a container runtime bind-mounts these over the image's
        return "provided by the container runtime"
    for top in RUNTIME_TREES:
        if path.startswith(top + "/"):
            return f"content of {top} is provided by the container runtime"
    for own in OCISLIM_PATHS:
        if path == own or path.startswith(own + "/"):
            return "ocislim's own file"
    return None


@dataclass(frozen=True)
class Reason:
    """Why a path is kept.

    ``source`` is one of :data:`REASON_SOURCES`.  ``trace``: ``process`` (its argv)
    made ``access`` (read, exec, stat, list, ...).  ``elf``: ``by`` is the object
    that needs it, ``detail`` how (``DT_NEEDED libz.so.1``, ``PT_INTERP``).
    ``lazy``: ``rule`` names the rule, ``by`` what triggered it.  ``rule``:
    ``flag`` is the user's flag.  ``parent``/``symlink``/``hardlink``: ``by`` is
    the kept path that needs this one.  ``verify``: the slim run looked for it.
    """

    source: str
    detail: str = ""
    process: str | None = None
    access: tuple[str, ...] = ()
    by: str | None = None
    rule: str | None = None
    flag: str | None = None

    def __post_init__(self) -> None:
        if self.source not in REASON_SOURCES:
            raise ValueError(f"unknown reason source {self.source!r}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.detail:
            out["detail"] = self.detail
        if self.process is not None:
            out["process"] = self.process
        if self.access:
            out["access"] = list(self.access)
        for key in ("by", "rule", "flag"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Reason:
        return cls(
            source=str(obj["source"]),
            detail=str(obj.get("detail", "")),
            process=obj.get("process"),
            access=tuple(obj.get("access", ())),
            by=obj.get("by"),
            rule=obj.get("rule"),
            flag=obj.get("flag"),
        )


@dataclass(frozen=True)
class Seed:
    """A request to keep ``path``.

    ``follow``: a final symlink is followed (its target is kept as well as the link).
    ``recursive``: a directory's whole subtree is kept, except entries matching a
    ``skip`` glob (which are not descended into either).
    """

    path: str
    reason: Reason
    recursive: bool = False
    follow: bool = True
    skip: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """A path some seed asked for that the plan does not keep, and why."""

    path: str
    why: str
    reason: Reason


@dataclass(frozen=True)
class KeptPath:
    path: str
    kind: str
    size: int
    reasons: tuple[Reason, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "reasons": [r.to_json() for r in self.reasons],
        }


@dataclass(frozen=True)
class KeepPlan:
    """The result: kept paths (sorted) with reasons, refusals, and unresolved requests."""

    kept: tuple[KeptPath, ...]
    refused: tuple[Refusal, ...] = ()
    unresolved: tuple[tuple[str, Reason], ...] = field(default=())

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(k.path for k in self.kept)

    def entries(self, tree: FileTree) -> list[Entry]:
        """The kept entries of ``tree`` in its sorted walk order (for writing a layer)."""
        keep = self.paths
        return [e for e in tree.walk() if e.path in keep]


# Placeholders completed by Planner.plan(), which knows every kept path.
_PARENT = Reason("parent", by="")
_HARDLINK = Reason("hardlink", by="")


class Planner:
    """Accumulates seeds into a closed keep set over ``tree`` (see the module docstring).

    Not thread-safe.  ``add`` may be called any number of times; each call returns
    the paths it newly kept, in the order they were kept.
    """

    def __init__(self, tree: FileTree, excludes: Iterable[str] = ()) -> None:
        self.tree = tree
        self._excludes = PatternSet(excludes)
        self._kept: dict[str, dict[Reason, None]] = {}
        self._refused: dict[str, Refusal] = {}
        self._unresolved: dict[str, Reason] = {}
        self._hardlinks: dict[int, list[str]] | None = None

    # -- queries --------------------------------------------------------------------------

    def __contains__(self, path: str) -> bool:
        return path in self._kept

    @property
    def kept_paths(self) -> list[str]:
        return list(self._kept)

    def reasons(self, path: str) -> tuple[Reason, ...]:
        """Reasons so far (parent and hardlink reasons are completed by :meth:`plan`)."""
        return tuple(self._kept.get(path, ()))

    def plan(self) -> KeepPlan:
        """The result; parent and hardlink reasons name the smallest path that needs them,
        so the plan does not depend on the order seeds arrived in."""
        first_child: dict[str, str] = {}
        for path in self._kept:
            if path != "/":
                parent = posixpath.dirname(path)
                if path < first_child.get(parent, "\uffff"):
                    first_child[parent] = path
        kept = []
        for path in sorted(self._kept):
            entry = self.tree.get(path)
            assert entry is not None
            reasons = []
            for reason in self._kept[path]:
                if reason == _PARENT:
                    reason = Reason("parent", by=first_child[path])
                elif reason == _HARDLINK:
                    others = [p for p in self._hardlink_group(entry) if p != path]
                    direct = [p for p in others if set(self._kept.get(p, ())) - {_HARDLINK}]
                    by = min(direct or others)
                    reason = Reason("hardlink", detail=f"same file as {by}", by=by)
                reasons.append(reason)
            reasons.sort(key=lambda r: _REASON_ORDER[r.source])
            kept.append(KeptPath(path, entry.kind, entry.size, tuple(reasons)))
        return KeepPlan(
            tuple(kept),
            tuple(self._refused[p] for p in sorted(self._refused)),
            tuple(sorted(self._unresolved.items())),
        )

    # -- changes --------------------------------------------------------------------------

    def add(self, seeds: Iterable[Seed]) -> list[str]:
        """Keep what ``seeds`` ask for, closed over parents, symlinks and hardlinks."""
        new: list[str] = []
        queue: list[Seed] = list(seeds)
        queue.reverse()
        while queue:
            seed = queue.pop()
            more = self._apply(seed, new)
            queue.extend(reversed(more))
        return new

    def _apply(self, seed: Seed, new: list[str]) -> list[Seed]:
        """Keep one seed; returns the seeds its closure asks for next."""
        path = posixpath.normpath("/" + seed.path.lstrip("/")) if seed.path else "/"
        res = resolve(self.tree, path, follow=seed.follow)
        follow_ups: list[Seed] = []
        on_the_way = Reason("symlink", detail=f"on the way to {res.path}", by=res.path)
        for link in res.symlinks:
            # The link the seed names is kept for the seed's own reason.
            self._keep(link, seed.reason if link == path else on_the_way, new, follow_ups)
        if res.status != "found":
            if path not in self._kept:
                self._unresolved.setdefault(path, seed.reason)
            return follow_ups
        entry = self.tree.get(res.path)
        assert entry is not None
        if self._keep(res.path, seed.reason, new, follow_ups) and seed.recursive and entry.is_dir:
            skip = PatternSet(seed.skip)
            for child in _descendants(entry, skip, self._excludes):
                self._keep(child.path, seed.reason, new, follow_ups)
        return follow_ups

    def _keep(self, path: str, reason: Reason, new: list[str], follow_ups: list[Seed]) -> bool:
        """Keep ``path`` (an existing entry) for ``reason``; False when it is refused."""
        reasons = self._kept.get(path)
        if reasons is not None:
            reasons.setdefault(reason, None)
            return True
        why = never_kept(path)
        if why is None:
            pattern = self._excludes.match(path)
            if pattern is not None:
                why = f"excluded by --exclude-pattern {pattern}"
        if why is not None:
            self._refused.setdefault(path, Refusal(path, why, reason))
            return False
        self._kept[path] = {reason: None}
        self._unresolved.pop(path, None)
        new.append(path)
        self._keep_parents(path, new)
        entry = self.tree.get(path)
        assert entry is not None
        if entry.info.issym():
            target = Reason("symlink", detail=f"target of {path}", by=path)
            follow_ups.append(Seed(_link_target(path, entry.info.linkname), target))
        elif not entry.is_dir:
            for other in self._hardlink_group(entry):
                if other != path:
                    follow_ups.append(Seed(other, _HARDLINK))
        return True

    def _keep_parents(self, path: str, new: list[str]) -> None:
        parent = posixpath.dirname(path)
        missing: list[str] = []
        while parent not in self._kept:
            missing.append(parent)
            if parent == "/":
                break
            parent = posixpath.dirname(parent)
        for directory in reversed(missing):
            self._kept[directory] = {_PARENT: None}
            self._unresolved.pop(directory, None)
            new.append(directory)

    def _hardlink_group(self, entry: Entry) -> list[str]:
        if self._hardlinks is None:
            groups: dict[int, list[str]] = {}
            for e in self.tree.walk():
                if not e.is_dir and e.data is not None:
                    groups.setdefault(e.inode, []).append(e.path)
            self._hardlinks = {k: v for k, v in groups.items() if len(v) > 1}
        return self._hardlinks.get(entry.inode, [])


def _link_target(link: str, target: str) -> str:
    """The path a symlink's target names, before resolution (relative to its directory)."""
    if target.startswith("/"):
        return target
    return posixpath.dirname(link).rstrip("/") + "/" + target


def _descendants(root: Entry, skip: PatternSet, excludes: PatternSet) -> Iterator[Entry]:
    """Entries below ``root`` in sorted order, not descending into skipped or excluded ones."""
    stack = [root]
    while stack:
        node = stack.pop()
        if not node.children:
            continue
        for name in sorted(node.children, reverse=True):
            child = node.children[name]
            if skip and skip.match(child.path):
                continue
            if child.children and excludes and excludes.match(child.path):
                continue
            stack.append(child)
        for name in sorted(node.children):
            child = node.children[name]
            if not (skip and skip.match(child.path)):
                yield child


DepsFn = Callable[[Sequence[str]], Sequence[Seed]]


def close_plan(planner: Planner, seeds: Iterable[Seed], deps: DepsFn) -> list[str]:
    """Add ``seeds``, then what ``deps`` derives from every newly kept path, to a fixpoint.

    ``deps`` receives kept paths it has not seen before (it decides which of them
    are objects worth analysing) and returns seeds.  Returns every newly kept path.
    """
    added = planner.add(seeds)
    pending = list(added)
    while pending:
        more = planner.add(deps(pending))
        added.extend(more)
        pending = more
    return added
