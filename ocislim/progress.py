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
