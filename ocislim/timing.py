"""Wall-clock durations of named stages, for reports (never for decisions)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Seconds spent in each named stage (summed when a stage runs twice), and in all."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._start = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as (more of) stage ``name``, rounded to milliseconds."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.times[name] = round(self.times.get(name, 0.0) + time.monotonic() - start, 3)

    def total(self) -> float:
        """Seconds since the timer was made."""
        return round(time.monotonic() - self._start, 3)
