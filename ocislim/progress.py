"""Progress reporting contract.

Library code never prints: long-running work accepts a :class:`Progress` and
reports stages and byte/item counts to it.  ``cli.py`` supplies an
implementation that writes to stderr (or nothing, with ``-q``).

Stage names are one vocabulary across commands, so the same work reads the
same everywhere:

- ``unpack: layer 2/3 sha256:...`` a layer being extracted to disk;
- ``read: layer 2/3 sha256:...`` a layer read without extracting it (inspect,
  xray, diff, sbom, the header pass over a reused rootfs, the kept-bytes pass);
- ``write: ...`` an output being made (a layer, an archive, an SBOM);
- ``trace``, ``analyse``, ``verify``, ``deps``, ``diff`` for the other steps.

Layers are numbered from 1 in stage details.  While a layer is read,
:meth:`Progress.advance` reports the compressed bytes read so far against the
size in the layer's descriptor, with ``unit=BYTES``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

BYTES = "bytes"
"""The ``unit`` of :meth:`Progress.advance` for byte counts (a receiver may show a rate)."""

ITEMS = ""
"""The default ``unit``: counts of things (layers, objects, files)."""


class Progress(Protocol):
    """Receiver of progress events. Implementations must be cheap to call often."""

    def stage(self, name: str, detail: str = "") -> None:
        """A new stage of work begins (e.g. ``"unpack"``, ``"trace"``)."""

    def advance(self, what: str, done: int, total: int | None = None, unit: str = ITEMS) -> None:
        """``done`` of ``total`` units of ``what`` are finished (``total=None``: unknown).

        ``unit`` is :data:`ITEMS` or :data:`BYTES`.  Calls for one ``what`` come
        in order; ``done`` may equal ``total`` (finished) but need not reach it.
        """

    def note(self, message: str) -> None:
        """A one-line remark worth showing to the user (e.g. device nodes skipped)."""


class NullProgress:
    """A :class:`Progress` that discards everything."""

    def stage(self, name: str, detail: str = "") -> None:
        return None

    def advance(self, what: str, done: int, total: int | None = None, unit: str = ITEMS) -> None:
        return None

    def note(self, message: str) -> None:
        return None


NULL_PROGRESS: Progress = NullProgress()


class Nested:
    """Progress of a sub-step, reported as a detail of the ``stage`` it belongs to.

    A sub-step's own stages (``round 1/3``) become ``stage(stage, "round 1/3")`` on
    ``outer``, so the receiver still sees which stage of the whole is running.  A
    sub-step stage of the same name as ``stage`` is passed on as it is (no
    ``unpack: unpack ...``).
    """

    def __init__(self, outer: Progress, stage: str) -> None:
        self._outer = outer
        self._stage = stage

    def stage(self, name: str, detail: str = "") -> None:
        if name == self._stage:
            self._outer.stage(name, detail)
        else:
            self._outer.stage(self._stage, f"{name} {detail}".strip())

    def advance(self, what: str, done: int, total: int | None = None, unit: str = ITEMS) -> None:
        self._outer.advance(what, done, total, unit)

    def note(self, message: str) -> None:
        self._outer.note(message)


T = TypeVar("T")


def counted(
    items: Iterable[T], progress: Progress, what: str, total: int, every: int = 256
) -> Iterator[T]:
    """``items`` in order, reporting ``advance(what, done, total)`` every ``every`` items
    and once at the end, so a long write moves and ends at what it did."""
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        if not done % every:
            progress.advance(what, done, total)
    progress.advance(what, done, total)
