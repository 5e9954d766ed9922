"""Progress reporting contract.

Library code never prints: long-running work accepts a :class:`Progress` and
reports stages and byte/item counts to it.  ``cli.py`` supplies an
implementation that writes to stderr (or nothing, with ``-q``).
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receiver of progress events. Implementations must be cheap to call often."""

    def stage(self, name: str, detail: str = "") -> None:
        """A new stage of work begins (e.g. ``"unpack"``, ``"trace"``)."""

    def advance(self, what: str, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` units (bytes, layers, files) of ``what`` are finished."""

    def note(self, message: str) -> None:
        """A one-line remark worth showing to the user (e.g. device nodes skipped)."""


class NullProgress:
    """A :class:`Progress` that discards everything."""

    def stage(self, name: str, detail: str = "") -> None:
        return None

    def advance(self, what: str, done: int, total: int | None = None) -> None:
        return None

    def note(self, message: str) -> None:
        return None


NULL_PROGRESS: Progress = NullProgress()


class Nested:
    """Progress of a sub-step, reported as a detail of the ``stage`` it belongs to.

    A sub-step's own stages (``layer 1/3``) become ``stage(stage, "layer 1/3")`` on
    ``outer``, so the receiver still sees which stage of the whole is running.
    """

    def __init__(self, outer: Progress, stage: str) -> None:
        self._outer = outer
        self._stage = stage

    def stage(self, name: str, detail: str = "") -> None:
        self._outer.stage(self._stage, f"{name} {detail}".strip())

    def advance(self, what: str, done: int, total: int | None = None) -> None:
        self._outer.advance(what, done, total)

    def note(self, message: str) -> None:
        self._outer.note(message)
